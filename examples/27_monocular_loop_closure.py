"""Close the loops of a monocular odometry: a Sim3 pose graph corrects the scale drift that an SE3 one cannot.

A monocular camera measures each motion in the units of its current map, and the map's scale
wanders: every new keyframe's scale is triangulated from the last with a small error.  Here the
trajectory is KITTI 00's (the optimum of ``data/posegraph/kitti_00.g2o``, every third pose: 1,514
keyframes, 3.7 km), and the odometry between keyframes is the true motion with 0.1 degrees of
rotation noise, 1% of translation noise and 1.5% of scale noise per keyframe.  Composed, its scale
wanders by a factor of two along the drive.  The loop closures are KITTI 00's own (the g2o
graph's 137, at the same keyframes), each a similarity between the two keyframes' maps, as a
loop-closing place recognizer measures it (0.2 degrees, 5 cm, 1% of scale).

* An SE3 pose graph of the same edges takes each measurement in the drifted units of the
  odometry around it.  It must bend the rigid trajectory to close the loops, and cannot undo the
  scale (Strasdat, Montiel and Davison, RSS 2010).
* A Sim3 pose graph (``PoseGraph(..., similarity=True)``) gives every keyframe its own scale and
  spreads each loop's scale correction along it.

Both start from the odometry and are scored against the true positions by
``robojac.trajectory.ate`` (no alignment: the first keyframe is held where it truly is, at the
true scale).

    python examples/27_monocular_loop_closure.py --out out/monocular_loop_closure
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, lie, posegraph, trajectory  # noqa: E402


def noisy(Z: torch.Tensor, rot: float, trans: float, scale: float, g: torch.Generator) -> torch.Tensor:
    """Similarities ``Z (E, 8)`` moved by ``Exp(noise)`` on the right: ``rot`` rad, ``trans`` of each
    step's length (or metres, for ``trans < 0``: ``-trans`` m), ``scale`` in log-scale."""
    n = torch.randn(Z.shape[0], 7, dtype=Z.dtype, generator=g)
    length = Z[:, :3].norm(dim=-1, keepdim=True) if trans > 0 else torch.ones_like(Z[:, :1])
    n = torch.cat((abs(trans) * length * n[:, :3], rot * n[:, 3:6], scale * n[:, 6:]), -1)
    return lie.sim3_compose(Z, lie.sim3_exp(n))


