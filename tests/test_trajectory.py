"""robojac.trajectory: evo-compatible files, alignment, ATE and RPE against known answers."""

import io
import math

import numpy as np
import pypose as pp
import pytest
import torch

from robojac.trajectory import (
    PoseRelation, Trajectory, TrajectoryError, align_umeyama, associate, ate, end_drift, in_time_range, interpolate,
    match_times, path_length, project_to_plane, read_euroc, read_kitti, read_tum, rpe, write_kitti, write_tum,
)

from helpers import max_err


def _traj(device, n=40, seed=0):
    g = torch.Generator(device).manual_seed(seed)
    kw = dict(dtype=torch.float64, device=device)
    X = pp.se3(torch.randn(n, 6, generator=g, **kw) * torch.tensor([3, 3, 1, 0.5, 0.5, 2.0], **kw)).Exp()
    return Trajectory(X.tensor(), torch.arange(n, **kw) * 0.1 + 1000.0)


def _evo_bytes(mat):  # what evo's file_interface writes: numpy.savetxt, space delimiter, default format
    buf = io.BytesIO()
    np.savetxt(buf, mat, delimiter=" ")
    return buf.getvalue()


def test_tum_file_is_byte_compatible_and_round_trips(tmp_path, device):
    t = _traj(device)
    path = write_tum(t, tmp_path / "est.tum")
    P = t.poses.cpu().numpy()
    assert path.read_bytes() == _evo_bytes(np.column_stack((t.timestamps.cpu().numpy(), P[:, :3], P[:, 3:])))
    back = read_tum(path)
    assert max_err(back.poses, t.poses.cpu()) < 1e-15 and max_err(back.timestamps, t.timestamps.cpu()) == 0


def test_kitti_file_is_byte_compatible_and_round_trips(tmp_path, device):
    t = _traj(device)
    path = write_kitti(t, tmp_path / "est.txt")
    flat = np.stack([m[:3, :].reshape(-1) for m in t.matrices().cpu().numpy()])  # the same numbers, evo's layout
    assert path.read_bytes() == _evo_bytes(flat)
    back = read_kitti(path)
    assert back.timestamps is None and max_err(back.matrices(), t.matrices().cpu()) < 1e-14


