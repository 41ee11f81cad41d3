"""Pictures of answers as the solvers give them: differentiable, in any dtype."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from robojac import viz
from robojac.icp import ICPConfig, align


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_a_differentiable_registration_is_drawn_where_it_puts_the_source():
    """``plot_registration`` of an answer that carries gradients (points that require grad) had
    stopped in ``numpy()``; the source is drawn moved by the answer."""
    g = torch.Generator().manual_seed(0)
    P = torch.rand(300, 3, dtype=torch.float64, generator=g, device="cpu").requires_grad_()
    Q = P.detach() + torch.tensor([0.02, -0.01, 0.03], dtype=torch.float64, device="cpu")
    r = align(P, Q, config=ICPConfig(max_correspondence_distance=0.5))
    assert r.T_target_source.requires_grad
    ax = viz.plot_registration(P, Q, r.T_target_source, max_points=10_000)
    drawn = np.asarray(ax.collections[1]._offsets3d).T  # the source, as moved
    assert np.abs(np.sort(drawn, 0) - np.sort(Q.numpy(), 0)).max() < 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_a_jacobian_heatmap_from_any_dtype(dtype):
    """numpy has no bfloat16: the heatmap widens the Jacobian first (it had refused bfloat16)."""
    J = torch.linspace(-1, 1, 42, dtype=torch.float64, device="cpu").reshape(6, 7)
    ax = viz.plot_jacobian_heatmap(J.to(dtype).requires_grad_())
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (6, 7) and np.abs(shown - J.numpy()).max() <= torch.finfo(dtype).eps


def test_what_cannot_be_drawn_is_named():
    """Arguments the pictures cannot use are refused by name; they had stopped inside torch
    ("shape '[-1, 7]' is invalid"), matplotlib (FixedLocator, NaN axis limits) or numpy."""
    from robojac.models import sample_arm

    arm = sample_arm()
    with pytest.raises(ValueError, match=r"q: expected shape \(\.\.\., 7\) for the 7 actuated joints"):
        viz.plot_arm(arm, torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"row_labels: expected 6 labels \(one per row of J"):
        viz.plot_jacobian_heatmap(torch.zeros(6, 7), row_labels=["a"])
    with pytest.raises(ValueError, match=r"col_labels: expected 7 labels \(one per column of J"):
        viz.plot_jacobian_heatmap(torch.zeros(6, 7), col_labels=arm.joint_names[:6])
    with pytest.raises(ValueError, match="clouds: expected at least one point cloud to draw"):
        viz.plot_scans([])
    with pytest.raises(ValueError, match=r"poses: expected 2 poses \(one per cloud\), got 1"):
        viz.plot_scans([torch.rand(10, 3), torch.rand(10, 3)], torch.tensor([[0, 0, 0, 0, 0, 0, 1.0]]))
    with pytest.raises(ValueError, match="T_target_source: contains NaN or infinite values"):
        viz.plot_registration(torch.rand(10, 3), torch.rand(10, 3), torch.full((7,), float("nan")))
    plt.close("all")


@pytest.mark.open3d
def test_observability_bars_are_the_shares_and_name_what_is_not_one():
    """One bar per direction and alignment, at its share (a zero share at the floor), and the
    threshold drawn; anything but ``{name: Observability}`` is refused by name."""
    from robojac.icp import observability

    g = torch.Generator().manual_seed(1)
    plane = torch.cat((torch.rand(500, 2, dtype=torch.float64, generator=g) * 5, torch.zeros(500, 1, dtype=torch.float64)), 1)
    blob = torch.randn(500, 3, dtype=torch.float64, generator=g)
    I = torch.tensor([0.0, 0, 0, 0, 0, 0, 1], dtype=torch.float64)
    seen = {"plane": observability(plane, plane, I, 0.5), "nothing": observability(blob, blob + 100, I, 0.5)}
    ax = viz.plot_observability(seen)
    heights = [[p.get_height() for p in c] for c in ax.containers]
    assert np.allclose(heights[0], np.maximum(seen["plane"].eigenvalues.numpy(), 1e-5))
    assert heights[1] == [1e-5] * 6  # no correspondences: nothing seen
    assert "plane (degenerate)" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match=r"results: expected a non-empty \{name: Observability\} dict"):
        viz.plot_observability({})
    with pytest.raises(ValueError, match=r"results\['x'\]: expected an Observability"):
        viz.plot_observability({"x": torch.zeros(6)})


def test_covariance_ellipses_are_the_positions_in_the_world_frame():
    """A 2D graph of two poses, the second turned by 90 degrees with a body-frame covariance
    long along its own x: the ellipse is drawn long along the world's y, 2 sigma sqrt(lambda) wide."""
    from robojac.posegraph import PoseGraph

    s = np.sqrt(0.5)
    poses = torch.tensor([[0, 0, 0, 0, 0, 0, 1.0], [1, 0, 0, 0, 0, s, s]], dtype=torch.float64)
    Z = torch.tensor([[1, 0, 0, 0, 0, s, s]], dtype=torch.float64)
    graph = PoseGraph(poses, torch.tensor([[0, 1]]), Z, torch.eye(3, dtype=torch.float64)[None], dim=2)
    C = torch.zeros(2, 3, 3, dtype=torch.float64)
    C[1, :2, :2] = torch.diag(torch.tensor([0.04, 0.01], dtype=torch.float64))  # sigma 0.2 m along its x
    ax = viz.plot_pose_graph(graph, covariances=C, sigma=3.0, color_by_residual=False)
    ell = [c for c in ax.collections if type(c).__name__ == "EllipseCollection"][0]
    widths, heights, angles = ell._widths * 2, ell._heights * 2, np.degrees(ell._angles)  # stored as half-axes, radians
    assert np.allclose(widths[1], 2 * 3 * 0.2) and np.allclose(heights[1], 2 * 3 * 0.1)
    assert np.isclose(abs(angles[1]) % 180, 90)  # along the world's y
    with pytest.raises(ValueError, match=r"covariances: expected \(2, 3, 3\), one per pose"):
        viz.plot_pose_graph(graph, covariances=C[:1])
    with pytest.raises(ValueError, match="the ellipses are drawn in a 2D view"):
        viz.plot_pose_graph(graph, covariances=C, view="3d")
    with pytest.raises(ValueError, match=r"plot_pose_graph.sigma: expected a finite number > 0, got 0"):
        viz.plot_pose_graph(graph, covariances=C, sigma=0)
    with pytest.raises(ValueError, match=r"plot_pose_graph.ellipse_every: expected an integer >= 1, got 0"):
        viz.plot_pose_graph(graph, covariances=C, ellipse_every=0)