def scenario(seed: int = 0, step: int = 3) -> dict:
    """KITTI 00's keyframes and a monocular odometry of them: the true similarities (scale 1), the
    edges, their measurements and information, the odometry's composed poses."""
    g = torch.Generator().manual_seed(seed)
    graph2d = posegraph.read_g2o(data.path("posegraph/kitti_00.g2o"))
    truth_se3 = posegraph.optimize(graph2d).poses.tensor().detach()[::step]
    ones = torch.ones(truth_se3.shape[0], 1, dtype=torch.float64)
    truth = torch.cat((truth_se3, ones), -1)  # keyframes as similarities of scale 1
    n = truth.shape[0]
    e = graph2d.edges
    loops = torch.unique(torch.sort(e[(e[:, 1] - e[:, 0]).abs() > 1] // step, dim=1).values, dim=0)
    loops = loops[loops[:, 1] - loops[:, 0] > 1]
    odo = torch.stack((torch.arange(n - 1), torch.arange(1, n)), 1)
    edges = torch.cat((odo, loops))
    between = lie.sim3_compose(lie.sim3_inverse(truth[edges[:, 0]]), truth[edges[:, 1]])
    Z = torch.cat((noisy(between[: n - 1], math.radians(0.1), 0.01, 0.015, g),
                   noisy(between[n - 1:], math.radians(0.2), -0.05, 0.01, g)))
    sigmas = torch.cat((torch.tensor([[0.02] * 3 + [math.radians(0.1)] * 3 + [0.015]]).expand(n - 1, 7),
                        torch.tensor([[0.05] * 3 + [math.radians(0.2)] * 3 + [0.01]]).expand(len(loops), 7)))
    information = torch.diag_embed(sigmas.double().pow(-2))
    odometry = [truth[0]]
    for z in Z[: n - 1]:
        odometry.append(lie.sim3_compose(odometry[-1], z))
    return dict(truth=truth, edges=edges, measurements=Z, information=information, odometry=torch.stack(odometry),
                loops=len(loops))


def rigid_graph(s: dict) -> posegraph.PoseGraph:
    """The SE3 pose graph of the same edges, each translation in the odometry's units around it."""
    P, Z, edges = s["odometry"], s["measurements"], s["edges"]
    Zr = torch.cat((Z[:, :3] * P[edges[:, 0], 7:], Z[:, 3:7]), -1)  # s_i t_ij: the odometry's metres
    info = s["information"][:, :6, :6] / P[edges[:, 0], 7, None, None] ** 2  # a step's noise, in its metres
    info[:, 3:, 3:] = s["information"][:, 3:6, 3:6]
    rigid = torch.cat((P[:, :3], P[:, 3:7]), -1)
    return posegraph.PoseGraph(rigid, edges, Zr, info, name="SE3 graph")


def main(out: pathlib.Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    s = scenario(seed)
    truth = trajectory.Trajectory(s["truth"][:, :7])
    sim = posegraph.PoseGraph(s["odometry"], s["edges"], s["measurements"], s["information"], similarity=True,
                              name="Sim3 graph")
    r_sim = posegraph.optimize(sim, posegraph.PGOConfig(init="file"))
    rigid = rigid_graph(s)
    r_rigid = posegraph.optimize(rigid, posegraph.PGOConfig(init="file"))
    n, length = len(truth), float(trajectory.path_length(truth))
    print(f"KITTI 00, {n} keyframes ({length / 1000:.1f} km), {s['loops']} loop closures")
    runs = {"monocular odometry": s["odometry"][:, :7], "SE3 pose graph": r_rigid.poses.tensor().detach(),
            "Sim3 pose graph": r_sim.poses.tensor().detach()[:, :7]}
    errors = {}
    for name, P in runs.items():
        res = trajectory.ate(truth, trajectory.Trajectory(P), align=False)
        errors[name] = res.errors
        print(f"  {name:20s} ATE RMSE {res['rmse']:7.2f} m, max {res['max']:7.2f} m")
    for name, r in (("SE3", r_rigid), ("Sim3", r_sim)):
        print(f"  {name} graph: cost {r.initial_cost:.4g} -> {r.cost:.6g} in {r.iterations} iterations "
              f"({r.reason}), {r.solve_seconds:.2f} s")
    scales = {"odometry": s["odometry"][:, 7], "Sim3 pose graph": r_sim.poses.tensor().detach()[:, 7]}
    print(f"  keyframe scale: odometry {float(scales['odometry'].min()):.2f}-{float(scales['odometry'].max()):.2f}, "
          f"Sim3 graph {float(scales['Sim3 pose graph'].min()):.3f}-{float(scales['Sim3 pose graph'].max()):.3f} "
          f"(true 1)")

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1.25, 1]})
    ax = axes[0]
    T = s["truth"]
    ax.plot(T[:, 0], T[:, 1], color="black", lw=2.2, label="true trajectory")
    colors = {"monocular odometry": "#999999", "SE3 pose graph": "#d95f02", "Sim3 pose graph": "#1b9e77"}
    for name, P in runs.items():
        rmse = float(errors[name].square().mean().sqrt())
        ax.plot(P[:, 0], P[:, 1], color=colors[name], lw=1.1, label=f"{name} (ATE {rmse:.1f} m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"KITTI 00 seen by a monocular odometry: {n} keyframes, {s['loops']} loop closures", fontsize=10)
    ax = axes[1]
    k = torch.arange(n)
    ax.plot(k, scales["odometry"], color=colors["monocular odometry"], label="odometry's map scale")
    ax.plot(k, scales["Sim3 pose graph"], color=colors["Sim3 pose graph"], label="Sim3 pose graph's scale")
    ax.axhline(1.0, color="black", lw=0.8, ls="--", label="true scale")
    ax.set_xlabel("keyframe")
    ax.set_ylabel("scale of the keyframe's map")
    ax2 = ax.twinx()
    for name in ("SE3 pose graph", "Sim3 pose graph"):
        ax2.plot(k, errors[name], color=colors[name], lw=0.7, alpha=0.6, ls=":")
    ax2.set_ylabel("position error (m), dotted")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("each keyframe's scale, and the position errors", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "monocular_loop_closure.png", dpi=90)
    print(f"wrote {out / 'monocular_loop_closure.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/monocular_loop_closure"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.seed)