def test_reading_tolerates_comments_and_refuses_bad_lines(tmp_path):
    p = tmp_path / "a.tum"
    p.write_text("# timestamp tx ty tz qx qy qz qw\n1.0 0 0 0 0 0 0 1\n\n2.0 1 0 0 0 0 0 1\n")
    assert len(read_tum(p)) == 2
    p.write_text("1.0 0 0 0 0 0 0 1\n2.0 1 0 0 0 0 1\n")
    with pytest.raises(TrajectoryError, match=r"a.tum:2: a TUM line needs 8 numbers, got 7"):
        read_tum(p)
    p.write_text("1.0 0 0 0 0 0 0 1\n2.0 1 0 x 0 0 0 1\n")
    with pytest.raises(TrajectoryError, match=r":2: 'x' is not a number"):
        read_tum(p)
    # errors found after parsing name the file's line too, past comments and blank lines
    p.write_text("# header\n1.0 0 0 0 0 0 0 1\n\n2.0 0 0 0 0 0 0 2\n")
    with pytest.raises(TrajectoryError, match=r"a.tum:4: pose 1 has a quaternion of length 2"):
        read_tum(p)
    p.write_text("# header\n\n1.0 0 0 nan 0 0 0 1\n")
    with pytest.raises(TrajectoryError, match=r"a.tum:3: pose 0 has NaN"):
        read_tum(p)
    q = tmp_path / "k.txt"
    q.write_text("# header\n1 0 0 0 0 1 0 0 0 0 1 0\n2 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(TrajectoryError, match=r"k.txt:3: pose 1 is not a rigid transform"):
        read_kitti(q)
    with pytest.raises(TrajectoryError, match="timestamps: pose 1's is NaN or infinite"):
        Trajectory(_traj(torch.device("cpu"), 3).poses, torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(TrajectoryError, match="no timestamps"):
        write_tum(Trajectory(_traj(torch.device("cpu")).poses), tmp_path / "x.tum")
    with pytest.raises(FileNotFoundError):
        read_tum(tmp_path / "missing.tum")


def test_umeyama_recovers_a_similarity(device):
    g = torch.Generator(device).manual_seed(1)
    x = torch.randn(50, 3, dtype=torch.float64, generator=g, device=device)
    R = pp.randn_SO3(dtype=torch.float64, device=device).matrix()
    t = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, device=device)
    y = 2.5 * x @ R.T + t
    R2, t2, s2 = align_umeyama(x, y, with_scale=True)
    assert max_err(R2, R) < 1e-12 and max_err(t2, t) < 1e-12 and s2 == pytest.approx(2.5, rel=1e-12)
    R3, t3, s3 = align_umeyama(x, x @ R.T + t)
    assert s3 == 1.0 and max_err(R3, R) < 1e-12


def test_ate_after_alignment_and_without(device):
    ref = _traj(device)
    G = pp.randn_SE3(dtype=torch.float64, device=device)
    moved = Trajectory((G * ref.se3()).tensor(), ref.timestamps)
    assert ate(ref, moved)["rmse"] < 1e-12  # a rigid motion of the whole trajectory is aligned away
    shift = torch.tensor([0.3, 0, 0, 0, 0, 0, 0], dtype=torch.float64, device=device)
    off = Trajectory(ref.poses + shift, ref.timestamps)
    res = ate(ref, off, align=False)
    assert res["rmse"] == pytest.approx(0.3, rel=1e-12) and res["max"] == pytest.approx(0.3, rel=1e-12)
    rot = ate(ref, moved, align=False, relation=PoseRelation.ROTATION_ANGLE_DEG)
    angle = math.degrees(float(G.rotation().Log().tensor().norm()))
    assert rot["max"] > 0 and rot["min"] <= angle + 1e-9


def _evo_path(traj):
    from evo.core.trajectory import PosePath3D

    P = traj.poses.cpu().numpy()
    return PosePath3D(positions_xyz=P[:, :3], orientations_quat_wxyz=P[:, [6, 3, 4, 5]])


@pytest.mark.parametrize("relation", list(PoseRelation))
def test_ate_and_rpe_agree_with_evo(relation):
    """evo's own APE and RPE on the same trajectories, every relation, every alignment mode
    (the scale alone, ``align=False, correct_scale=True``, had been a full similarity)."""
    evo_metrics = pytest.importorskip("evo.core.metrics")
    from evo.main_ape import ape as evo_ape
    from evo.main_rpe import rpe as evo_rpe

    ref = _traj("cpu", n=30, seed=3)
    g = torch.Generator().manual_seed(4)
    noise = pp.se3(0.05 * torch.randn(30, 6, dtype=torch.float64, generator=g)).Exp()
    P = (noise * ref.se3()).tensor()
    est = Trajectory(torch.cat((1.7 * P[:, :3], P[:, 3:]), 1))  # off in scale too
    evo_relation = evo_metrics.PoseRelation[relation.value]  # its member names are our values
    modes = [dict(align=a, correct_scale=c) for a in (True, False) for c in (False, True)]
    modes += [dict(align=True, n_to_align=8), dict(align=True, correct_scale=True, n_to_align=8),
              dict(align=False, correct_scale=True, n_to_align=8), dict(align=False, align_origin=True),
              dict(align=False, correct_scale=True, align_origin=True)]
    for mode in modes:
        ours = ate(ref, est, relation=relation, **mode)
        evo_mode = {**mode, "n_to_align": mode.get("n_to_align", -1)}
        theirs = evo_ape(_evo_path(ref), _evo_path(est), evo_relation, **evo_mode)
        np.testing.assert_allclose(ours.errors.numpy(), theirs.np_arrays["error_array"], rtol=1e-9, atol=1e-12,
                                   err_msg=str(mode))
        for name, value in theirs.stats.items():  # 30 poses: the median of an even count (torch's had been the lower one)
            assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (mode, name)
        if mode["align"] or (mode.get("align_origin") and not mode.get("correct_scale")):  # the 4x4 applied (evo reports a
            # scale-only alignment's whole similarity, and an origin alignment after a scale without the scale)
            np.testing.assert_allclose(ours.alignment.numpy(), theirs.np_arrays["alignment_transformation_sim3"],
                                       atol=1e-9, err_msg=str(mode))
        ours = rpe(ref, est, relation=relation, delta=4, **mode)  # the estimate aligned first, as evo's RPE
        theirs = evo_rpe(_evo_path(ref), _evo_path(est), evo_relation, delta=4, delta_unit=evo_metrics.Unit.frames,
                         **evo_mode)
        np.testing.assert_allclose(ours.errors.numpy(), theirs.np_arrays["error_array"], rtol=1e-9, atol=1e-12,
                                   err_msg=f"rpe {mode}")
        for name, value in theirs.stats.items():
            assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (f"rpe {mode}", name)
    for delta, all_pairs in ((1, False), (4, False), (4, True)):
        ours = rpe(ref, est, relation=relation, delta=delta, all_pairs=all_pairs).errors.numpy()
        theirs = evo_rpe(_evo_path(ref), _evo_path(est), evo_relation, delta=delta, delta_unit=evo_metrics.Unit.frames,
                         all_pairs=all_pairs)
        np.testing.assert_allclose(ours, theirs.np_arrays["error_array"], rtol=1e-9, atol=1e-12,
                                   err_msg=f"delta={delta}, all_pairs={all_pairs}")


def test_alignment_options_that_cannot_go_together_are_refused(device):
    ref = _traj(device, 10)
    with pytest.raises(TrajectoryError, match="align_origin replaces the Umeyama alignment; pass align=False"):
        ate(ref, ref, align_origin=True)
    for bad in (2, 11, 3.0, True):
        with pytest.raises(TrajectoryError, match=r"n_to_align must be an integer in \[3, 10\]"):
            ate(ref, ref, n_to_align=bad)
    with pytest.raises(TrajectoryError, match="n_to_align sets how many poses the alignment fits"):
        ate(ref, ref, align=False, n_to_align=5)
    moved = Trajectory((pp.randn_SE3(dtype=torch.float64, device=device) * ref.se3()).tensor())
    assert ate(ref, moved, align=False, align_origin=True)["max"] < 1e-12  # one motion of the whole: aligned away


def test_an_alignment_the_positions_cannot_fix_is_refused(device):
    """On a line (or at one point) any turn about the line aligns equally well: the rotation
    errors would be arbitrary, so those relations are refused (as evo refuses), and with scale a
    lone point (NaN statistics, before); the translation part is the same for every such turn and
    is measured (evo refuses it too, which had stopped the odometry's plots of a straight drive)."""
    n = 20
    line = torch.zeros(n, 7, dtype=torch.float64, device=device)
    line[:, 0], line[:, 6] = torch.arange(n, dtype=torch.float64, device=device), 1
    turned = line.clone()
    turned[:, 3:] = torch.tensor([0.6, 0, 0, 0.8], dtype=torch.float64, device=device)  # about the line itself
    still = line.clone()
    still[:, 0] = 0
    for est, kw in ((turned, {}), (turned, dict(correct_scale=True)), (still, {})):
        for relation in (PoseRelation.ROTATION_ANGLE_DEG, PoseRelation.FULL_TRANSFORMATION):
            with pytest.raises(TrajectoryError, match="one line or at one point"):
                ate(Trajectory(line), Trajectory(est), relation=relation, **kw)
    with pytest.raises(TrajectoryError, match="all one point, so no scale fits them"):
        ate(Trajectory(line), Trajectory(still), correct_scale=True)
    assert ate(Trajectory(line), Trajectory(turned))["max"] < 1e-12  # the positions agree, whichever turn
    shifted = line.clone()
    shifted[:, 1] = 0.25  # beside the line: aligned onto it
    assert ate(Trajectory(line), Trajectory(shifted))["max"] < 1e-12
    spread = ate(Trajectory(line), Trajectory(still))  # all at one point: aligned to the reference's centre
    assert spread["max"] == pytest.approx(9.5, rel=1e-12) and spread["min"] == pytest.approx(0.5, rel=1e-12)
    assert ate(Trajectory(line), Trajectory(turned), align=False)["max"] == 0.0
    assert ate(Trajectory(line), Trajectory(turned), align=False,
               relation=PoseRelation.ROTATION_ANGLE_DEG)["max"] == pytest.approx(73.7397952917, rel=1e-9)


@pytest.mark.parametrize("shape, far, seed", [("one point", 1.0, 0), ("one point", 1e5, 6), ("one line", 1e5, 0)])
def test_a_reference_on_a_line_to_rounding_is_refused_too(shape, far, seed, device):
    """Centring a point or a line leaves rounding scatter across it (1e-16 of the coordinates:
    1e-11 m at map coordinates of 1e5 m), and the covariance with the estimate that much rank.
    A test relative to its largest singular value took that for a spread when the reference was
    one point (the largest is rounding too) or a line far from the origin: the rotation
    relations came back arbitrary (175 degrees) where they are refused.  A real trajectory as
    far out, 20 m across and flat to 1 mm, still aligns as evo aligns it."""
    evo_main_ape = pytest.importorskip("evo.main_ape")
    from evo.core import metrics

    n, kw = 25, dict(dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(seed)
    ref = pp.se3(torch.randn(n, 6, dtype=torch.float64, generator=g, device="cpu")).Exp().tensor().to(device)
    start = far * torch.randn(3, dtype=torch.float64, generator=g, device="cpu").to(device)
    along = torch.linspace(0, 1, n, **kw)[:, None] if shape == "one line" else torch.zeros(n, 1, **kw)
    ref[:, :3] = start + 7.0 * along * torch.tensor([0.48, -0.6, 0.64], **kw)
    est = pp.se3(torch.randn(n, 6, dtype=torch.float64, generator=g, device="cpu")).Exp().tensor().to(device)
    for relation in (PoseRelation.ROTATION_ANGLE_DEG, PoseRelation.FULL_TRANSFORMATION):
        with pytest.raises(TrajectoryError, match="one line or at one point"):
            ate(Trajectory(ref), Trajectory(est), relation=relation)
    with pytest.raises(TrajectoryError, match="one line or at one point"):
        align_umeyama(est[:, :3], ref[:, :3])
    if shape == "one line":  # asked for: one of the equally good turns, each point placed on the line
        R, t, _ = align_umeyama(ref[:, :3] - start, ref[:, :3], degenerate_ok=True)
        assert max_err((R @ (ref[:, :3] - start).T).T + t, ref[:, :3]) < 1e-9 * far
    # a real drive as far out: 20 m across, 1 mm up and down
    ref[:, :3] = start + 20 * torch.rand(n, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    ref[:, 2] = start[2] + 1e-3 * torch.rand(n, dtype=torch.float64, generator=g, device="cpu").to(device)
    t = torch.arange(n, dtype=torch.float64, device="cpu")
    evo = [_evo_stamped(Trajectory(x.cpu(), t)) for x in (ref, est)]
    theirs = evo_main_ape.ape(*evo, metrics.PoseRelation.rotation_angle_deg, align=True).np_arrays["error_array"]
    ours = ate(Trajectory(ref), Trajectory(est), relation=PoseRelation.ROTATION_ANGLE_DEG).errors.cpu().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8)


def test_rpe_measures_drift_per_window(device):
    n = 30
    steps = torch.zeros(n, 7, dtype=torch.float64, device=device)
    steps[:, 0] = torch.arange(n, dtype=torch.float64, device=device)
    steps[:, 6] = 1
    ref = Trajectory(steps)
    drift = steps.clone()
    drift[:, 0] = torch.arange(n, dtype=torch.float64, device=device) * 1.01  # 1 cm too far per metre
    est = Trajectory(drift)
    for delta in (1, 5):
        res = rpe(ref, est, delta=delta)
        assert res["mean"] == pytest.approx(0.01 * delta, rel=1e-9) and res["std"] < 1e-12
    assert len(rpe(ref, est, delta=5).errors) == 5 and len(rpe(ref, est, delta=5, all_pairs=True).errors) == 25
    with pytest.raises(TrajectoryError, match=r"delta must be a whole number of frames in \[1, 29\], got 0"):
        rpe(ref, est, delta=0)
    with pytest.raises(TrajectoryError, match="rpe: 1 poses hold no relative pose; it needs two or more"):
        rpe(Trajectory(ref.poses[:1]), Trajectory(est.poses[:1]))  # (it had asked for a delta in [1, 0])


def test_associate_matches_timestamps(device):
    ref = _traj(device, 20)
    est = Trajectory(ref.poses[::2], ref.timestamps[::2] + 0.004)
    r, e = associate(ref, est, max_difference=0.01)
    assert len(r) == 10 and max_err(r.poses, e.poses) == 0
    with pytest.raises(TrajectoryError, match="no timestamps match"):
        associate(ref, Trajectory(est.poses, est.timestamps + 5))


def _evo_stamped(t):
    from evo.core.trajectory import PoseTrajectory3D

    P = t.poses.cpu().numpy()
    return PoseTrajectory3D(positions_xyz=P[:, :3], orientations_quat_wxyz=P[:, [6, 3, 4, 5]],
                            timestamps=t.timestamps.cpu().numpy().copy())


def _same_rotations(q, wxyz, atol):
    """Unit quaternions ``q`` (ours, x y z w) and ``wxyz`` (evo's) of the same rotations (either sign)."""
    q = q[:, [3, 0, 1, 2]]
    return np.minimum(np.abs(q - wxyz).max(1), np.abs(q + wxyz).max(1)).max() < atol


@pytest.mark.parametrize("method", ["nearest_time", "interpolation"])
@pytest.mark.parametrize("offset", [0.0, 0.0021, -0.0043])
@pytest.mark.parametrize("case", ["estimate denser", "reference denser", "reference unsorted", "estimate unsorted"])
def test_associate_pairs_as_evo_does(case, offset, method):
    """evo's ``associate_trajectories`` on the same timestamps, with its time offset (added to
    the estimate's) and both of its methods: the nearest poses, or the denser trajectory
    interpolated at the sparser one's times (positions linearly, rotations by slerp; here between
    poses that turn far apart, at times between them).  A denser estimate had paired a reference
    pose with several estimates (35 pairs for 10), and an unsorted reference had been searched
    as if sorted (3 pairs for 20).  evo interpolates a trajectory whose times are sorted: it gets
    it sorted (robojac sorts it itself)."""
    evo_sync = pytest.importorskip("evo.core.sync")

    rng = np.random.default_rng(0)
    sparse, dense = np.arange(0, 1, 0.1), np.arange(0, 1, 0.005) + 0.0013
    stamps = {"estimate denser": (sparse, dense), "reference denser": (dense, sparse),
              "reference unsorted": (rng.permutation(np.arange(0, 1, 0.05)), np.arange(0, 1, 0.05) + 0.003),
              "estimate unsorted": (np.arange(0, 1, 0.05), rng.permutation(np.arange(0, 1, 0.05)) + 0.003)}[case]
    ref, est = (Trajectory(_traj("cpu", len(t), seed=k).poses, torch.from_numpy(t)) for k, t in enumerate(stamps))
    r, e = associate(ref, est, offset=offset, method=method)
    if method == "interpolation" and case == "reference unsorted":  # the denser one (the first, on a tie)
        order = torch.argsort(ref.timestamps)
        ref = Trajectory(ref.poses[order], ref.timestamps[order])
    r_evo, e_evo = evo_sync.associate_trajectories(_evo_stamped(ref), _evo_stamped(est), offset_2=offset,
                                                   sync_method=evo_sync.SyncMethod(method))
    assert len(r) == len(r_evo.timestamps) == len(e) >= 10
    np.testing.assert_allclose(r.timestamps.numpy(), r_evo.timestamps, rtol=0, atol=1e-15)
    np.testing.assert_allclose(e.timestamps.numpy(), e_evo.timestamps, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.poses[:, :3].numpy(), r_evo.positions_xyz, rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.poses[:, :3].numpy(), e_evo.positions_xyz, rtol=0, atol=1e-12)
    assert _same_rotations(r.poses[:, 3:].numpy(), r_evo.orientations_quat_wxyz, 1e-12)
    assert _same_rotations(e.poses[:, 3:].numpy(), e_evo.orientations_quat_wxyz, 1e-12)
    if method == "interpolation" and case == "estimate denser":  # at times between the estimate's own poses
        assert max_err(e.poses[:, :3], associate(ref, est, offset=offset)[1].poses[:, :3]) > 0.1


@pytest.mark.parametrize("case", ["past the end, to a rounding", "equal last times", "unsorted tie",
                                  "unsorted equal times"])
def test_associate_settles_ties_as_evo_does(case):
    """At a tie evo's pairs are kept: a time past the last one by max_difference in decimal (0.2
    against 19 * 0.01, 1e-17 over in floats) matches, as evo's span test lets it; past equal
    last times, the last of them; where the denser times are unsorted, the one first in the
    trajectory (evo's argmin), else the earlier time.  These had each picked another pose or
    left the pair out."""
    evo_sync = pytest.importorskip("evo.core.sync")
    sparse, dense = {
        "past the end, to a rounding": (np.arange(3) * 0.1, np.arange(20) * 0.01),
        "equal last times": (np.array([0.0, 0.61]), np.array([0.0, 0.3, 0.6, 0.6, 0.6])),
        "unsorted tie": (np.array([0.0, 0.5, 1.0]), np.array([0.5 + 2**-8, 0.0, 0.5 - 2**-8, 1.0])),  # exact
        "unsorted equal times": (np.array([0.0, 0.5, 1.0]), np.array([0.5, 0.0, 0.5, 1.0])),
    }[case]
    ref = Trajectory(_traj("cpu", len(sparse), seed=0).poses, torch.from_numpy(sparse))
    est = Trajectory(_traj("cpu", len(dense), seed=1).poses, torch.from_numpy(dense))
    r, e = associate(ref, est, max_difference=0.01)
    r_evo, e_evo = evo_sync.associate_trajectories(_evo_stamped(ref), _evo_stamped(est), max_diff=0.01)
    assert len(r) == len(r_evo.timestamps) == len(e)
    np.testing.assert_array_equal(r.timestamps.numpy(), r_evo.timestamps)
    np.testing.assert_array_equal(e.poses[:, :3].numpy(), e_evo.positions_xyz)  # the same poses, not only times


def test_interpolate_between_poses(device):
    """Halfway between two poses: the mean position, and half of the rotation between them (about
    its axis); at a pose's own time, that pose; before the first and after the last, the end poses
    (or, with ``extrapolate``, the end segments continued).  Bad input is refused, named."""
    kw = dict(dtype=torch.float64, device=device)
    a = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], **kw)
    b = torch.tensor([2.0, 4.0, -2.0, 0.0, 0.0, math.sin(1.2), math.cos(1.2)], **kw)  # 2.4 rad about z
    traj = Trajectory(torch.stack((b, a)), torch.tensor([3.0, 1.0], **kw))  # unsorted times
    out = interpolate(traj, [2.0, 1.0, 3.0, 0.0, 5.0])
    half = torch.tensor([1.0, 2.0, -1.0, 0.0, 0.0, math.sin(0.6), math.cos(0.6)], **kw)
    assert max_err(out.poses, torch.stack((half, a, b, a, b))) < 1e-14
    assert out.timestamps.tolist() == [2.0, 1.0, 3.0, 0.0, 5.0]
    far = interpolate(traj, [5.0], extrapolate=True).poses[0]  # one more segment: 4.8 rad about z
    assert max_err(far, torch.tensor([4.0, 8.0, -4.0, 0.0, 0.0, math.sin(2.4), math.cos(2.4)], **kw)) < 1e-14
    with pytest.raises(TrajectoryError, match="interpolate: the trajectory holds 1 pose"):
        interpolate(Trajectory(a[None], torch.tensor([0.0], **kw)), [0.5])
    with pytest.raises(TrajectoryError, match="trajectory: the trajectory has no timestamps"):
        interpolate(Trajectory(torch.stack((a, b))), [0.5])
    with pytest.raises(TrajectoryError, match="timestamps must be finite"):
        interpolate(traj, [float("nan")])


