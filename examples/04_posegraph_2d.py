"""2D pose-graph optimization: Intel lab and MIT, from the file's estimate and from chordal.

    python examples/04_posegraph_2d.py --out out/pgo2d
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.posegraph import PGOConfig, optimize, read_g2o, write_g2o  # noqa: E402
from robojac.trajectory import Trajectory, ate, write_tum  # noqa: E402


def main(intel_file: pathlib.Path, mit_file: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    intel = read_g2o(intel_file)
    print(intel)
    result = optimize(intel, PGOConfig(method="gn"))
    print(f"  intel: cost {float(intel.cost().detach()):.6g} (file) -> {result.cost:.10g} in {result.iterations} GN "
          f"iterations, {result.init_seconds + result.solve_seconds:.3f} s with the chordal initialization")
    fig = viz.plot_graph_before_after(intel, intel.poses.detach(), result.poses, costs=(float(intel.cost().detach()), result.cost))
    fig.savefig(out / "intel_before_after.png", dpi=110)
    write_g2o(intel, out / "intel_optimized.g2o", result.poses)
    ids = result.vertex_ids.double()
    write_tum(Trajectory(result.poses, ids), out / "intel_optimized.tum")
    err = ate(Trajectory(result.poses, ids), Trajectory(intel.poses.detach(), ids))
    print(f"  the file's estimate vs the optimum: ATE rmse {err['rmse']:.3f} m (max {err['max']:.3f} m)")

    # MIT: the file's estimate leads LM into a worse minimum; a chordal start does not
    mit = read_g2o(mit_file)
    runs = {init: optimize(mit, PGOConfig(init=init)) for init in ("file", "odometry", "chordal")}
    for init, r in runs.items():
        print(f"  MIT from {init:8s}: cost {r.cost:10.4f} after {r.iterations:3d} LM iterations")
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (init, r) in zip(axes[:2], [("file", runs["file"]), ("chordal", runs["chordal"])]):
        viz.plot_pose_graph(mit, r.poses, ax, title=f"MIT optimized from {init}: cost {r.cost:.4g}")
    viz.plot_cost_history({f"from {k}": v for k, v in runs.items()}, axes[2])
    axes[2].set_title("MIT: cost per LM iteration")
    fig.tight_layout()
    fig.savefig(out / "mit_initializations.png", dpi=110)
    plt.close("all")
    print(f"  pictures and files in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--intel", type=pathlib.Path, default=data.path("posegraph/intel.g2o"))
    p.add_argument("--mit", type=pathlib.Path, default=data.path("posegraph/MIT.g2o"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/pgo2d"))
    a = p.parse_args()
    main(a.intel, a.mit, a.out)
