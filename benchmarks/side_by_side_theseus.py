"""robojac against Theseus (theseus-ai), side by side in one process: pose graphs (time to the
optimum, forward + implicit backward) and a batch of small SE(3) problems.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/side_by_side_theseus.py [--graphs tinyGrid3D smallGrid3D sphere2500] [--batch 10 1000] [--repeat 3]

Theseus is not in the ``[bench]`` extra: it needs Debian's ``libsuitesparse-dev``, then
``pip install cython`` and ``pip install --no-build-isolation "scikit-sparse<0.5" theseus-ai``
(with ``-c`` a constraints file pinning the installed torch, so that pip keeps it).

Pose graphs: both start from the same poses (robojac's chordal initialization) and run
Gauss-Newton, robojac with its sparse LDL^T, Theseus with CHOLMOD (``CholmodSparseSolver``), both
to a relative cost decrease of 1e-6.  The gauge: robojac holds the first pose; Theseus, which
cannot hold a variable, gets a prior on it (weight 1e6).  Sphere2500's information matrices are
full, so Theseus gets a cost weight that multiplies by the same upper Cholesky factor robojac uses
(written here: Theseus has scale and diagonal weights only).  The cost of both answers is
evaluated by robojac's ``PoseGraph.cost`` (GTSAM's convention).  Backward: the gradient of the sum
of the optimized positions with respect to every measurement, Theseus with
``backward_mode="implicit"``.

Small problems: ``B`` independent poses, each aligning 10 points (6 unknowns, 30 residuals), both
with automatic Jacobians (robojac's engine with a residual and no Jacobian; Theseus'
``AutoDiffCostFunction``) and Gauss-Newton to the same tolerance; backward: the gradient of the
answers with respect to the target points.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import sys
import time

import pypose as pp
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, table  # noqa: E402

from robojac import data, lie, optim  # noqa: E402
from robojac.posegraph import PGOConfig, PoseGraph, initialize, optimize, read_g2o  # noqa: E402

th = None  # theseus, imported by main() (``--help`` works without it)


def _import_theseus():
    global th
    try:
        import theseus
    except ImportError as exc:  # a machine without Theseus
        raise SystemExit(f"benchmarks/side_by_side_theseus.py needs theseus-ai ({exc}); see its docstring") from exc
    th = theseus


@functools.cache
def _weight_class():
    """A Theseus cost weight multiplying errors and Jacobians by ``L`` (``Omega = L^T L``), one
    matrix per edge (Theseus has scale and diagonal weights only).  One class for every edge, so
    that Theseus vectorizes them together."""

    class UpperTriangularWeight(th.CostWeight):
        def __init__(self, L, name=None):
            super().__init__(name=name)
            self.L = th.as_variable(L)
            self.register_aux_vars(["L"])

        def is_zero(self):
            return (self.L.tensor == 0).flatten(1).all(1)

        def weight_error(self, error):
            return (self.L.tensor @ error.unsqueeze(-1)).squeeze(-1)

        def weight_jacobians_and_error(self, jacobians, error):
            return [self.L.tensor @ J for J in jacobians], self.weight_error(error)

        def _copy_impl(self, new_name=None):
            return UpperTriangularWeight(self.L.copy(), name=new_name)

    return UpperTriangularWeight


def _median_runs(run, repeat):
    """Medians of the timings (the first two fields of ``run()``) after three warm-up runs, and
    the last run's output."""
    for _ in range(3):
        run()
    outs = [run() for _ in range(repeat)]
    return [statistics.median(o[k] for o in outs) for k in range(2)] + [None] * (len(outs[0]) - 2), outs[-1]


