"""One large sparse problem on the solver engine vs the pose-graph solver's own loop.

The 3D pose graphs written as engine factors (``SE3BetweenResidual``, one SE3 variable with
the first pose fixed) and solved by ``robojac.optim.solve`` (its sparse path: the pattern worked
out once, LDL^T with the ordering kept), beside ``robojac.posegraph.optimize`` on the same graph
from the same chordal start, in the same run: the cost reached (GTSAM's optimum beside them),
the steps taken and the time (medians of 15 calls taken in turn, after a warm-up: the same
cache and load for both).  The step toward PGO running on
the engine.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/engine_sparse.py
"""

from __future__ import annotations

import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, interleaved_medians, table  # noqa: E402

from robojac import data, optim  # noqa: E402
from robojac.jacobian import SE3BetweenResidual  # noqa: E402
from robojac.posegraph import PGOConfig, initialize, optimize, read_g2o  # noqa: E402

GRAPHS = ["sphere2500", "parking-garage", "smallGrid3D", "tinyGrid3D"]


def main() -> None:
    print(describe_machine())
    optima = json.loads(data.path("posegraph/gtsam_optima.json").read_text())
    rows = []
    for name in GRAPHS:
        g = read_g2o(data.path(f"posegraph/{name}.g2o.gz"))
        start = initialize(g, "chordal")
        fixed = torch.zeros(g.num_poses, dtype=torch.bool)
        fixed[0] = True
        cfg = optim.SolverConfig(trust_region=optim.TrustRegionConfig(lambda_initial=1e-6),
                                 termination=optim.TerminationConfig(relative_tolerance=1e-10))

        def engine():
            X = optim.Variable("SE3", start[None].clone(), fixed=fixed, name="poses")
            f = optim.Factor(SE3BetweenResidual(), [X, X], g.edges,
                             data=[g.measurement_state().detach(), g.sqrt_information.detach()], name="edges")
            return optim.solve([X], [f], cfg)

        def pgo():
            return optimize(g, PGOConfig(relative_tolerance=1e-10))

        r, p = engine(), pgo()
        t_e, t_p = interleaved_medians([engine, pgo], repeat=15, warmup=2)
        gtsam = optima.get(name, {}).get("gtsam_optimum_cost")
        rows.append([name, f"{6 * g.num_poses:,}", f"{float(r.cost):.10g} ({int(r.iterations)} steps)",
                     f"{p.cost:.10g} ({p.iterations} steps)", "-" if gtsam is None else f"{gtsam:.10g}",
                     fmt_time(t_e), fmt_time(t_p), f"{t_e / t_p:.2f}x"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["graph", "unknowns", "engine: cost", "posegraph.optimize: cost", "GTSAM's optimum",
                 "engine time", "optimize time", "engine / optimize"], rows))


if __name__ == "__main__":
    main()