@pytest.mark.parametrize("view", ["3d", "2d"])
def test_a_3d_chain_without_loop_closures_is_drawn(view):
    """An odometry chain alone (no loop-closure edges) had stopped inside matplotlib in 3D
    ("need at least one array to concatenate"): an empty collection is now left out."""
    from robojac.posegraph import PoseGraph

    poses = torch.tensor([[0, 0, 0, 0, 0, 0, 1.0], [1, 0, 0, 0, 0, 0, 1.0], [2, 1, 0, 0, 0, 0, 1.0]], dtype=torch.float64)
    graph = PoseGraph(poses, torch.tensor([[0, 1], [1, 2]]), torch.tensor([[1, 0, 0, 0, 0, 0, 1.0]] * 2,
                      dtype=torch.float64), torch.eye(6, dtype=torch.float64).expand(2, 6, 6))
    ax = viz.plot_pose_graph(graph, view=view)
    assert len(ax.collections) == 1  # the chain


def test_a_similaritys_ellipse_is_its_scale_times_its_body_covariance():
    """A similarity of scale 2 turned by 90 degrees: its body-frame step ``rho`` moves its position by
    ``s R rho``, so a body covariance of 0.2 m along its own x is drawn 0.4 m along the world's y."""
    from robojac.posegraph import PoseGraph

    s = np.sqrt(0.5)
    poses = torch.tensor([[0, 0, 0, 0, 0, 0, 1.0, 1.0], [1, 0, 0, 0, 0, s, s, 2.0]], dtype=torch.float64)
    Z = torch.tensor([[1, 0, 0, 0, 0, s, s, 2.0]], dtype=torch.float64)
    graph = PoseGraph(poses, torch.tensor([[0, 1]]), Z, torch.eye(7, dtype=torch.float64)[None], similarity=True)
    C = torch.zeros(2, 7, 7, dtype=torch.float64)
    C[1, :2, :2] = torch.diag(torch.tensor([0.04, 0.01], dtype=torch.float64))
    ax = viz.plot_pose_graph(graph, covariances=C, sigma=3.0, color_by_residual=False, view="2d")
    ell = [c for c in ax.collections if type(c).__name__ == "EllipseCollection"][0]
    widths, heights, angles = ell._widths * 2, ell._heights * 2, np.degrees(ell._angles)
    assert np.allclose(widths[1], 2 * 3 * 0.4) and np.allclose(heights[1], 2 * 3 * 0.2)
    assert np.isclose(abs(angles[1]) % 180, 90)
    with pytest.raises(ValueError, match=r"covariances: expected \(2, 7, 7\), one per pose"):
        viz.plot_pose_graph(graph, covariances=C[:, :6, :6], view="2d")