def test_in_time_range_and_associate_refuse_bad_input(device):
    t = _traj(device, 20)  # times 1000.0 ... 1001.9
    kept = in_time_range(t, 1000.45, 1001.0)
    assert kept.timestamps.tolist() == pytest.approx([1000.5 + 0.1 * k for k in range(6)])
    assert max_err(kept.poses, t.poses[5:11]) == 0
    assert len(in_time_range(t, end=1000.15)) == 2 and len(in_time_range(t)) == 20
    with pytest.raises(TrajectoryError, match="in_time_range: start 2000.0 s is after end 1000.0 s"):
        in_time_range(t, 2000.0, 1000.0)
    with pytest.raises(TrajectoryError, match="in_time_range: start must be a finite number of seconds"):
        in_time_range(t, float("inf"))
    with pytest.raises(TrajectoryError, match="associate: offset must be a finite number of seconds"):
        associate(t, t, offset=float("nan"))
    with pytest.raises(ValueError, match="associate.method: expected one of"):
        associate(t, t, method="linear")
    with pytest.raises(TrajectoryError, match=r"no timestamps match within 0.01 s \(estimate shifted by 0.05 s\)"):
        associate(t, t, offset=0.05)  # halfway between the poses


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_match_times_pairs_each_query_with_its_nearest_time(device, order):
    """GNSS fixes (1 Hz, jittered, some in gaps and past the ends) onto keyframe times (irregular,
    ~10 Hz): each fix with the nearest keyframe time within ``max_difference`` (a brute-force
    argmin over every pair is the reference), none without one; two fixes may take one keyframe;
    ``offset`` counts on the query's clock.  Times in any order, as tensors or arrays."""
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.05, 0.15, 600)) + 1.7e9  # Unix seconds: float64 keeps 0.2 us
    times = np.delete(times, np.arange(200, 260))  # a gap: a tunnel without keyframes
    fixes = np.arange(times[0] - 3, times[-1] + 3, 1.0)
    query = np.concatenate((fixes + rng.normal(0, 0.002, len(fixes)), [times[10] + 1e-3] * 2))  # two at one time
    if order == "shuffled":
        perm = rng.permutation(len(times))
        times = times[perm]
    gap = np.abs(times[:, None] - query[None, :])
    ok = gap.min(0) <= 0.04
    index, query_index = match_times(torch.tensor(times, dtype=torch.float64, device=device), query, 0.04)
    assert index.device == torch.device(device) and index.dtype == query_index.dtype == torch.int64
    np.testing.assert_array_equal(query_index.cpu().numpy(), np.flatnonzero(ok))
    np.testing.assert_array_equal(index.cpu().numpy(), gap.argmin(0)[ok])
    assert 20 < ok.sum() < len(query) - 5 and index[-1] == index[-2]  # some left out; a keyframe matched twice
    late = match_times(times, query - 0.5, 0.04, offset=0.5)  # the fixes' clock 0.5 s behind
    assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(late, (index, query_index)))
    # a tie: the earlier time (in order) or the one first in the array (out of order), as associate does
    assert match_times([1.0, 3.0], [2.0], 1.0)[0].tolist() == [0]
    assert match_times([3.0, 1.0], [2.0], 1.0)[0].tolist() == [0]


