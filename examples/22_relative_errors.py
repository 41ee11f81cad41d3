"""How an odometry's error grows with distance: the relative pose error over metres, evo's way.

The reference is the optimum of KITTI 00's pose graph (3.7 km); the estimate is its odometry
chain (the odometry edges alone, composed: dead reckoning). ``trajectory.rpe`` with
``delta_unit="meters"`` pairs poses that many metres apart along the path, as
``evo_rpe --delta_unit m`` does (the tests hold it to evo's numbers), for windows of 10 m to
800 m. The same on the command line::

    robojac rpe kitti reference.kitti estimate.kitti -d 100 -u m

The picture: the estimate aligned to the reference and coloured by its position error; the
relative error against the window's length (translation in percent of the distance, rotation in
degrees per 100 m); and the error of each 100 m window along the path.

    python examples/22_relative_errors.py --out out/relative_errors
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.posegraph import initialize, optimize, read_g2o  # noqa: E402
from robojac.trajectory import PoseRelation, Trajectory, ate, path_length, rpe, write_kitti  # noqa: E402

WINDOWS = (10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0)


def main(path: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    graph = read_g2o(path)
    reference = Trajectory(optimize(graph).poses)
    estimate = Trajectory(graph.poses_from_state(initialize(graph, "odometry")))
    write_kitti(reference, out / "reference.kitti")  # for the command line above
    write_kitti(estimate, out / "estimate.kitti")
    name = graph.name.split(".")[0]
    print(f"{name}: {graph.num_poses} poses, {path_length(reference):.0f} m; dead reckoning against the optimum")
    print(f"  ATE (aligned) {ate(reference, estimate)['rmse']:.2f} m")
    trans, turn = [], []
    for d in WINDOWS:
        t = rpe(reference, estimate, delta=d, delta_unit="meters", pairs_from_reference=True)
        r = rpe(reference, estimate, delta=d, delta_unit="meters", pairs_from_reference=True,
                relation=PoseRelation.ROTATION_ANGLE_DEG)
        trans.append(100 * t["rmse"] / d)
        turn.append(100 * r["rmse"] / d)
        print(f"  RPE over {d:5.0f} m ({len(t.errors):3d} windows): {t['rmse']:7.3f} m RMSE ({trans[-1]:.2f} %), "
              f"{r['rmse']:.3f} deg ({turn[-1]:.3f} deg/100 m)")
    windows = rpe(reference, estimate, delta=100.0, delta_unit="meters", pairs_from_reference=True)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    viz.plot_trajectory_error(estimate, reference, ax=axes[0], title=f"{name}: dead reckoning, aligned")
    ax = axes[1]
    ax.plot(WINDOWS, trans, "o-", color="tab:blue", label="translation (% of the window)")
    ax.set_xscale("log")
    ax.set_xlabel("window along the path (m)")
    ax.set_ylabel("translation RMSE (%)", color="tab:blue")
    ax.grid(alpha=0.3, which="both")
    twin = ax.twinx()
    twin.plot(WINDOWS, turn, "s--", color="tab:red", label="rotation (deg / 100 m)")
    twin.set_ylabel("rotation RMSE (deg / 100 m)", color="tab:red")
    ax.set_title("relative error against the window's length")
    ax = axes[2]
    ax.plot(np.arange(1, len(windows.errors) + 1), windows.errors.cpu().numpy(), "o-", ms=3, lw=1.2)
    ax.set_xlabel("100 m window, in order along the path")
    ax.set_ylabel("translation error over 100 m (m)")
    ax.set_title(f"each 100 m window: RMSE {windows['rmse']:.2f} m, max {windows['max']:.2f} m")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{name}_relative_errors.png", dpi=110)
    plt.close("all")
    print(f"  picture and the two trajectories in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=pathlib.Path, default=data.path("posegraph/kitti_00.g2o"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/relative_errors"))
    a = p.parse_args()
    main(a.graph, a.out)
