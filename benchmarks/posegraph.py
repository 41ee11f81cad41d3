"""Pose-graph optimization: robojac vs GTSAM on the standard benchmark graphs, in one run.

Both sides start from a chordal initialization and the wall time includes it: in 3D each side
its own (GTSAM: ``InitializePose3``); in 2D GTSAM's LAGO refuses these files' non-diagonal
noise models, so GTSAM starts from robojac's chordal estimate and is charged robojac's
initialization time.  GTSAM runs Gauss-Newton and Levenberg-Marquardt
stopping at a relative decrease of 1e-6; robojac runs its GN and LM.  Every final cost is
evaluated independently by GTSAM's ``graph.error()`` on the returned poses and compared with
the reference optimum in ``gtsam_optima.json``.  Medians over --repeat runs.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/posegraph.py [--graphs intel sphere2500 ...]

``--damping-grid default 1e-6 1e-10 ...`` runs robojac alone instead: Levenberg-Marquardt's steps
(refused ones included) and final cost on every graph of ``data/``, from the chordal and the
odometry starts, without a kernel and under Cauchy's, for each first damping (``lambda_initial``;
``default``: ``PGOConfig``'s own).  Step counts do not depend on the machine's speed.

``--orderings`` times the sparse factorizations alone on each graph's system pattern (the
graph's 6x6 or 3x3 blocks, diagonally dominant values: without pivoting the time depends on
the pattern only): QDLDL's refactorization, and SuperLU's on an AMD ordering of the block
pattern (the ordering before 2026-12-06), on its own minimum degree of it (robojac's now), and
ordering the scalars itself; and the time of that minimum-degree ordering itself (done once a
solve).  Nonzeros in the factors; medians over --repeat.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, gtsam_values, plain_copy, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.posegraph import PGOConfig, optimize, read_g2o  # noqa: E402



def gtsam_run(path: pathlib.Path, dim: int, method: str, graph2d=None):
    import gtsam

    graph, initial = gtsam.readG2o(str(path), dim == 3)
    t0 = time.perf_counter()
    if dim == 3:
        g = gtsam.NonlinearFactorGraph(graph)
        first = initial.keys()[0]
        g.add(gtsam.PriorFactorPose3(first, gtsam.Pose3(), gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
        init = gtsam.InitializePose3.initialize(g)
    else:
        from robojac.posegraph import initialize

        g = gtsam.NonlinearFactorGraph(graph)
        first = initial.keys()[0]
        g.add(gtsam.PriorFactorPose2(first, initial.atPose2(first), gtsam.noiseModel.Isotropic.Sigma(3, 1e-6)))
        S = initialize(graph2d, "chordal").numpy()  # robojac's chordal estimate, timed here
        chordal_s = time.perf_counter() - t0
        init = gtsam.Values()  # its conversion is not GTSAM's work: not timed (intel 7 ms, ais2klinik 63 ms)
        for k, x in zip(graph2d.vertex_ids.tolist(), S):
            init.insert(k, gtsam.Pose2(x[0], x[1], x[2]))
        t0 = time.perf_counter() - chordal_s
    t_init = time.perf_counter() - t0
    if method == "gn":
        params = gtsam.GaussNewtonParams()
        params.setRelativeErrorTol(1e-6)
        opt = gtsam.GaussNewtonOptimizer(g, init, params)
    else:
        params = gtsam.LevenbergMarquardtParams()
        params.setRelativeErrorTol(1e-6)
        opt = gtsam.LevenbergMarquardtOptimizer(g, init, params)
    t1 = time.perf_counter()
    try:
        result = opt.optimize()
        cost = graph.error(result)
    except RuntimeError as e:  # e.g. an indeterminant (singular) linear system
        text = str(e).strip().splitlines()
        return None, f"fails ({text[0][:50] if text else type(e).__name__ + ': singular system'})"
    t2 = time.perf_counter()
    return (t2 - t0, t_init, t2 - t1, cost, opt.iterations()), None


def gtsam_cost_of(path: pathlib.Path, dim: int, poses: torch.Tensor, ids: torch.Tensor) -> float:
    """GTSAM's own evaluation of ``0.5 sum r^T Omega r`` at robojac's poses (an independent check)."""
    import gtsam

    graph, _ = gtsam.readG2o(str(path), dim == 3)
    return graph.error(gtsam_values(dim, poses, ids))


def damping_grid(lambdas: list[float | None], max_iterations: int = 200) -> None:
    """LM's steps to convergence for each first damping; ``!`` marks a run that did not converge."""
    names = sorted(p.name.removesuffix(".g2o.gz") for p in data.path("posegraph").glob("*.g2o.gz"))
    totals, unconverged = [0] * len(lambdas), [0] * len(lambdas)
    rows = []
    for name in names:
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        for init in ("chordal", "odometry"):
            for kernel in ("none", "cauchy"):
                cells = []
                for i, lam in enumerate(lambdas):
                    r = optimize(graph, PGOConfig(init=init, kernel=kernel, lambda_initial=lam,
                                                  max_iterations=max_iterations))
                    totals[i] += r.iterations
                    unconverged[i] += not r.converged
                    cells.append(f"{r.iterations}{'' if r.converged else '!'}, {r.cost:.7g}")
                rows.append([name, init, kernel, *cells])
                print(" | ".join(rows[-1]), flush=True)
    rows.append(["all", "", "", *(f"{t} steps, {u} not converged" for t, u in zip(totals, unconverged))])
    print()
    print(table(["graph", "start", "kernel", *(f"lambda_initial {lam or 'default'}" for lam in lambdas)], rows))