def test_match_times_refuses_what_it_cannot_match(device):
    kw = dict(dtype=torch.float64, device=device)
    keyframes = torch.arange(100, **kw) * 0.1 + 1.7e9
    with pytest.raises(TrajectoryError, match=r"match_times: no query time within 0.05 s of a time \(times: "
                                              r"\[1700000000, 1700000009.9\d*\] s; query: \[1700000018"):
        match_times(keyframes, keyframes[::10] + 18.0, 0.05)  # GPS time against UTC: 18 s apart
    with pytest.raises(TrajectoryError, match="match_times: query: expected finite seconds; entry 1 is nan"):
        match_times(keyframes, [0.0, float("nan")])
    with pytest.raises(TrajectoryError, match=r"times: expected a 1-D array of seconds, got shape \(2, 50\)"):
        match_times(keyframes.reshape(2, 50), [0.0])
    with pytest.raises(TrajectoryError, match="match_times: times: expected times in seconds"):
        match_times(_traj(device, 5), [0.0])
    with pytest.raises(TrajectoryError, match="match_times: max_difference must be a non-negative number of seconds"):
        match_times(keyframes, keyframes, -0.1)
    with pytest.raises(TrajectoryError, match="match_times: offset must be a finite number of seconds"):
        match_times(keyframes, keyframes, offset=float("inf"))
    with pytest.raises(TrajectoryError, match=r"times: empty"):
        match_times([], [1.0])
    with pytest.raises(TrajectoryError, match="match_times: times: expected numbers of seconds, got NoneType None"):
        match_times(None, [1.0])
    with pytest.raises(TrajectoryError, match="match_times: query: expected numbers of seconds, got list of <U"):
        match_times(keyframes, ["12:00:01"])
    # numpy datetimes are seconds since the epoch (their nanoseconds had been taken for seconds)
    stamps = np.datetime64("2026-12-07T12:00:00", "ns") + np.arange(10) * np.timedelta64(100, "ms")
    index, which = match_times(stamps, stamps[[2, 7]] + np.timedelta64(3, "ms"), 0.01)
    assert index.tolist() == [2, 7] and which.tolist() == [0, 1]