def test_position_priors_are_drawn_joined_to_their_poses_and_coloured_by_chi2():
    """Three planar poses with two fixes, the second 30 m off: each fix a cross at its measured
    position, joined to its pose by a segment whose value is that fix's chi^2 (the far one's the
    larger, drawn red on the edges' scale), in 2D and 3D views."""
    from robojac.posegraph import PoseGraph

    poses = torch.tensor([[0, 0, 0, 0, 0, 0, 1.0], [1, 0, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0, 1]], dtype=torch.float64)
    Z = torch.tensor([[1, 0, 0, 0, 0, 0, 1.0]] * 2, dtype=torch.float64)
    fixes = torch.tensor([[0.1, 0.0], [2.0, 30.0]], dtype=torch.float64)
    graph = PoseGraph(poses, torch.tensor([[0, 1], [1, 2]]), Z, torch.eye(3, dtype=torch.float64).expand(2, 3, 3),
                      dim=2, prior_index=[0, 2], prior_positions=fixes, prior_information=torch.eye(2).expand(2, 2, 2))
    ax = viz.plot_pose_graph(graph, view="2d")
    crosses = [c for c in ax.collections if c.get_label() == "position priors"][0]
    assert np.allclose(crosses.get_offsets(), fixes.numpy())
    segments = [c for c in ax.collections if type(c).__name__ == "LineCollection" and len(c.get_segments()) == 2
                and np.allclose(c.get_segments()[1][1], [2.0, 30.0])][0]
    assert np.allclose(segments.get_segments()[0], [[0.0, 0.0], [0.1, 0.0]])
    chi2 = segments.get_array()
    assert np.isclose(chi2[1], 900.0) and chi2[1] > chi2[0]
    ax3 = viz.plot_pose_graph(graph, view="3d", color_by_residual=False)
    assert any(c.get_label() == "position priors" for c in ax3.collections)


def test_kitti_error_bars_are_the_errors_per_length():
    """The bars' heights are each result's errors per segment length, side by side; results of
    different lengths, or not results at all, are refused by name."""
    from robojac.trajectory import Trajectory, kitti_error

    Q = torch.zeros(500, 7, dtype=torch.float64)
    Q[:, 0], Q[:, 6] = torch.arange(500, dtype=torch.float64), 1.0
    P = Q.clone()
    P[:, 0] *= 1.02
    a = kitti_error(Trajectory(Q), Trajectory(P), lengths=(100, 200, 300))
    b = kitti_error(Trajectory(Q), Trajectory(Q), lengths=(100, 200, 300))
    axes = viz.plot_kitti_error({"scaled": a, "exact": b})
    heights = [bar.get_height() for bar in axes[0].patches]
    assert np.allclose(heights, np.concatenate((a.translation_percent_by_length.numpy(), np.zeros(3))))
    centres = np.array([bar.get_x() + bar.get_width() / 2 for bar in axes[0].patches])
    assert (centres[:3] < [100, 200, 300]).all() and (centres[3:] > [100, 200, 300]).all()  # side by side
    with pytest.raises(ValueError, match="errors: expected the same segment lengths in every result"):
        viz.plot_kitti_error({"a": a, "b": kitti_error(Trajectory(Q), Trajectory(P), lengths=(100, 200))})
    with pytest.raises(TypeError, match=r"errors\['a'\]: expected a kitti_error result"):
        viz.plot_kitti_error({"a": 1.0})
    with pytest.raises(ValueError, match="errors: expected a dict"):
        viz.plot_kitti_error([a])


