"""3D pose-graph optimization: the parking garage, Gauss-Newton against Levenberg-Marquardt.

    python examples/05_posegraph_3d.py --out out/pgo3d
"""

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.posegraph import PGOConfig, optimize, read_g2o  # noqa: E402


def main(path: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    graph = read_g2o(path)
    name = path.name.split(".")[0]
    optimum = json.loads(data.path("posegraph/gtsam_optima.json").read_text()).get(name, {}).get("gtsam_optimum_cost")
    print(graph)
    runs = {}
    for method in ("gn", "lm"):
        r = optimize(graph, PGOConfig(method=method))
        runs[method.upper()] = r
        gap = f", {abs(r.cost - optimum) / optimum:.1e} from GTSAM's optimum" if optimum else ""
        print(f"  {method.upper()}: cost {r.cost:.10g} in {r.iterations} iterations "
              f"({r.init_seconds:.3f} s chordal init + {r.solve_seconds:.3f} s){gap}")
    best = runs["GN"]
    fig = viz.plot_graph_before_after(graph, graph.poses.detach(), best.poses, costs=(float(graph.cost().detach()), best.cost))
    fig.savefig(out / f"{name}_before_after.png", dpi=110)
    ax = viz.plot_cost_history(runs, optimum=optimum)
    ax.set_title(f"{name}: cost per iteration (from chordal)")
    ax.figure.tight_layout()
    ax.figure.savefig(out / f"{name}_cost.png", dpi=110)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=pathlib.Path, default=data.path("posegraph/parking-garage.g2o"),
                   help="a 3D g2o file (default: the parking garage shipped in data/)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/pgo3d"))
    a = p.parse_args()
    main(a.graph, a.out)