@pytest.mark.parametrize("plane", ["xy", "xz", "yz"])
def test_project_to_plane_equals_evos(plane):
    """evo's ``PosePath3D.project`` on the same poses, among them some turned +-90 degrees about y
    (its Euler angles' singular case), and evo's APE and RPE with ``project_to_plane``."""
    evo_trajectory = pytest.importorskip("evo.core.trajectory")
    evo_metrics = pytest.importorskip("evo.core.metrics")
    from evo.main_ape import ape as evo_ape
    from evo.main_rpe import rpe as evo_rpe

    t = _traj("cpu", 50, seed=3)

    def about(axis, angle):
        phi = torch.zeros(3, dtype=torch.float64)
        phi[axis] = angle
        return pp.so3(phi).Exp()

    P = t.poses.clone()
    for k, (c, b, a) in enumerate(((0.7, math.pi / 2, -0.4), (-2.0, -math.pi / 2, 1.1))):  # R_z(c) R_y(+-90 deg) R_x(a)
        P[k, 3:] = (about(2, c) @ about(1, b) @ about(0, a)).tensor()
    t = Trajectory(P, t.timestamps)
    ours = project_to_plane(t, plane)
    theirs = _evo_stamped(t)
    theirs.project(evo_trajectory.Plane(plane))
    np.testing.assert_allclose(ours.poses[:, :3].numpy(), theirs.positions_xyz, rtol=0, atol=1e-12)
    assert _same_rotations(ours.poses[:, 3:].numpy(), theirs.orientations_quat_wxyz, 1e-12)
    g = torch.Generator().manual_seed(4)
    est = Trajectory((pp.se3(0.05 * torch.randn(50, 6, dtype=torch.float64, generator=g)).Exp() * t.se3()).tensor())
    for relation in (PoseRelation.TRANSLATION_PART, PoseRelation.ROTATION_ANGLE_DEG):
        evo_relation = evo_metrics.PoseRelation[relation.value]
        mine = ate(t, est, relation=relation, project_to_plane=plane)
        other = evo_ape(_evo_path(t), _evo_path(est), evo_relation, align=True, project_to_plane=evo_trajectory.Plane(plane))
        np.testing.assert_allclose(mine.errors.numpy(), other.np_arrays["error_array"], rtol=1e-9, atol=1e-12)
        mine = rpe(t, est, relation=relation, delta=3, align=True, project_to_plane=plane)
        other = evo_rpe(_evo_path(t), _evo_path(est), evo_relation, delta=3, delta_unit=evo_metrics.Unit.frames,
                        align=True, project_to_plane=evo_trajectory.Plane(plane))
        np.testing.assert_allclose(mine.errors.numpy(), other.np_arrays["error_array"], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="ate.project_to_plane: expected one of"):
        ate(t, est, project_to_plane="xyz")
    with pytest.raises(ValueError, match="rpe.project_to_plane: expected one of"):
        rpe(t, est, project_to_plane="z")
    with pytest.raises(ValueError, match="project_to_plane.plane: expected one of"):
        project_to_plane(t, "XY")


def test_path_length_and_end_drift(device):
    """A 10 m straight line whose estimate ends 0.1 m off: 1% drift; refusals name the problem."""
    x = torch.linspace(0, 10, 11, dtype=torch.float64, device=device)
    poses = torch.zeros(11, 7, dtype=torch.float64, device=device)
    poses[:, 0], poses[:, 6] = x, 1.0
    ref = Trajectory(poses)
    est_poses = poses.clone()
    est_poses[:, 1] = 0.01 * x  # 1 cm sideways per metre
    assert abs(path_length(ref) - 10.0) < 1e-12
    assert abs(end_drift(ref, Trajectory(est_poses)) - 0.01) < 1e-12
    with pytest.raises(TrajectoryError, match="end_drift: 11 reference poses but 10"):
        end_drift(ref, Trajectory(est_poses[:10]))
    with pytest.raises(TrajectoryError, match="does not move"):
        end_drift(Trajectory(poses[:1].expand(3, 7)), Trajectory(poses[:3]))


def test_a_differentiable_trajectory_is_written_as_its_values(tmp_path):
    """A trajectory whose poses carry gradients (an optimizer's answer) writes as its values
    (write_kitti had stopped in numpy())."""
    t = _traj(torch.device("cpu"))
    live = Trajectory(t.poses.clone().requires_grad_(), t.timestamps)
    assert live.poses.requires_grad
    for write, name in ((write_kitti, "a.txt"), (write_tum, "a.tum")):
        assert write(live, tmp_path / name).read_bytes() == write(t, tmp_path / ("plain_" + name)).read_bytes()