def test_odometry_map_shows_every_scan_around_the_path_and_errors_in_one_unit():
    """The map mixes the scans' points (drawn one scan after another, the last hid the others),
    frames the path with 30 m around it, and the two error panels speak the same unit (the
    colour bar was in metres and the curve in centimetres)."""
    from robojac import data
    from robojac.icp import lidar_odometry, read_scans
    from robojac.trajectory import Trajectory, ate

    scans, _ = read_scans(data.path("pointclouds/kitti00"))
    scans = [s[::4] for s in scans[:4]]
    result = lidar_odometry(scans)
    T = result.trajectory.poses.detach().clone()
    T[:, 0] += 0.01 * torch.arange(len(T), dtype=T.dtype)  # a reference a few cm away
    fig = viz.plot_odometry(result, Trajectory(T), scans=scans, max_points=4000)
    titled = {ax.get_title().split()[0]: ax for ax in fig.axes if ax.get_title()}
    ax_map, ax_path, ax_err = fig.axes[0], titled["ATE"], titled["error"]
    bar = next(ax for ax in fig.axes if ax.get_ylabel().startswith("position error") and ax is not ax_err)
    k = np.asarray(ax_map.collections[0].get_array())
    assert set(k.tolist()) == {0, 1, 2, 3} and (np.diff(k) != 0).mean() > 0.5  # mixed, not scan by scan
    P = result.trajectory.poses[:, :2].numpy()
    (x0, x1), (y0, y1) = ax_map.get_xlim(), ax_map.get_ylim()
    assert x0 <= P[:, 0].min() - 30 + 1e-9 and x1 >= P[:, 0].max() + 30 - 1e-9 and x1 - x0 < 100
    assert y0 <= P[:, 1].min() - 30 + 1e-9 and y1 >= P[:, 1].max() + 30 - 1e-9
    err = ate(Trajectory(T), result.trajectory).errors.numpy()
    assert err.max() < 0.5
    np.testing.assert_allclose(ax_err.lines[0].get_ydata(), err * 100)
    assert ax_err.get_ylabel() == "position error (cm)"
    np.testing.assert_allclose(np.sort(ax_path.collections[-1].get_array()), np.sort(err * 100))
    assert bar.get_ylabel() == "position error (cm)"


def test_a_humanoid_is_drawn_with_each_named_frames_axes_and_each_target():
    """``plot_arm`` of a tree with several frames (a humanoid's hands and feet): three axis lines
    at each frame, drawn where the kinematics puts it, and one star per target row."""
    from robojac.data import path as data_path
    from robojac.kinematics import Chain

    talos = Chain.from_urdf(data_path("robots/talos_reduced.urdf"))
    frames = ["gripper_left_base_link", "left_sole_link", "right_sole_link"]
    q = talos.random_configuration(generator=torch.Generator().manual_seed(0))
    X = talos.forward_kinematics_tensor(q, frames)
    ax = viz.plot_arm(talos, q, frame=frames, target=X[:, :3] + 0.01)
    starts = [line.get_data_3d() for line in ax.lines if line.get_color() in ("#d62728", "#2ca02c", "#1f77b4")]
    assert len(starts) == 9
    origins = np.array([[xs[0], ys[0], zs[0]] for xs, ys, zs in starts[::3]])
    assert np.abs(origins - X[:, :3].numpy()).max() < 1e-12
    stars = np.asarray(ax.collections[-1]._offsets3d).T
    assert stars.shape == (3, 3) and np.abs(stars - (X[:, :3].numpy() + 0.01)).max() < 1e-12
    with pytest.raises(ValueError, match="frame: 'left_hand' is not a frame of the chain"):
        viz.plot_arm(talos, q, frame=["left_sole_link", "left_hand"])


def test_a_floating_humanoid_is_drawn_without_its_six_joints_and_with_its_centre_of_mass():
    """``plot_arm(center_of_mass=True)`` of a chain on a floating base: no segment of the six
    virtual joints (the base's square where the pelvis is), the centre of mass where the chain
    computes it, and its drop to the lowest frame."""
    from robojac.data import path as data_path
    from robojac.kinematics import Chain

    talos = Chain.from_urdf(data_path("robots/talos_reduced.urdf")).with_floating_base()
    q = talos.random_configuration(generator=torch.Generator().manual_seed(1))
    ax = viz.plot_arm(talos, q, show_frame_axes=False, center_of_mass=True)
    segments = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(segments) == len(talos.frame_names) - 1 - 6  # every link but the floating base's six
    c = talos.center_of_mass(q).numpy()
    discs = [np.asarray(s._offsets3d).T for s in ax.collections if s.get_label() == "centre of mass"]
    assert len(discs) == 1 and np.abs(discs[0][0] - c).max() < 1e-12
    base = np.asarray(ax.collections[1]._offsets3d).T[0]  # the square
    assert np.abs(base - talos.forward_kinematics_tensor(q, ["base_link"])[0, :3].numpy()).max() < 1e-12
    drop = [line.get_data_3d() for line in ax.lines if line.get_linestyle() == ":"]
    lowest = talos.forward_kinematics_tensor(q)[7:, 2].min()  # frames 1-6 are the floating base's
    assert len(drop) == 1 and abs(drop[0][2][1] - float(lowest)) < 1e-12