def orderings(names: list[str], repeat: int) -> None:
    """Refactorization times of each graph's pattern under each ordering (see the docstring)."""
    import numpy as np
    import qdldl
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    from robojac.optim._linear import SUPERNODAL_FLOPS, _block_flops, _block_mmd, _block_pattern

    def timed(f):
        out, times = None, []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = f()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), out

    def lu(A, spec="NATURAL"):
        return splu(A, permc_spec=spec, diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))

    rows = []
    for name in names:
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        b, N, E = (6 if graph.dim == 3 else 3), graph.num_poses, graph.edges.cpu().numpy()
        r = np.concatenate((E[:, 0], E[:, 1], E[:, 0], E[:, 1]))
        c = np.concatenate((E[:, 0], E[:, 1], E[:, 1], E[:, 0]))
        blocks = sp.csr_matrix((np.full(len(r), -0.1), (r, c)), shape=(N, N))[1:, 1:]  # pose 0 held
        blocks = blocks + sp.diags(np.asarray(abs(blocks).sum(1)).ravel() + 1.0)
        H = sp.kron(blocks, np.full((b, b), 0.01) + np.eye(b)).tocsr()
        H = ((H + H.T) / 2 + 10 * sp.eye(H.shape[0])).tocsr()
        H.sort_indices()
        pattern = _block_pattern(H.indptr, H.indices, H.shape[0], b)
        upper = sp.triu(H, format="csc")
        solver = qdldl.Solver(upper, upper=True)
        t_q, _ = timed(lambda: solver.update(upper, upper=True))
        _, _, amd = qdldl.Solver(sp.triu(pattern, format="csc"), upper=True).factors()
        cells = [name, f"{H.shape[0]}", f"{_block_flops(pattern, b):.3g}"
                 + (" (SuperLU)" if _block_flops(pattern, b) > SUPERNODAL_FLOPS else ""), f"{t_q * 1e3:.1f} ms"]
        t_order, _ = timed(lambda: _block_mmd(pattern, b))
        for order in (np.asarray(amd, dtype=np.int64), _block_mmd(pattern, 1)):
            perm = (order[:, None] * b + np.arange(b)).reshape(-1)
            A = H[perm][:, perm].tocsc()
            t, f = timed(lambda: lu(A))
            cells.append(f"{t * 1e3:.1f} ms, {(f.L.nnz + f.U.nnz) / 1e6:.2f}M")
        t, f = timed(lambda: lu(H.tocsc(), "MMD_AT_PLUS_A"))
        cells.append(f"{t * 1e3:.1f} ms, {(f.L.nnz + f.U.nnz) / 1e6:.2f}M")
        cells.append(f"{t_order * 1e3:.2f} ms")
        rows.append(cells)
        print(" | ".join(cells), flush=True)
    print()
    print(table(["graph", "unknowns", "flops estimate", "QDLDL refactor", "SuperLU, AMD of the blocks",
                 "SuperLU, its minimum degree of the blocks (robojac)", "SuperLU ordering the scalars",
                 "that minimum degree's own time"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    optima = json.loads(data.path("posegraph/gtsam_optima.json").read_text())
    ap.add_argument("--graphs", nargs="+", default=list(optima))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--damping-grid", nargs="+", type=lambda v: None if v == "default" else float(v), metavar="LAMBDA",
                    help="robojac alone: LM's steps for each first damping, every graph of data/")
    ap.add_argument("--orderings", action="store_true",
                    help="robojac alone: the sparse factorizations' times under each ordering, on each graph")
    args = ap.parse_args()
    if args.orderings:
        print(f"# Sparse factorizations and their orderings, pose-graph patterns; {describe_machine()}", flush=True)
        orderings(args.graphs, args.repeat)
        return
    if args.damping_grid:
        print(f"# Levenberg-Marquardt's first damping, robojac's pose graphs; {describe_machine()}", flush=True)
        damping_grid(args.damping_grid)
        return
    print(f"# Pose-graph optimization, robojac vs GTSAM; {describe_machine()}", flush=True)
    rows = []
    for name in args.graphs:
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        path = plain_copy(data.path(f"posegraph/{name}.g2o"))  # GTSAM reads no .gz
        ref = optima[name]["gtsam_optimum_cost"]
        ours = {}
        for method in ("gn", "lm"):
            times, result = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                result = optimize(graph, PGOConfig(method=method, init="chordal"))
                times.append(time.perf_counter() - t0)
            check = gtsam_cost_of(path, graph.dim, result.poses, result.vertex_ids)
            ours[method] = (statistics.median(times), result, check)
        theirs = {}
        for method in ("gn", "lm"):
            runs = [gtsam_run(path, graph.dim, method, graph) for _ in range(args.repeat)]
            if runs[0][0] is None:
                theirs[method] = (None, runs[0][1])
            else:
                theirs[method] = (statistics.median(r[0][0] for r in runs), runs[0][0])
        # GTSAM's fastest configuration that reaches the optimum (relative 1e-6)
        ok = [(v[0], m) for m, v in theirs.items() if v[0] is not None and abs(v[1][3] - ref) <= 1e-6 * ref]
        best_t, best_m = min(ok) if ok else (None, None)
        our_ok = [(v[0], m) for m, v in ours.items() if abs(v[2] - ref) <= 1e-6 * ref]
        our_t, our_m = min(our_ok) if our_ok else (None, None)

        def g_cell(m):
            t, info = theirs[m]
            if t is None:
                return info
            return f"{t:.3f} s ({info[1]:.3f} init), {info[4]} it, cost {info[3]:.8g}"

        def o_cell(m):
            t, r, check = ours[m]
            return f"{t:.3f} s ({r.init_seconds:.3f} init), {r.iterations} it, cost {check:.8g}"

        if best_t and our_t:
            ratio = f"{best_t / our_t:.2f}x ({our_m} vs {best_m})"
        elif our_t:
            ratio = "GTSAM does not reach it"
        else:
            ratio = "-"
        rows.append([name, f"{graph.num_poses}/{graph.num_edges}", o_cell("gn"), o_cell("lm"), g_cell("gn"), g_cell("lm"),
                     f"{ref:.8g}", ratio])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["graph", "poses/edges", "robojac GN", "robojac LM", "GTSAM GN", "GTSAM LM", "optimum", "speed-up (best vs best)"], rows))


if __name__ == "__main__":
    main()