def test_euroc_csv_reads_as_evo_reads_it(tmp_path):
    """A EuRoC ground-truth file (17 columns, nanosecond stamps, w-first quaternions, a header):
    the same timestamps and poses as evo's reader, in pypose's order."""
    file_interface = pytest.importorskip("evo.tools.file_interface")
    t = _traj("cpu", n=25, seed=3)
    P = t.poses.numpy()
    ns = (1403636579758555392 + np.arange(25) * 5_000_000).astype(np.int64)
    extra = np.random.default_rng(0).normal(size=(25, 9))
    header = ("#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], "
              "v_RS_R_x [m s^-1], v_RS_R_y [m s^-1], v_RS_R_z [m s^-1], b_w_RS_S_x [rad s^-1], b_w_RS_S_y [rad s^-1], "
              "b_w_RS_S_z [rad s^-1], b_a_RS_S_x [m s^-2], b_a_RS_S_y [m s^-2], b_a_RS_S_z [m s^-2]\n")
    body = "".join(f"{n}," + ",".join(repr(float(v)) for v in (*p[:3], p[6], *p[3:6], *e)) + "\n"
                   for n, p, e in zip(ns, P, extra))
    path = tmp_path / "data.csv"
    path.write_text(header + body)
    ours = read_euroc(path)
    theirs = file_interface.read_euroc_csv_trajectory(str(path))
    assert np.array_equal(ours.timestamps.numpy(), theirs.timestamps)
    assert np.abs(ours.positions.numpy() - theirs.positions_xyz).max() < 1e-15
    assert np.abs(ours.poses[:, 3:].numpy() - theirs.orientations_quat_wxyz[:, [1, 2, 3, 0]]).max() < 1e-15
    assert max_err(ours.poses, t.poses) < 1e-15

    for lines, match in [
        (["1,0,0,0,1,0,0", "2,0,0,0,1,0,0"], r"data.csv:1: a EuRoC line needs at least 8 numbers, got 7"),
        (["1,0,0,0,1,0,0,0,5", "2,0,0,0,1,0,0,0"], r"data.csv:2: 8 numbers, where line 1 has 9"),
        (["#t", "1,0,0,0,1,0,0,0", "2,0,0,0,2,0,0,0"], r"data.csv:3: pose 1 has a quaternion of length 2"),
        (["1,0,0,0,1,0,0,zero"], r"data.csv:1: 'zero' is not a number"),
        (["# only a header"], r"data.csv: no poses found"),
    ]:
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(TrajectoryError, match=match):
            read_euroc(path)


# KISS-ICP's sequence_error (the KITTI development kit in C++) on each KITTI pose graph's odometry
# chain against its optimum, as `benchmarks/kitti_metric.py` prints them: a float32 translation
# error in percent, and a rotation error in degrees per metre converted with 180 / 3.14
KISS_ICP = {"kitti_00": (1.367454052, 0.005523994099), "kitti_05": (1.181056619, 0.00534192007)}


@pytest.mark.parametrize("name", sorted(KISS_ICP))
def test_kitti_error_equals_kiss_icps(name, device):
    from robojac.data import path as data_path
    from robojac.posegraph import initialize, optimize, read_g2o
    from robojac.trajectory import kitti_error

    graph = read_g2o(data_path(f"posegraph/{name}.g2o.gz")).to(device)
    ref = optimize(graph).poses
    est = graph.poses_from_state(initialize(graph, "odometry"))
    err = kitti_error(Trajectory(ref), Trajectory(est))
    t, r = KISS_ICP[name]  # float32 numbers: within one float32 step (1.2e-7 at 1.37, 4.7e-10 at 0.0055)
    assert abs(err.translation_percent - t) <= np.spacing(np.float32(t)), (err.translation_percent, t)
    ours = err.rotation_deg_per_100m / 100 * math.pi / 3.14  # in KISS-ICP's unit
    assert abs(ours - r) <= np.spacing(np.float32(r)), (ours, r)
    assert err.lengths.tolist() == [100.0 * k for k in range(1, 9)] and int(err.segments.min()) > 0


@pytest.mark.parametrize("all_pairs", [False, True], ids=["consecutive", "all pairs"])
@pytest.mark.parametrize("from_reference", [False, True], ids=["pairs on the estimate", "on the reference"])
def test_rpe_over_metres_and_angles_equals_evos(all_pairs, from_reference):
    """evo's own RPE with ``delta_unit`` meters, degrees and radians (its pairs by path and by
    angle turned, on the estimate by default as evo's, or on the reference) on KITTI 00's
    odometry chain against its optimum (3.7 km; every third pose, every ninth for all pairs): the
    same errors for 10 m, 100 m (three relations), 30 degrees and 1 radian."""
    evo_metrics = pytest.importorskip("evo.core.metrics")
    from evo.main_rpe import rpe as evo_rpe

    from robojac.data import path as data_path
    from robojac.posegraph import initialize, optimize, read_g2o

    graph = read_g2o(data_path("posegraph/kitti_00.g2o.gz"))
    ref = Trajectory(optimize(graph).poses)
    est = Trajectory(graph.poses_from_state(initialize(graph, "odometry")))
    step = 9 if all_pairs else 3  # a subsample: evo's searches are Python loops over the poses
    ref, est = Trajectory(ref.poses[::step]), Trajectory(est.poses[::step])
    units = {"meters": evo_metrics.Unit.meters, "degrees": evo_metrics.Unit.degrees, "radians": evo_metrics.Unit.radians}
    for unit, delta in (("meters", 10.0), ("meters", 100.0), ("degrees", 30.0), ("radians", 1.0)):
        every = delta == 100.0  # the relations once: the pairs are the same for each (evo takes seconds a call)
        for relation in (PoseRelation.TRANSLATION_PART,) + ((PoseRelation.ROTATION_ANGLE_DEG,
                                                               PoseRelation.FULL_TRANSFORMATION) if every else ()):
            ours = rpe(ref, est, delta=delta, delta_unit=unit, relation=relation, all_pairs=all_pairs,
                       pairs_from_reference=from_reference).errors.numpy()
            theirs = evo_rpe(_evo_path(ref), _evo_path(est), evo_metrics.PoseRelation[relation.value], delta=delta,
                             delta_unit=units[unit], all_pairs=all_pairs,
                             pairs_from_reference=from_reference).np_arrays["error_array"]
            assert len(ours) == len(theirs) > 10, (delta, unit, len(ours), len(theirs))
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12, err_msg=f"{delta} {unit}, {relation}")


