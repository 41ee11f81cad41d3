"""docs/switching.md's tables for the peers its code blocks do not run: small_gicp (a dependency
of robojac's own), and pytorch_kinematics and GTSAM (the ``[bench]`` extra), each on the same
inputs as robojac (the page's own blocks check Pinocchio, Open3D, evo and OpenCV, which the
tests install).  Each test skips where its peer is not installed."""

import gzip
import math

import numpy as np
import pytest
import torch

import robojac
from robojac import lie
from robojac.data import path as data_path
from robojac.icp import ICPConfig, align, read_point_cloud, voxel_downsample
from robojac.posegraph import PGOConfig, covariances, optimize, read_g2o


def test_pytorch_kinematics_calls_give_robojacs_numbers():
    """``build_serial_chain_from_urdf`` -> ``Chain.from_urdf(tip=)``; its ``forward_kinematics``
    (the tip, and every link with ``end_only=False``) and ``jacobian`` -> robojac's, to the 1e-7
    its float32 reading of the URDF leaves; its quaternions ``[w, x, y, z]``."""
    pk = pytest.importorskip("pytorch_kinematics")
    urdf = data_path("robots/panda.urdf")
    panda = robojac.Chain.from_urdf(urdf, tip="panda_hand")
    theirs = pk.build_serial_chain_from_urdf(urdf.read_text(), "panda_hand").to(dtype=torch.float64)
    assert theirs.get_joint_parameter_names() == panda.joint_names
    q = panda.random_configuration(8, generator=torch.Generator().manual_seed(4))
    T = panda.forward_kinematics(q, "panda_hand")
    assert float((theirs.forward_kinematics(q, end_only=True).get_matrix() - T.matrix()).abs().max()) < 1e-6
    every = theirs.forward_kinematics(q, end_only=False)
    ours = panda.forward_kinematics(q)
    assert set(every) <= set(ours)
    for name, M in every.items():
        assert float((M.get_matrix() - ours[name].matrix()).abs().max()) < 1e-6, name
    assert float((theirs.jacobian(q) - panda.jacobian(q)).abs().max()) < 1e-6
    wxyz = pk.matrix_to_quaternion(T.matrix()[:, :3, :3])
    sign = torch.sign((wxyz * lie.xyzw_to_wxyz(T.tensor()[:, 3:])).sum(-1, keepdim=True))  # q and -q: one rotation
    assert float((sign * wxyz - lie.xyzw_to_wxyz(T.tensor()[:, 3:])).abs().max()) < 1e-6


def test_gtsam_calls_give_robojacs_optimum_cost_and_swapped_covariances(tmp_path):
    """``readG2o`` + a tight prior on the first pose + Gauss-Newton -> ``read_g2o`` + ``optimize``:
    the same poses; ``graph.error`` at robojac's poses is ``result.cost``; ``Marginals`` are
    ``covariances`` with the ``[rho, phi]`` blocks swapped to ``[phi, rho]``; ``Pose3.Logmap``
    is ``lie.se3_log`` with its halves swapped."""
    gtsam = pytest.importorskip("gtsam")
    source = data_path("posegraph/tinyGrid3D.g2o.gz")
    plain = tmp_path / "tinyGrid3D.g2o"
    plain.write_bytes(gzip.decompress(source.read_bytes()))
    graph_g, initial = gtsam.readG2o(str(plain), True)
    graph_g.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), gtsam.noiseModel.Diagonal.Sigmas(np.full(6, 1e-9))))
    params = gtsam.GaussNewtonParams()
    params.setRelativeErrorTol(1e-14)
    params.setAbsoluteErrorTol(1e-14)
    params.setMaxIterations(50)
    theirs = gtsam.GaussNewtonOptimizer(graph_g, initial, params).optimize()

    graph = read_g2o(source)
    result = optimize(graph, PGOConfig(method="gn", init="file", relative_tolerance=1e-14))
    assert result.converged
    poses = result.poses.tensor()
    ours_g = gtsam.Values()
    for k, key in enumerate(graph.vertex_ids.tolist()):
        M = lie.se3_to_matrix(poses[k]).numpy()
        assert np.abs(M - theirs.atPose3(key).matrix()).max() < 1e-9
        ours_g.insert(key, gtsam.Pose3(M))
        log = lie.se3_log(poses[k]).numpy()  # [rho, phi]; GTSAM's [phi, rho]
        assert np.abs(gtsam.Pose3.Logmap(gtsam.Pose3(M)) - np.r_[log[3:], log[:3]]).max() < 1e-12
    assert graph_g.error(ours_g) == pytest.approx(float(result.cost), rel=1e-9)

    marginals = gtsam.Marginals(graph_g, theirs)
    C = covariances(graph, result.poses).numpy()
    swap = [3, 4, 5, 0, 1, 2]
    for k, key in enumerate(graph.vertex_ids.tolist()):
        Cg = marginals.marginalCovariance(key)
        assert np.abs(C[k][np.ix_(swap, swap)] - Cg).max() < 1e-12 + 1e-9 * np.abs(Cg).max()


def test_small_gicp_align_gives_robojacs_answer():
    """``small_gicp.align(target, source, ...)`` (target first) -> ``icp.align(source, target, ...)``
    (source first): on the bunny at 3 mm, both with 10 neighbours' covariances and small_gicp's
    stopping rule, the same ``T_target_source`` to 0.001 degrees and 0.01 mm."""
    sg = pytest.importorskip("small_gicp")
    folder = data_path("pointclouds/bunny")
    source = voxel_downsample(read_point_cloud(folder / "bun045.ply.gz"), 0.003).double()
    target = voxel_downsample(read_point_cloud(folder / "bun000.ply.gz"), 0.003).double()
    s, t = sg.PointCloud(source.numpy()), sg.PointCloud(target.numpy())
    sg.estimate_covariances(s, num_neighbors=10)
    sg.estimate_covariances(t, num_neighbors=10)
    theirs = sg.align(t, s, sg.KdTree(t), np.eye(4), registration_type="GICP", max_correspondence_distance=0.05)
    ours = align(source, target, config=ICPConfig(method="gicp", max_correspondence_distance=0.05, num_neighbors=10,
                                                  rotation_tolerance=math.radians(0.1), translation_tolerance=1e-3))
    assert theirs.converged and bool(ours.converged)
    D = np.linalg.inv(theirs.T_target_source) @ ours.T_target_source.matrix().numpy()
    angle = math.degrees(math.acos(min(1.0, (np.trace(D[:3, :3]) - 1) / 2)))
    assert angle < 1e-3 and np.linalg.norm(D[:3, 3]) < 1e-5, (angle, D[:3, 3])