# ---- pose graphs ----------------------------------------------------------------------------
def pgo_case(name: str, repeat: int) -> list[list[str]]:
    g = read_g2o(data.path(f"posegraph/{name}.g2o"))
    start = initialize(g, "chordal").detach()
    graph = PoseGraph(start, g.edges, g.measurements, g.information, vertex_ids=g.vertex_ids, dim=3)
    config = PGOConfig(method="gn", init="file", relative_tolerance=1e-6)

    def ours(grad: bool):
        Z = g.measurements.clone().requires_grad_(grad)
        G = PoseGraph(start, g.edges, Z, g.information, vertex_ids=g.vertex_ids, dim=3)
        t0 = time.perf_counter()
        r = optimize(G, config)
        t1 = time.perf_counter()
        if grad:
            r.poses.tensor()[:, :3].sum().backward()
        return t1 - t0, time.perf_counter() - t1, r.poses.tensor().detach(), r.iterations

    # Theseus: one objective, built once (its construction is not timed)
    N, E = g.num_poses, g.num_edges
    X0 = pp.SE3(start).matrix()[:, :3, :]
    Zm = pp.SE3(g.measurements).matrix()[:, :3, :]
    poses = [th.SE3(tensor=X0[i:i + 1].clone(), name=f"x{i}") for i in range(N)]
    objective = th.Objective(dtype=torch.float64)
    for k, (i, j) in enumerate(g.edges.tolist()):
        meas = th.SE3(tensor=Zm[k:k + 1].clone(), name=f"z{k}")
        weight = _weight_class()(g.sqrt_information[k:k + 1].clone(), name=f"w{k}")
        objective.add(th.Between(poses[i], poses[j], meas, weight, name=f"e{k}"))
    anchor = th.SE3(tensor=X0[0:1].clone(), name="anchor")
    objective.add(th.Difference(poses[0], anchor, th.ScaleCostWeight(torch.tensor(1e6, dtype=torch.float64)),
                                name="gauge"))
    solver = th.GaussNewton(objective, linear_solver_cls=th.CholmodSparseSolver, vectorize=True,
                            max_iterations=100, rel_err_tolerance=1e-6, abs_err_tolerance=1e-12)
    layer = th.TheseusLayer(solver)

    def theirs(grad: bool):
        inputs = {f"x{i}": X0[i:i + 1].clone() for i in range(N)}
        Zt = Zm.clone().requires_grad_(grad)
        inputs.update({f"z{k}": Zt[k:k + 1] for k in range(E)})
        t0 = time.perf_counter()
        out, info = layer.forward(inputs, optimizer_kwargs=dict(backward_mode="implicit" if grad else "unroll",
                                                                 track_best_solution=False, verbose=False))
        t1 = time.perf_counter()
        X = torch.cat([out[f"x{i}"] for i in range(N)])
        if grad:
            X[:, :, 3].sum().backward()
        return t1 - t0, time.perf_counter() - t1, X.detach(), int(info.converged_iter.max()) if hasattr(
            info, "converged_iter") else -1

    (ours_f, _, _, _), ours_out = _median_runs(lambda: ours(False), repeat)
    with torch.no_grad():
        (theirs_f, _, _, _), theirs_out = _median_runs(lambda: theirs(False), repeat)
    (ours_fg, ours_b, _, _), _ = _median_runs(lambda: ours(True), repeat)
    (theirs_fg, theirs_b, _, _), _ = _median_runs(lambda: theirs(True), repeat)
    # both answers in robojac's convention: [t, q] and the graph's cost
    X_theirs = torch.cat((theirs_out[2][:, :, 3], pp.mat2SO3(theirs_out[2][:, :, :3]).tensor()), -1)
    cost_ours = float(graph.cost(ours_out[2]))
    cost_theirs = float(graph.cost(X_theirs))
    label = f"PGO {name} ({N} poses)"
    return [
        [f"{label}: to the optimum", f"{ours_f:.3f} s ({ours_out[3]} it)", f"{theirs_f:.3f} s ({theirs_out[3]} it)",
         f"{theirs_f / ours_f:.1f}x", f"{cost_ours:.6g} / {cost_theirs:.6g}"],
        [f"{label}: forward + backward", f"{ours_fg + ours_b:.3f} s", f"{theirs_fg + theirs_b:.3f} s",
         f"{(theirs_fg + theirs_b) / (ours_fg + ours_b):.1f}x", ""],
    ]