def test_rpe_over_metres_and_angles_pairs_and_refusals(device):
    """On a straight line of 1 m steps: consecutive 5 m windows from the first pose, all pairs
    every pose with a pose 5 m ahead; by angle, on a path turning 10 degrees a step, windows of
    three steps for 25 degrees and six for a radian; too long a delta, a delta
    unit that is not one, and a fractional frame count are refused by name."""
    n = 30
    kw = dict(dtype=torch.float64, device=device)
    line = torch.zeros(n, 7, **kw)
    line[:, 0] = torch.arange(n, **kw)
    line[:, 6] = 1
    drift = line.clone()
    drift[:, 0] *= 1.01
    ref, est = Trajectory(line), Trajectory(drift)
    windows = rpe(ref, est, delta=5.0, delta_unit="meters", pairs_from_reference=True)
    assert len(windows.errors) == 5 and windows["mean"] == pytest.approx(0.05, rel=1e-9)  # (0, 5) ... (20, 25)
    every = rpe(ref, est, delta=5.0, delta_unit="meters", all_pairs=True, pairs_from_reference=True)
    assert len(every.errors) == 25 and every["max"] == pytest.approx(0.05, rel=1e-9)
    with pytest.raises(TrajectoryError, match=r"rpe: no pair of poses 40.0 m apart along the reference \(its path is 29 m\)"):
        rpe(ref, est, delta=40.0, delta_unit="meters", pairs_from_reference=True)
    assert len(rpe(ref, est, delta=29.2, delta_unit="meters").errors) == 1  # the estimate's path is 29.29 m
    with pytest.raises(ValueError, match=r"rpe.delta_unit: expected one of"):
        rpe(ref, est, delta=5, delta_unit="feet")
    with pytest.raises(TrajectoryError, match=r"delta must be a whole number of frames"):
        rpe(ref, est, delta=2.5)
    with pytest.raises(ValueError, match=r"rpe.delta: expected a finite number > 0"):
        rpe(ref, est, delta=-1.0, delta_unit="meters")
    with pytest.raises(ValueError, match=r"rpe.delta: expected a finite number > 0 and <= 180"):
        rpe(ref, est, delta=200.0, delta_unit="degrees")
    with pytest.raises(TrajectoryError, match=r"no pair of poses 5.0 deg apart along the estimate \(its poses never turn"):
        rpe(ref, est, delta=5.0, delta_unit="degrees")  # a straight line never turns
    # turning 10 degrees a step about z: 25 degrees is every third pose, 1 rad every sixth (57.3 deg: 60 >= it)
    turning = line.clone()
    turning[:, 5], turning[:, 6] = torch.sin(torch.arange(n, **kw) * math.radians(5)), torch.cos(torch.arange(n, **kw) * math.radians(5))
    walk = Trajectory(turning)
    assert len(rpe(walk, walk, delta=25.0, delta_unit="degrees").errors) == 9
    assert len(rpe(walk, walk, delta=1.0, delta_unit="radians").errors) == 4
    every = rpe(walk, walk, delta=30.0, delta_unit="degrees", all_pairs=True)  # 27 to 33 degrees: (i, i + 3)
    assert len(every.errors) == 27 and every["max"] < 1e-9


def _devkit(gt, res, lengths, step):
    """The KITTI development kit's sequence errors, transcribed loop by loop (4x4 matrices)."""
    dist = [0.0]
    for i in range(1, len(gt)):
        dist.append(dist[-1] + float(np.linalg.norm(gt[i, :3, 3] - gt[i - 1, :3, 3])))
    out = []
    for first in range(0, len(gt), step):
        for length in lengths:
            last = next((i for i in range(first, len(gt)) if dist[i] > dist[first] + length), -1)
            if last == -1:
                continue
            E = np.linalg.inv(np.linalg.inv(res[first]) @ res[last]) @ (np.linalg.inv(gt[first]) @ gt[last])
            d = 0.5 * (np.trace(E[:3, :3]) - 1.0)
            out.append((length, np.linalg.norm(E[:3, 3]) / length, math.acos(max(min(d, 1.0), -1.0)) / length))
    return out


def test_kitti_error_is_the_development_kits_computation(device):
    """A 3D path of 400 steps with noisy odometry, 10-70 m segments from every third frame: the
    averages, per length and over all, equal the development kit's loops."""
    from robojac.trajectory import kitti_error

    g = torch.Generator().manual_seed(7)
    kw = dict(dtype=torch.float64, device="cpu")
    steps = torch.cat((torch.tensor([1.0, 0.0, 0.05], **kw).expand(400, 3) + 0.1 * torch.randn(400, 3, generator=g, **kw),
                       torch.tensor([0.0, 0.0, 0.02], **kw) + 0.01 * torch.randn(400, 3, generator=g, **kw)), 1)
    Q = pp.se3(steps).Exp().cumprod(dim=0)
    P = (pp.se3(steps + 0.01 * torch.randn(400, 6, generator=g, **kw)).Exp()).cumprod(dim=0)
    lengths, step = (10.0, 30.0, 50.0, 70.0), 3
    err = kitti_error(Trajectory(Q.tensor().to(device)), Trajectory(P.tensor().to(device)), lengths=lengths, step=step)
    ref = _devkit(Q.matrix().numpy(), P.matrix().numpy(), lengths, step)
    assert err.translation_percent == pytest.approx(100 * np.mean([e[1] for e in ref]), rel=1e-10)
    assert err.rotation_deg_per_100m == pytest.approx(100 * math.degrees(np.mean([e[2] for e in ref])), rel=1e-9)
    for k, length in enumerate(lengths):
        mine = [e for e in ref if e[0] == length]
        assert int(err.segments[k]) == len(mine)
        assert float(err.translation_percent_by_length[k]) == pytest.approx(100 * np.mean([e[1] for e in mine]), rel=1e-10)


def test_kitti_error_of_a_scaled_straight_drive_is_the_scale(device):
    """Positions 1 % too far along a straight line: a segment of length ``d`` closes at the
    first frame past it, ``d + 1`` m on (1 m frames), so its error is 1 % of ``d + 1`` over ``d``;
    no rotation.  A path shorter than the shortest segment and mismatched lengths are refused."""
    from robojac.trajectory import kitti_error

    kw = dict(dtype=torch.float64, device=device)
    x = torch.arange(1000, **kw)  # 1 m per frame: 999 m
    Q = torch.zeros(1000, 7, **kw)
    Q[:, 0], Q[:, 6] = x, 1.0
    P = Q.clone()
    P[:, 0] = 1.01 * x
    err = kitti_error(Trajectory(Q), Trajectory(P))
    counts = [len(range(0, 999 - d, 10)) for d in range(100, 900, 100)]  # first frames f with f + d + 1 <= 999
    assert err.segments.tolist() == counts == [90, 80, 70, 60, 50, 40, 30, 20]
    expected = sum(c * (d + 1) / d for c, d in zip(counts, range(100, 900, 100))) / sum(counts)
    assert err.translation_percent == pytest.approx(expected, rel=1e-12) and err.rotation_deg_per_100m == 0.0
    assert torch.allclose(err.translation_percent_by_length, (err.lengths + 1) / err.lengths, rtol=1e-12)
    with pytest.raises(TrajectoryError, match=r"the reference's path is 99.0 m, shorter than the shortest segment \(100 m\)"):
        kitti_error(Trajectory(Q[:100]), Trajectory(P[:100]))
    with pytest.raises(TrajectoryError, match="1000 reference poses but 999 estimated"):
        kitti_error(Trajectory(Q), Trajectory(P[1:]))
    with pytest.raises(ValueError, match="lengths: expected positive segment lengths"):
        kitti_error(Trajectory(Q), Trajectory(P), lengths=(100, -5))
    with pytest.raises(ValueError, match="step"):
        kitti_error(Trajectory(Q), Trajectory(P), step=0)


