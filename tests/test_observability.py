"""icp.observability: degenerate geometry found where its free directions are known exactly.

A plane leaves its two in-plane translations and the turn about its normal free; a corridor
(two walls and a floor) the translation along it; a pipe the translation along and the turn
about its axis; a sphere every turn about its centre.  Real overlapping scans (the Stanford
bunny, KITTI) fix all six.
"""

import math

import pytest
import torch

from robojac import data, lie
from robojac.icp import (
    ICPConfig, Observability, align, observability, read_kitti_bin, read_point_cloud, read_stanford_conf, voxel_downsample,
)

pytestmark = pytest.mark.open3d  # normals by Open3D's estimator on the CPU

F64 = dict(dtype=torch.float64, device="cpu")
IDENTITY = torch.tensor([0.0, 0, 0, 0, 0, 0, 1], **F64)


def _noise(P, g, sigma=0.005):
    return P + sigma * torch.randn(P.shape, generator=g, **F64)


def _plane(g, n=3000):
    return _noise(torch.cat((torch.rand(n, 2, generator=g, **F64) * 10, torch.zeros(n, 1, **F64)), 1), g)


def _corridor(g, n=6000):
    x = torch.rand(n, generator=g, **F64) * 30
    side = torch.randint(0, 3, (n,), generator=g)
    u = torch.rand(n, generator=g, **F64)
    y = torch.where(side == 0, -1.5, torch.where(side == 1, 1.5, 3 * u - 1.5))
    return _noise(torch.stack((x, y, torch.where(side == 2, 0.0, 3 * u)), -1), g)


def _pipe(g, n=6000):
    x, t = torch.rand(n, generator=g, **F64) * 20, torch.rand(n, generator=g, **F64) * 2 * math.pi
    return _noise(torch.stack((x, 2 * torch.cos(t), 2 * torch.sin(t)), -1), g)


def _sphere(g, n=4000):
    d = torch.randn(n, 3, generator=g, **F64)
    return _noise(3 * d / d.norm(dim=-1, keepdim=True) + torch.tensor([5.0, -2.0, 1.0], **F64), g)


def _free_span(o: Observability, k: int) -> torch.Tensor:
    """The span of the ``k`` weakest directions, as a projector in the twist space."""
    Q, _ = torch.linalg.qr(o.directions[:, :k])
    return Q @ Q.T


def _twist(v=(0, 0, 0), w=(0, 0, 0)):
    t = torch.tensor([*v, *w], **F64)
    return t / t.norm()


def _turn(w, through, center):
    """The twist about ``center`` of a turn about ``w`` through the point ``through``:
    ``w x (p - through) = w x (p - center) + w x (center - through)``."""
    w = torch.tensor(w, **F64)
    return _twist(v=torch.linalg.cross(w, center - torch.tensor(through, **F64)).tolist(), w=w.tolist())


X, Y, Z = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)


@pytest.mark.parametrize("shape, free", [
    ("plane", lambda c: [_twist(v=X), _twist(v=Y), _turn(Z, (0, 0, 0), c)]),
    ("corridor", lambda c: [_twist(v=X)]),
    ("pipe", lambda c: [_twist(v=X), _turn(X, (0, 0, 0), c)]),  # the pipe's axis is the x axis
    ("sphere", lambda c: [_turn(axis, (5.0, -2.0, 1.0), c) for axis in (X, Y, Z)]),  # about its centre
])
def test_degenerate_shapes_show_exactly_their_free_directions(shape, free):
    g = torch.Generator().manual_seed(1)
    make = {"plane": _plane, "corridor": _corridor, "pipe": _pipe, "sphere": _sphere}[shape]
    source, target = make(g), make(g)
    o = observability(source, target, IDENTITY, 0.5)
    free = free(o.center)
    k = len(free)
    assert o.degenerate and o.weakest < 0.005 and len(o.weak_directions()) == k, (o.eigenvalues, o.weak_directions())
    assert float(o.eigenvalues[k]) > 0.15  # and the others are seen
    P = _free_span(o, k)
    for t in free:  # each known free direction lies in the span of the k weakest
        assert float((P @ t - t).norm()) < 0.05, (shape, t, o.directions[:, :k])


