"""The KITTI odometry benchmark's error (100-800 m segments) of two estimates of KITTI 00.

The reference is the optimum of KITTI 00's pose graph (3.7 km). Two estimates are measured
against it with ``trajectory.kitti_error``, the KITTI development kit's computation: the
odometry edges alone, composed (dead reckoning), and the chordal initialization (which uses the
loop closures' rotations, not yet their translations). The errors per segment length show how
dead reckoning's drift grows with distance.

    python examples/21_kitti_error.py --out out/kitti_error
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.posegraph import initialize, optimize, read_g2o  # noqa: E402
from robojac.trajectory import Trajectory, ate, kitti_error, path_length  # noqa: E402


def main(path: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    graph = read_g2o(path)
    reference = Trajectory(optimize(graph).poses)
    estimates = {init: Trajectory(graph.poses_from_state(initialize(graph, init))) for init in ("odometry", "chordal")}
    print(f"{graph.name}: {graph.num_poses} poses, {path_length(reference):.0f} m of path")
    errors = {}
    for name, est in estimates.items():
        errors[name] = kitti_error(reference, est)
        e = errors[name]
        print(f"  {name:8s}: translation {e.translation_percent:.3f}%, rotation {e.rotation_deg_per_100m:.4f} deg/100m "
              f"over {int(e.segments.sum())} segments; ATE (aligned) {ate(reference, est).stats['rmse']:.2f} m")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    viz.plot_trajectories({"optimum (reference)": reference, **{f"{k} estimate": v for k, v in estimates.items()}},
                          axes[0])
    axes[0].set_title(f"{graph.name}: the estimates")
    viz.plot_kitti_error(errors, axes[1:])
    fig.tight_layout()
    fig.savefig(out / f"{graph.name.split('.')[0]}_kitti_error.png", dpi=110)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=pathlib.Path, default=data.path("posegraph/kitti_00.g2o"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/kitti_error"))
    a = p.parse_args()
    main(a.graph, a.out)