def test_the_ape_and_rpe_commands_print_evos_statistics(tmp_path, capsys):
    """``robojac ape`` / ``robojac rpe`` take evo's arguments (format, files, -a, -s, -r, -d, -u) and
    print the statistics of :func:`ate` / :func:`rpe` (themselves held to evo's above) on the
    associated poses; bad input exits 2 naming the file and line, no pair exits 2 saying why."""
    from robojac.cli import main

    ref = _traj("cpu", n=60, seed=5)
    g = torch.Generator().manual_seed(6)
    noise = pp.se3(0.02 * torch.randn(60, 6, dtype=torch.float64, generator=g)).Exp()
    est = Trajectory((noise * ref.se3()).tensor(), ref.timestamps + 0.003)  # within --t-max-diff of each reference pose
    r, e = write_tum(ref, tmp_path / "ref.tum"), write_tum(est, tmp_path / "est.tum")

    def printed():
        out = capsys.readouterr().out
        return {w[0]: float(w[1]) for w in (ln.split() for ln in out.splitlines()) if len(w) == 2 and w[0] in
                ("max", "mean", "median", "min", "rmse", "sse", "std")}

    plot = tmp_path / "ape.png"
    assert main(["ape", "tum", str(r), str(e), "-a", "-s", "--plot", str(plot)]) == 0
    expected = ate(ref, Trajectory(est.poses, ref.timestamps), correct_scale=True)
    assert printed() == pytest.approx({k.value: v for k, v in expected.stats.items()}, rel=1e-5, abs=1e-6)
    assert plot.stat().st_size > 10_000
    assert main(["rpe", "tum", str(r), str(e), "-r", "angle_deg", "-d", "5"]) == 0
    expected = rpe(ref, est, delta=5, relation=PoseRelation.ROTATION_ANGLE_DEG)
    assert printed() == pytest.approx({k.value: v for k, v in expected.stats.items()}, rel=1e-5, abs=1e-6)
    assert main(["rpe", "tum", str(r), str(e), "-d", "20", "-u", "m", "--all-pairs"]) == 0
    expected = rpe(ref, est, delta=20.0, delta_unit="meters", all_pairs=True)
    assert printed() == pytest.approx({k.value: v for k, v in expected.stats.items()}, rel=1e-5, abs=1e-6)
    # euroc: the ground truth as EuRoC's CSV (nanoseconds, w first), the estimate as TUM (evo's euroc mode)
    csv = tmp_path / "data.csv"
    P = ref.poses.numpy()
    csv.write_text("#timestamp,p_x,p_y,p_z,q_w,q_x,q_y,q_z\n" + "".join(
        f"{int(round(t * 1e9))}," + ",".join(f"{p[k]:.17g}" for k in (0, 1, 2, 6, 3, 4, 5)) + "\n"
        for t, p in zip(ref.timestamps.tolist(), P)))
    assert main(["ape", "euroc", str(csv), str(e), "-a"]) == 0
    expected = ate(ref, Trajectory(est.poses, ref.timestamps))
    assert printed() == pytest.approx({k.value: v for k, v in expected.stats.items()}, rel=1e-5, abs=1e-6)
    bad = tmp_path / "bad.tum"
    bad.write_text("0 1 2\n")
    assert main(["ape", "tum", str(r), str(bad)]) == 2
    assert "bad.tum:1: a TUM line needs 8 numbers, got 3" in capsys.readouterr().err
    assert main(["rpe", "tum", str(r), str(e), "-d", "1e4", "-u", "m"]) == 2
    assert "no pair of poses 10000.0 m apart along the estimate" in capsys.readouterr().err
    assert main(["rpe", "tum", str(r), str(e), "-d", "2.5"]) == 2
    assert "delta must be a whole number of frames" in capsys.readouterr().err


@pytest.mark.parametrize("metric", ["ape", "rpe"])
def test_the_ape_and_rpe_commands_take_evos_command_lines(metric, tmp_path, capsys):
    """The same command line, evo's spelling (``--t_offset``, ``--sync_method``, ``--t_start``,
    ``--t_end``, ``--project_to_plane``, ``--t_max_diff``...), through evo's own ``evo_ape`` /
    ``evo_rpe`` and through ``robojac ape`` / ``rpe``: the same statistics, to the digits evo prints."""
    import pathlib
    import shutil
    import subprocess
    import sys

    from robojac.cli import main

    tool = shutil.which(f"evo_{metric}", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(f"evo_{metric}")
    if tool is None:
        pytest.skip(f"evo_{metric} is not installed")
    ref = _traj("cpu", n=60, seed=5)
    g = torch.Generator().manual_seed(6)
    noise = pp.se3(0.02 * torch.randn(60, 6, dtype=torch.float64, generator=g)).Exp()
    est = Trajectory((noise * ref.se3()).tensor(), ref.timestamps + 0.033)
    r, e = write_tum(ref, tmp_path / "ref.tum"), write_tum(est, tmp_path / "est.tum")
    names = ("max", "mean", "median", "min", "rmse", "sse", "std")

    def stats(text):
        return {w[0]: float(w[1]) for w in (ln.split() for ln in text.splitlines()) if len(w) == 2 and w[0] in names}

    lines = [["-a", "--t_max_diff", "0.05"],
             ["-a", "--t_offset", "-0.03", "--sync_method", "interpolation", "--t_start", "1001", "--t_end", "1004.5"],
             ["-a", "--t_max_diff", "0.05", "--project_to_plane", "xz", "-r", "angle_deg"],
             ["-a", "-s", "--t_offset", "-0.033", "--project_to_plane", "xy"],
             ["-a", "--n_to_align", "10", "--t_offset", "-0.033"], ["--align_origin", "--t_offset", "-0.033"]]
    if metric == "rpe":
        lines.append(["--t_start", "1001.5", "--sync_method", "interpolation", "--t_offset", "0.02", "-u", "m", "-d", "5",
                      "--all_pairs", "--t_max_diff", "0.05"])
    for extra in lines:
        args = [metric, "tum", str(r), str(e), *extra]
        theirs = subprocess.run([tool, *args[1:]], capture_output=True, text=True, cwd=tmp_path)
        assert theirs.returncode == 0, theirs.stderr
        assert main(args) == 0, extra
        expected, got = stats(theirs.stdout), stats(capsys.readouterr().out)
        assert set(expected) == set(names) and got == pytest.approx(expected, rel=1e-5, abs=2e-6), extra
    if metric == "ape":  # KITTI files hold no times: the options of time are refused, not ignored
        k_ref, k_est = write_kitti(ref, tmp_path / "ref.kitti"), write_kitti(est, tmp_path / "est.kitti")
        assert main(["ape", "kitti", str(k_ref), str(k_est), "--t_offset", "0.1"]) == 2
        assert "need timestamps; KITTI files hold none" in capsys.readouterr().err
