"""Whole-body balance: a humanoid nearest its standing posture with its soles and hands at their
targets (equality constraints) and its centre of mass inside its support polygon (an inequality,
``ik.BalanceConstraint``), on robojac's engine, beside SciPy's SLSQP on the same problem.

The scene is example 30's: TALOS on a floating base (38 joints), its soles on the ground, its
hands reaching 0.1 to 0.6 m forward, the centre of mass kept 3 cm inside the soles' polygon.
Three ways to the answers, each from IK's answer for the same targets (not timed):

* ``robojac, batch``: every reach one problem of one ``optim.solve`` call;
* ``robojac, one by one``: a call per reach;
* ``scipy SLSQP``: a call per reach, the cost's gradient and the constraints' Jacobians from
  robojac's closed forms (``tests/helpers.slsqp_nearest_standing``: the test's own reference).

Medians; float64; ratios are robojac's time over SLSQP's (below 1: robojac is faster).  Pink and
TSID, the whole-body solvers users name, need Pinocchio's QP stack (pink: ``qpsolvers``), not
installed here; SLSQP is the same kind of method (sequential quadratic programming).

``--initial-penalty`` sets the augmented Lagrangian's first penalty (``ConstraintConfig``;
default 10).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/balance.py [--reaches 8] [--repeats 5] [--initial-penalty 10]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from _util import describe_machine, fmt_time, table  # noqa: E402
from helpers import (  # noqa: E402  (the tests' own problem and reference)
    TALOS_FEET, TALOS_HANDS, nearest_standing, slsqp_nearest_standing, talos_standing,
)

from robojac import data, ik, optim  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reaches", type=int, default=8, help="reach distances from 0.1 to 0.6 m")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each way (medians)")
    ap.add_argument("--initial-penalty", type=float, default=10.0, help="the augmented Lagrangian's first penalty")
    args = ap.parse_args()
    print(describe_machine())

    talos = Chain.from_urdf(data.path("robots/talos_reduced.urdf")).with_floating_base()
    stand, X, polygon = talos_standing(talos)
    reach = torch.linspace(0.1, 0.6, args.reaches, dtype=torch.float64)
    B = len(reach)
    T = X.expand(B, 4, 7).clone()
    T[:, 2:, 0] += reach[:, None]
    goals = {f: T[:, k] if k < 2 else T[:, k, :3] for k, f in enumerate(TALOS_FEET + TALOS_HANDS)}
    q0 = ik.solve(talos, goals, q0=stand.expand(B, -1)).q
    P = polygon.expand(B, 1, -1, -1)
    config = optim.SolverConfig(constraints=optim.ConstraintConfig(initial_penalty=args.initial_penalty))

    def batch():
        return nearest_standing(talos, stand, T, P, q0, config=config)

    def one_by_one():
        return [nearest_standing(talos, stand, T[k:k + 1], P[k:k + 1], q0[k:k + 1], config=config) for k in range(B)]

    def slsqp():
        return [slsqp_nearest_standing(talos, stand, T[k], polygon, q0[k]) for k in range(B)]

    times = {name: [] for name in ("batch", "one", "slsqp")}
    out = {}
    for _ in range(args.repeats):  # the three take turns
        for name, fn in (("batch", batch), ("one", one_by_one), ("slsqp", slsqp)):
            t = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}

    q_batch = out["batch"].values[0][:, 0].detach().numpy()
    q_one = np.stack([r.values[0][0, 0].detach().numpy() for r in out["one"]])
    q_ref = np.stack([r.x for r in out["slsqp"]])
    cost_ref = np.array([r.fun for r in out["slsqp"]])
    cost_batch = out["batch"].cost.numpy()
    ok_ref = sum(bool(r.success) for r in out["slsqp"])
    its_ref = [int(r.nit) for r in out["slsqp"]]
    rows = [
        ["robojac, batch of %d" % B, fmt_time(med["batch"]), "%.2fx" % (med["batch"] / med["slsqp"]),
         "%d/%d" % (int(out["batch"].converged.sum()), B), "%d-%d" % (int(out["batch"].iterations.min()),
                                                                       int(out["batch"].iterations.max())),
         "%.1e" % np.abs(q_batch - q_ref).max()],
        ["robojac, one by one", fmt_time(med["one"]), "%.2fx" % (med["one"] / med["slsqp"]),
         "%d/%d" % (sum(int(r.converged.sum()) for r in out["one"]), B),
         "%d-%d" % (min(int(r.iterations[0]) for r in out["one"]), max(int(r.iterations[0]) for r in out["one"])),
         "%.1e" % np.abs(q_one - q_ref).max()],
        ["scipy SLSQP, one by one", fmt_time(med["slsqp"]), "1.00x", "%d/%d" % (ok_ref, B),
         "%d-%d" % (min(its_ref), max(its_ref)), "(reference)"],
    ]
    print(table(["way", "time (all reaches)", "vs SLSQP", "converged", "iterations", "max |q - q_SLSQP| (rad)"], rows))
    print(f"costs: robojac - SLSQP at most {np.abs(cost_batch - cost_ref).max():.1e} "
          f"(of {cost_ref.min():.3f}-{cost_ref.max():.3f}); runs: "
          + ", ".join(f"{k} " + " ".join(f"{t:.3f}" for t in v) for k, v in times.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
