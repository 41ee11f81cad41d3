"""Public entry points given the wrong kind of argument name it and say what they expected.

Each case had stopped deep inside (``'int' object has no attribute 'shape'``, ``Boolean value
of Tensor with more than one value is ambiguous``, ``'Tensor' object has no attribute
'poses'``): found by calling every public function with an int, a string, None and tensors of
the wrong shape.  Where a pose tensor makes sense (the trajectory metrics), it is taken.
"""

import pytest
import torch

from robojac import calibration, icp, ik, jacobian, kinematics, optim, posegraph, trajectory, viz
from robojac.models import planar_arm

POSES = torch.tensor([[0.0, 0, 0, 0, 0, 0, 1], [1.0, 0, 0, 0, 0, 0, 1], [1.0, 1, 0, 0, 0, 0, 1]], dtype=torch.float64)

CASES = [
    (lambda: trajectory.read_tum(3), TypeError, r"path: expected the name of a TUM file \(str or os.PathLike\), got int"),
    (lambda: posegraph.read_g2o(POSES), TypeError, "path: expected the name of a g2o file .* got Tensor"),
    (lambda: icp.read_point_cloud(None), TypeError, "path: expected the name of a point-cloud file .* got NoneType"),
    (lambda: trajectory.write_kitti(POSES, 3), TypeError, "path: expected the name of a file to write .* got int"),
    (lambda: trajectory.ate("x", POSES), TypeError, r"reference: expected a Trajectory, poses \(N, 7\) or matrices"),
    (lambda: trajectory.rpe(POSES, torch.zeros(3, 5)), trajectory.TrajectoryError, r"estimate: expected .* shape \(3, 5\)"),
    (lambda: trajectory.path_length(3), TypeError, "trajectory: expected a Trajectory"),
    (lambda: trajectory.align_umeyama(3, POSES[:, :3]), TypeError, r"source: expected points \(N, 3\) as a tensor, got int"),
    (lambda: posegraph.initialize(POSES), TypeError, "graph: expected a PoseGraph, got Tensor"),
    (lambda: posegraph.write_g2o("out.g2o", POSES), TypeError, r"graph: expected a PoseGraph \(the call is write_g2o"),
    (lambda: posegraph.PoseGraph(None, [[0, 1]], POSES[:1], torch.eye(6)[None]), posegraph.PoseGraphError,
     r"poses: expected real poses \(N, 7\), got NoneType"),
    (lambda: kinematics.write_urdf("arm.urdf", planar_arm((1.0,))), TypeError, r"chain: expected a robojac Chain \(the call"),
    (lambda: kinematics.Chain(POSES), TypeError, "joints: expected a sequence of robojac Joints, got Tensor"),
    (lambda: kinematics.Chain([POSES]), TypeError, r"joints\[0\]: expected a robojac Joint, got Tensor"),
    (lambda: kinematics.chain_from_dh(3), TypeError, "rows: expected a sequence of DH rows"),
    (lambda: kinematics.rpy_to_quat(None), TypeError, "rpy: expected 3 numbers, got NoneType"),
    (lambda: kinematics.quat_to_rpy([0, 0, 0, 0]), ValueError, r"q: expected a quaternion \[x, y, z, w\] of non-zero length"),
    (lambda: calibration.perturbed_chain(POSES), TypeError, "chain: expected a robojac Chain, got Tensor"),
    (lambda: calibration.simulate_poses(POSES, POSES), TypeError, "chain: expected a robojac Chain, got Tensor"),
    (lambda: ik.planar_2link_ik(1.0, 1.0, 3), TypeError, r"target: expected a floating-point tensor \(\.\.\., 2 or 3\)"),
    (lambda: ik.planar_3link_ik(1.0, -1.0, 1.0, POSES[:, :2]), ValueError, "l2: expected a positive link length"),
    (lambda: ik.pose_errors(POSES[0], POSES, False), ValueError, r"X: expected a tensor \(P, 7\), got shape \(7,\)"),
    (lambda: icp.voxel_downsample(3, 0.1), TypeError, r"points: expected a floating-point tensor \(N, 3\), got int"),
    (lambda: icp.voxel_downsample(POSES[:, :3], "0.1"), TypeError, "voxel_size: expected a number"),
    (lambda: icp.spatial_order(POSES), ValueError, r"points: expected shape \(N, 3\), got \(3, 7\)"),
    (lambda: icp.NearestNeighbors(None), TypeError, "points: expected a floating-point tensor"),
    (lambda: icp.PaddedNeighbors(POSES[:, :3]), TypeError, "clouds: expected a non-empty list of point clouds"),
    (lambda: icp.fpfh_features(POSES[:, :3], 0.0), ValueError, "voxel_size"),
    # numbers that ran without a word: FPFH's radii (no neighbours, zero features), and RPE's
    # tolerance where the unit is frames (it is used in the others)
    (lambda: icp.fpfh_features(POSES[:, :3], 0.1, normal_radius=float("nan")), ValueError,
     "fpfh_features.normal_radius: expected a finite number > 0, got nan"),
    (lambda: icp.fpfh_features(POSES[:, :3], 0.1, feature_radius=-1.0), ValueError, "fpfh_features.feature_radius"),
    (lambda: trajectory.rpe(POSES, POSES, rel_tol=float("nan")), ValueError, "rpe.rel_tol: expected a finite number"),
    (lambda: jacobian.batch_jacobian(POSES, POSES), TypeError, "func: expected a function to differentiate, got Tensor"),
    (lambda: jacobian.divergence(POSES, POSES), TypeError, "func: expected a function to differentiate"),
    (lambda: jacobian.jacobian(3), TypeError, "func: expected a function to differentiate, got int"),
    (lambda: jacobian.vjp(POSES, POSES), TypeError, "func: expected a function to differentiate"),
    (lambda: optim.solve(POSES, []), TypeError, "variables: expected a sequence of Variables, got Tensor"),
    (lambda: optim.solve([POSES], []), TypeError, r"variables\[0\]: expected a Variable, got Tensor"),
    (lambda: viz.plot_arm(torch.zeros(3), planar_arm((1.0, 1.0, 1.0))), TypeError, "chain: expected a robojac Chain, got Tensor"),
    (lambda: viz.plot_pose_graph(POSES), TypeError, "graph: expected a PoseGraph, got Tensor"),
    (lambda: viz.plot_odometry(POSES), TypeError, "result: expected an OdometryResult"),
    (lambda: viz.plot_calibration_summary({}), TypeError, "result: expected a CalibrationResult"),
    (lambda: viz.plot_cost_history(3), TypeError, r"results: expected \{name: result\} or a list of solver results"),
    (lambda: viz.plot_cost_history({"a": POSES}), TypeError, r"results\['a'\]: expected a solver result"),
    (lambda: viz.plot_trajectories(POSES), TypeError, "trajectories: expected a non-empty"),
    (lambda: viz.plot_hand_eye_methods({"a": 3}), ValueError, r"errors\['a'\]: expected \(position mm, rotation deg\)"),
    (lambda: viz.plot_registration(3, POSES[:, :3]), ValueError, r"source: expected points \(N, 3\)"),
    (lambda: viz.plot_scans(POSES), TypeError, "clouds: expected a list of point clouds"),
    (lambda: viz.plot_jacobian_heatmap(None), TypeError, "J: expected a tensor or array of numbers, got NoneType"),
]


@pytest.mark.parametrize("call, error, match", CASES, ids=[f"case{k}" for k in range(len(CASES))])
def test_a_wrong_argument_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_trajectory_metrics_take_pose_tensors():
    """Poses ``(N, 7)``, SE3 LieTensors or ``(N, 4, 4)`` matrices stand for trajectories."""
    import pypose as pp

    from robojac import lie

    est = POSES.clone()
    est[:, 0] += 0.1
    a = trajectory.ate(trajectory.Trajectory(POSES), trajectory.Trajectory(est), align=False)
    b = trajectory.ate(POSES, pp.SE3(est), align=False)
    c = trajectory.ate(lie.se3_to_matrix(POSES), lie.se3_to_matrix(est), align=False)
    assert a["rmse"] == pytest.approx(0.1) and b["rmse"] == a["rmse"] and c["rmse"] == pytest.approx(a["rmse"], abs=1e-12)
    assert trajectory.path_length(POSES) == pytest.approx(2.0)
