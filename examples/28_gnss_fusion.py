"""Fuse GNSS fixes into a drive's pose graph, in map coordinates: the odometry's drift goes, and so do the fixes
a city's reflections throw off.

The drive is KITTI 00's (the optimum of ``data/posegraph/kitti_00.g2o``: 4,541 poses, 3.7 km), placed
in UTM coordinates where Karlsruhe lies (easting 456 km, northing 5,429 km) and turned, as a map
holds it.  The odometry is the graph's own (its 4,540 consecutive edges, loop closures left out):
composed alone it drifts 101 m.  The poses come at KITTI's 10.4 Hz.  A GNSS receiver, its antenna
0.8 m behind and 0.3 m left of each pose's origin, gives a fix a second on its own clock, with 2 m of
noise, and 4% of the fixes are 20-60 m off (multipath: signals reflected by buildings).

* ``trajectory.match_times(pose_times, fix_times, max_difference)`` gives each fix the pose nearest
  in time (here at most 0.052 s apart: under 0.7 m of motion, inside the fixes' noise).
* ``PoseGraph(..., prior_index=, prior_positions=, prior_information=, prior_lever_arms=)`` adds the
  fixes as position priors of the antenna; they hold the graph in the map, so no pose is held.
* ``optimize`` starts from the odometry moved onto the fixes (a rigid fit), and solves about the
  first fix: 5,400 km from the origin, as at it.
* Least squares follows the bad fixes; a Cauchy kernel (``PGOConfig(kernel="cauchy")``) lets them go.
* ``posegraph.covariances`` gives each pose's uncertainty: it grows between fixes.

    python examples/28_gnss_fusion.py --out out/gnss_fusion
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, lie, posegraph, trajectory, viz  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402

UTM = torch.tensor([456_000.0, 5_429_000.0], dtype=torch.float64)  # Karlsruhe, UTM zone 32U (metres)
ANTENNA = torch.tensor([-0.8, 0.3], dtype=torch.float64)  # in each pose's frame: behind, to the left
FRAME = 0.10362  # s between KITTI 00's scans (4,541 in 470.5 s)


def scenario(seed: int = 0, rate: float = 1.0, sigma: float = 2.0, outliers: float = 0.04) -> dict:
    """KITTI 00 in map coordinates with its poses' times, its odometry edges, and GNSS fixes
    (``rate`` a second, some thrown off) matched to the poses by time."""
    g = torch.Generator().manual_seed(seed)
    graph = posegraph.read_g2o(data.path("posegraph/kitti_00.g2o"))
    local = posegraph.optimize(graph).poses.tensor().detach()
    heading = 0.7  # the map's east is not the drive's first heading
    T_map_odom = torch.tensor([*UTM, 0.0, 0.0, 0.0, math.sin(heading / 2), math.cos(heading / 2)], dtype=torch.float64)
    truth = lie.se3_compose(T_map_odom.expand_as(local), local)
    odo = graph.odometry
    times = FRAME * torch.arange(len(truth), dtype=torch.float64) + 1_600_000_000.0  # Unix seconds
    fix_times = torch.arange(float(times[0]) + 0.37, float(times[-1]), 1.0 / rate, dtype=torch.float64)  # its clock
    at_fix = trajectory.interpolate(trajectory.Trajectory(truth, times), fix_times).poses  # where the car was
    index, which = trajectory.match_times(times, fix_times, max_difference=FRAME / 2)
    antenna = lie.se3_act(at_fix[which], torch.cat((ANTENNA, ANTENNA.new_zeros(1))))[:, :2]  # T a, in the plane
    fixes = antenna + sigma * torch.randn(len(index), 2, dtype=torch.float64, generator=g)
    bad = torch.rand(len(index), generator=g) < outliers
    angle = 2 * math.pi * torch.rand(int(bad.sum()), generator=g, dtype=torch.float64)
    reach = 20 + 40 * torch.rand(int(bad.sum()), generator=g, dtype=torch.float64)
    fixes[bad] += reach[:, None] * torch.stack((torch.cos(angle), torch.sin(angle)), -1)
    gap = (times[index] - fix_times[which]).abs()
    return dict(truth=truth, edges=graph.edges[odo], measurements=graph.measurements[odo],
                information=graph.information[odo], index=index, fixes=fixes, bad=bad, gap=gap,
                fix_information=torch.eye(2, dtype=torch.float64).expand(len(index), 2, 2) / sigma**2)


def main(out: pathlib.Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    s = scenario(seed)
    truth = trajectory.Trajectory(s["truth"])
    n, length = len(truth), float(trajectory.path_length(truth))
    print(f"KITTI 00 in UTM coordinates: {n} poses, {length / 1000:.1f} km, {len(s['edges'])} odometry edges; "
          f"{len(s['index'])} GNSS fixes, {int(s['bad'].sum())} of them 20-60 m off, matched to the poses "
          f"nearest in time (at most {float(s['gap'].max()) * 1e3:.0f} ms apart)")
    held = torch.zeros(n, dtype=torch.bool)
    held[0] = True  # the odometry alone, from the true first pose
    alone = posegraph.PoseGraph(s["truth"], s["edges"], s["measurements"], s["information"], dim=2, fixed=held,
                                name="odometry alone")
    fixes = dict(dim=2, prior_index=s["index"], prior_positions=s["fixes"], prior_information=s["fix_information"])
    start = s["truth"][0].expand(n, 7).clone()
    fused = posegraph.PoseGraph(start, s["edges"], s["measurements"], s["information"], prior_lever_arms=ANTENNA,
                                name="odometry + GNSS", **fixes)
    no_arm = posegraph.PoseGraph(start, s["edges"], s["measurements"], s["information"], **fixes)
    runs = {"odometry alone": posegraph.optimize(alone, posegraph.PGOConfig(init="odometry")),
            "+ GNSS, least squares": posegraph.optimize(fused, posegraph.PGOConfig(init="odometry")),
            "+ GNSS, Cauchy kernel": posegraph.optimize(fused, posegraph.PGOConfig(init="odometry", kernel="cauchy"))}
    errors = {}
    for name, r in runs.items():
        res = trajectory.ate(truth, trajectory.Trajectory(r.poses.tensor().detach()), align=False)
        errors[name] = res.errors
        how = "composed" if r.iterations == 0 else f"{r.iterations} iterations ({r.reason})"
        print(f"  {name:22s} ATE RMSE {res['rmse']:7.2f} m, max {res['max']:7.2f} m; {how}, "
              f"{r.solve_seconds * 1e3:.0f} ms")
    armless = posegraph.optimize(no_arm, posegraph.PGOConfig(init="odometry", kernel="cauchy")).poses.tensor().detach()
    res = trajectory.ate(truth, trajectory.Trajectory(armless), align=False)
    print(f"  (the Cauchy fusion with the antenna taken for the poses' origin: ATE RMSE {res['rmse']:.2f} m)")
    best = runs["+ GNSS, Cauchy kernel"]
    C = posegraph.covariances(fused, best.poses, kernel=RobustKernel("cauchy"))  # each in its pose's frame
    spread = C[:, :2, :2].diagonal(dim1=-2, dim2=-1).sum(-1).sqrt()  # the position's RMS uncertainty
    print(f"  position uncertainty (1 sigma): {float(spread.min()):.2f}-{float(spread.max()):.2f} m, "
          "largest between fixes")

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1.1, 1]})
    ax = axes[0]
    colors = {"odometry alone": "#999999", "+ GNSS, least squares": "#d95f02", "+ GNSS, Cauchy kernel": "#1b9e77"}
    viz.plot_pose_graph(fused, best.poses, ax, view="2d", colorbar=False,
                        title="odometry + GNSS fixes (Cauchy): each fix joined to its pose, by chi^2")
    T = s["truth"]
    ax.plot(T[:, 0], T[:, 1], color="black", lw=0.8, ls="--", label="true trajectory")
    for name in ("odometry alone", "+ GNSS, least squares"):
        P = runs[name].poses.tensor().detach()
        ax.plot(P[:, 0], P[:, 1], color=colors[name], lw=1.0, label=name)
    F = s["fixes"][s["bad"]]
    ax.scatter(F[:, 0], F[:, 1], s=40, facecolors="none", edgecolors="#d62728", lw=1.0, label="fixes 20-60 m off")
    lo, hi = torch.cat((T[:, :2], s["fixes"])).amin(0), torch.cat((T[:, :2], s["fixes"])).amax(0)
    ax.set_xlim(float(lo[0]) - 60, float(hi[0]) + 60)
    ax.set_ylim(float(lo[1]) - 60, float(hi[1]) + 60)
    ax.ticklabel_format(useOffset=False, style="plain")  # UTM metres as they are
    ax.set_xlabel("easting (m)")
    ax.set_ylabel("northing (m)")
    ax.legend(fontsize=8, loc="best")
    ax = axes[1]
    k = torch.arange(n)
    for name, e in errors.items():
        rmse = float(e.square().mean().sqrt())
        ax.plot(k, e, color=colors[name], lw=1.0, label=f"{name} (RMSE {rmse:.2f} m)")
    ax.fill_between(k, 0, 3 * spread, color=colors["+ GNSS, Cauchy kernel"], alpha=0.15, label="3 sigma (covariances)")
    ax.set_yscale("log")
    ax.set_ylim(0.05, 300)
    ax.set_xlabel("pose")
    ax.set_ylabel("position error (m)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("position error along the drive", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "gnss_fusion.png", dpi=90)
    print(f"wrote {out / 'gnss_fusion.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/gnss_fusion"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.seed)