def test_the_corridor_words():
    g = torch.Generator().manual_seed(2)
    o = observability(_corridor(g), _corridor(g), IDENTITY, 0.5)
    assert o.weak_directions() == ["translation along [1.00, 0.00, 0.00]"]
    g = torch.Generator().manual_seed(2)
    o = observability(_pipe(g), _pipe(g), IDENTITY, 0.5)
    assert o.weak_directions() == ["translation along [1.00, 0.00, 0.00]", "rotation about [1.00, 0.00, 0.00] through "
                                   f"[{float(o.center[0]):.2f}, 0.00, 0.00]"]  # the pipe's axis
    g = torch.Generator().manual_seed(2)
    o = observability(_plane(g), _plane(g), IDENTITY, 0.5)
    words = o.weak_directions()
    assert sum(w.startswith("translation along [") and w.endswith(", 0.00]") for w in words) == 2  # in the plane
    assert words[2].startswith("rotation about [0.00, 0.00, 1.00] through [")  # about its normal
    g = torch.Generator().manual_seed(2)
    o = observability(_sphere(g), _sphere(g), IDENTITY, 0.5)
    for words in o.weak_directions():  # turns about the sphere's centre
        assert words.startswith("rotation about") and " and translation" not in words
        through = torch.tensor([float(x) for x in words.split("through [")[1].rstrip("]").split(",")], **F64)
        assert float((through - torch.tensor([5.0, -2.0, 1.0], **F64)).norm()) < 0.05


def test_icp_down_a_corridor_converges_anywhere_and_is_flagged():
    """The case the function exists for: started 0.4 m off along the corridor, ICP reports
    convergence 0.4 m off (every position along it fits as well), and the answer is flagged."""
    g = torch.Generator().manual_seed(3)
    source, target = _corridor(g), _corridor(g)  # the same corridor, scanned twice: the truth is the identity
    init = torch.tensor([0.4, 0.05, 0.0, 0, 0, 0.0099995, 0.99995], **F64)
    result = align(source, target, init=init, config=ICPConfig(method="point_to_plane", max_correspondence_distance=0.5))
    T = result.T_target_source.tensor()
    assert bool(result.converged) and abs(float(T[0]) - 0.4) < 0.1  # "converged", 0.4 m from the truth
    assert abs(float(T[1])) < 0.01  # across the corridor it is fixed
    o = observability(source, target, result.T_target_source, 0.5)
    assert o.degenerate and o.weak_directions() == ["translation along [1.00, 0.00, 0.00]"]


def test_real_scans_fix_every_direction():
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    target = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun000.ply")), 0.003)
    for name in ("bun045", "bun315", "chin"):
        source = voxel_downsample(read_point_cloud(data.path(f"pointclouds/bunny/{name}.ply")), 0.003)
        T = torch.linalg.inv(conf["bun000.ply"]) @ conf[f"{name}.ply"]
        o = observability(source, target, T, 0.01)
        assert not o.degenerate and o.weakest > 0.03 and o.weak_directions() == [], (name, o.weakest)
    scans = [voxel_downsample(read_kitti_bin(data.path(f"pointclouds/kitti00/{i:06d}.bin.gz")), 0.5) for i in (0, 1)]
    r = align(scans[1], scans[0], config=ICPConfig(method="point_to_plane", max_correspondence_distance=1.0))
    o = observability(scans[1], scans[0], r.T_target_source, 1.0)
    assert not o.degenerate and o.weakest > 0.1 and o.num_correspondences > 1000