# ---- a batch of small problems ---------------------------------------------------------------
def small_case(B: int, repeat: int) -> list[list[str]]:
    gen = torch.Generator().manual_seed(0)
    T = pp.se3(0.3 * torch.randn(B, 6, dtype=torch.float64, generator=gen)).Exp()
    p = torch.randn(B, 10, 3, dtype=torch.float64, generator=gen)
    q = T.unsqueeze(1).Act(p) + 0.01 * torch.randn(B, 10, 3, dtype=torch.float64, generator=gen)

    def residual(X, p, q):
        return (lie.se3_act(X[:, :, None, :], p) - q).flatten(2)

    term = optim.TerminationConfig(relative_tolerance=1e-8, max_iterations=20)

    def ours(grad: bool):
        qg = q.clone().requires_grad_(grad)
        X = optim.Variable("SE3", pp.identity_SE3(B, 1, dtype=torch.float64).tensor(), name="T_q_p")
        f = optim.Factor(residual, [X], data=(p[:, None], qg[:, None]))
        t0 = time.perf_counter()
        r = optim.solve([X], [f], optim.SolverConfig(optim.TrustRegionConfig(method="gn"), term))
        t1 = time.perf_counter()
        if grad:
            r.values[0][..., :3].sum().backward()
        return t1 - t0, time.perf_counter() - t1, r.values[0][:, 0].detach()

    Xv = th.SE3(tensor=torch.eye(4, dtype=torch.float64)[:3].expand(B, 3, 4).clone(), name="X")
    pv = th.Variable(p.clone(), name="p")
    qv = th.Variable(q.clone(), name="q")

    def err_fn(optim_vars, aux_vars):
        X, = optim_vars
        P, Q = aux_vars
        R, t = X.tensor[:, :, :3], X.tensor[:, :, 3]
        return (P.tensor @ R.mT + t[:, None, :] - Q.tensor).flatten(1)

    unit = th.ScaleCostWeight(torch.tensor(1.0, dtype=torch.float64))
    cost = th.AutoDiffCostFunction([Xv], err_fn, 30, aux_vars=[pv, qv], cost_weight=unit, name="points")
    objective = th.Objective(dtype=torch.float64)
    objective.add(cost)
    layer = th.TheseusLayer(th.GaussNewton(objective, linear_solver_cls=th.CholeskyDenseSolver, max_iterations=20,
                                           rel_err_tolerance=1e-8, abs_err_tolerance=1e-14))

    def theirs(grad: bool):
        qg = q.clone().requires_grad_(grad)
        inputs = dict(X=torch.eye(4, dtype=torch.float64)[:3].expand(B, 3, 4).clone(), p=p, q=qg)
        t0 = time.perf_counter()
        out, _ = layer.forward(inputs, optimizer_kwargs=dict(backward_mode="implicit" if grad else "unroll"))
        t1 = time.perf_counter()
        if grad:
            out["X"][:, :, 3].sum().backward()
        return t1 - t0, time.perf_counter() - t1, out["X"].detach()

    (ours_f, _, _), (_, _, a) = _median_runs(lambda: ours(False), repeat)
    with torch.no_grad():
        (theirs_f, _, _), (_, _, b) = _median_runs(lambda: theirs(False), repeat)
    (ours_fg, ours_b, _), _ = _median_runs(lambda: ours(True), repeat)
    (theirs_fg, theirs_b, _), _ = _median_runs(lambda: theirs(True), repeat)
    gap = float((pp.SE3(a).translation() - b[:, :, 3]).abs().max())
    label = f"{B} small problems (SE3, 10 points each)"
    return [
        [f"{label}: forward", f"{1e3 * ours_f:.1f} ms", f"{1e3 * theirs_f:.1f} ms", f"{theirs_f / ours_f:.1f}x",
         f"max position gap {gap:.1e}"],
        [f"{label}: forward + backward", f"{1e3 * (ours_fg + ours_b):.1f} ms",
         f"{1e3 * (theirs_fg + theirs_b):.1f} ms", f"{(theirs_fg + theirs_b) / (ours_fg + ours_b):.1f}x", ""],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", nargs="*", default=["smallGrid3D", "sphere2500"])
    ap.add_argument("--batch", type=int, nargs="*", default=[1000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    _import_theseus()
    print(f"# robojac and Theseus {th.__version__}; {describe_machine()}", flush=True)
    rows = []
    for name in args.graphs:
        for row in pgo_case(name, args.repeat):
            rows.append(row)
            print(" | ".join(row), flush=True)
    for B in args.batch:
        for row in small_case(B, args.repeat):
            rows.append(row)
            print(" | ".join(row), flush=True)
    print()
    print(table(["case", "robojac", "Theseus", "Theseus / robojac", "answers (robojac / Theseus)"], rows))


if __name__ == "__main__":
    main()