def test_units_and_frames_do_not_change_the_measure():
    """Metres or millimetres, and any placement of the scene: the same eigenvalues (to the
    rounding of the normals' estimate); the directions turn with the scene."""
    g = torch.Generator().manual_seed(4)
    source, target = _corridor(g, 3000), _corridor(g, 3000)
    o = observability(source, target, IDENTITY, 0.5)
    mm = observability(source * 1000, target * 1000, IDENTITY, 500.0)
    assert torch.allclose(o.eigenvalues, mm.eigenvalues, atol=1e-6, rtol=1e-3)  # normals estimated afresh, to rounding
    X = lie.se3_exp(torch.tensor([3.0, -1.0, 2.0, 0.3, -0.5, 1.1], **F64))
    moved = observability(lie.se3_act(X.expand(3000, 7), source), lie.se3_act(X.expand(3000, 7), target), IDENTITY, 0.5)
    assert torch.allclose(o.eigenvalues, moved.eigenvalues, atol=1e-12, rtol=1e-9)
    R = lie.quat_to_matrix(X[3:])
    turned = R @ o.directions[:3, 0]
    weakest = moved.directions[:3, 0]
    assert float(turned.dot(weakest).abs() / (turned.norm() * weakest.norm())) > 1 - 1e-9  # along the turned corridor


def test_without_correspondences_nothing_is_observable():
    g = torch.Generator().manual_seed(5)
    far = torch.tensor([100.0, 0, 0, 0, 0, 0, 1], **F64)
    o = observability(_plane(g), _plane(g), far, 0.5)
    assert o.num_correspondences == 0 and o.degenerate and o.weakest == 0.0
    assert bool((o.eigenvalues == 0).all()) and len(o.weak_directions()) == 6


def test_bad_arguments_are_named():
    g = torch.Generator().manual_seed(6)
    P = _plane(g, 100)
    for kwargs, error, match in [
        (dict(source=P[:, :2]), ValueError, r"source: expected shape \(N, 3\)"),
        (dict(target=P[:0]), ValueError, "target: the point cloud is empty"),
        (dict(T_target_source=torch.zeros(2, 7, **F64)), ValueError, "T_target_source"),
        (dict(max_correspondence_distance=0.0), ValueError, "max_correspondence_distance"),
        (dict(max_correspondence_distance=float("nan")), ValueError, "max_correspondence_distance"),
        (dict(num_neighbors=2), ValueError, "num_neighbors"),
        (dict(threshold=1.5), ValueError, "threshold"),
    ]:
        args = dict(source=P, target=P, T_target_source=IDENTITY, max_correspondence_distance=0.5) | kwargs
        with pytest.raises(error, match=match):
            observability(args.pop("source"), args.pop("target"), args.pop("T_target_source"),
                          args.pop("max_correspondence_distance"), **args)


def test_a_prepared_target_gives_the_same_measure():
    """A target ``prepare`` made and ``align`` used brings its index and normals; the measure is
    the one of the raw target (normals' signs do not matter to it)."""
    from robojac.icp import prepare

    g = torch.Generator().manual_seed(7)
    source, target = _corridor(g, 3000), _corridor(g, 3000)
    prepared = prepare(target)
    align(source, prepared, config=ICPConfig(method="point_to_plane", max_correspondence_distance=0.5))
    a = observability(source, target, IDENTITY, 0.5)
    b = observability(source, prepared, IDENTITY, 0.5)
    assert torch.allclose(a.eigenvalues, b.eigenvalues, atol=1e-9) and a.weak_directions() == b.weak_directions()


def test_the_icp_command_names_a_free_motion(tmp_path, capsys):
    """``robojac icp`` prints whether every direction was fixed, and names a free one."""
    from robojac.cli import main
    from robojac.icp import write_ply

    g = torch.Generator().manual_seed(8)
    write_ply(_corridor(g, 3000), tmp_path / "a.ply")
    write_ply(_corridor(g, 3000), tmp_path / "b.ply")
    code = main(["icp", str(tmp_path / "a.ply"), str(tmp_path / "b.ply"), "--method", "point_to_plane",
                 "--max-distance", "0.5"])
    out = capsys.readouterr().out
    assert code == (0 if "converged=True" in out else 1)  # sliding along the corridor, it may run out of steps
    assert "observability: DEGENERATE" in out and "free: translation along [1.00, 0.00, 0.00]" in out
    bunny = data.path("pointclouds/bunny")
    assert main(["icp", str(bunny / "bun045.ply.gz"), str(bunny / "bun000.ply.gz"), "--voxel", "0.003"]) == 0
    assert "observability: every direction fixed" in capsys.readouterr().out
