"""Timing helpers shared by the benchmarks: medians, peers under a time limit, tables."""

from __future__ import annotations

import atexit
import gzip
import multiprocessing as mp
import os
import pathlib
import shutil
import tempfile
import platform
import statistics
import time
from collections.abc import Callable

import torch


def plain_copy(path) -> pathlib.Path:
    """``path`` itself, or for a ``.gz`` file an uncompressed copy in a temporary folder removed
    at exit (for peers that read only plain files)."""
    path = pathlib.Path(path)
    if path.suffix != ".gz":
        return path
    folder = pathlib.Path(tempfile.mkdtemp(prefix="robojac_bench_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    out = folder / path.stem
    out.write_bytes(gzip.decompress(path.read_bytes()))
    return out


def median_time(fn: Callable[[], object], *, repeat: int = 15, warmup: int = 2, budget_s: float = 20.0) -> float:
    """Median wall time of ``fn()`` in seconds (fewer repeats if it is slow)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def interleaved_medians(fns: list[Callable[[], object]], *, repeat: int = 51, warmup: int = 3) -> list[float]:
    """Median times of several functions called in turn (a fair ratio: same cache and load)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def _child(conn, target, args):
    try:
        conn.send(("ok", target(*args)))
    except Exception as e:  # report the peer's failure (out of memory, unsupported) as text
        msg = str(e).splitlines()[0]
        conn.send(("error", "out of memory" if "allocate memory" in msg else f"{type(e).__name__}: {msg[:100]}"))


def run_with_timeout(target: Callable, args: tuple = (), timeout_s: float = 120.0):
    """Run ``target(*args)`` in a child process; ``("ok", value)``, ``("error", msg)`` or ``("timeout", limit)``."""
    ctx = mp.get_context("spawn")  # fork after torch has started its thread pool can hang
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, target, args))
    proc.start()
    if parent.poll(timeout_s):
        result = parent.recv()
        proc.join()
        return result
    proc.kill()
    proc.join()
    return ("timeout", timeout_s)


def batch_arguments(doc: str):
    """The options of a batched-against-per-call benchmark: ``--batches``, ``--dtypes``,
    ``--repeats`` (``doc`` is the script's help)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 1000, 100_000], help="batch sizes to time")
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                    help="robojac's dtypes")
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per figure (the median is quoted)")
    return ap.parse_args()


def describe_machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (printed, and pasteable into the README)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def gtsam_values(dim: int, poses: torch.Tensor, ids: torch.Tensor):
    """robojac's poses ``(N, 7)`` as GTSAM ``Values`` under the vertex ids ``ids`` (Pose3 from
    the quaternion, Pose2 from the planar pose's heading)."""
    import math

    import gtsam

    values = gtsam.Values()
    for k, x in zip(ids.tolist(), poses.detach().double().cpu().numpy()):
        if dim == 3:
            values.insert(k, gtsam.Pose3(gtsam.Rot3.Quaternion(x[6], x[3], x[4], x[5]), x[:3]))
        else:
            values.insert(k, gtsam.Pose2(x[0], x[1], 2.0 * math.atan2(x[5], x[6])))
    return values


def gtsam_robust(graph, kernel):
    """A copy of the GTSAM factor graph ``graph`` (between factors, as ``gtsam.readG2o`` gives
    them) with each factor's noise model wrapped in the mEstimator ``kernel``."""
    import gtsam

    out = gtsam.NonlinearFactorGraph()
    for i in range(graph.size()):
        f = graph.at(i)
        Between = gtsam.BetweenFactorPose3 if isinstance(f, gtsam.BetweenFactorPose3) else gtsam.BetweenFactorPose2
        out.add(Between(f.keys()[0], f.keys()[1], f.measured(), gtsam.noiseModel.Robust.Create(kernel, f.noiseModel())))
    return out


def gtsam_anchored(graph, values, key: int, dim: int):
    """A copy of ``graph`` plus a prior of sigma 1e-6 holding pose ``key`` at its value in
    ``values``: the gauge robojac holds by fixing that pose."""
    import gtsam

    out = gtsam.NonlinearFactorGraph(graph)
    if dim == 3:
        out.add(gtsam.PriorFactorPose3(key, values.atPose3(key), gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
    else:
        out.add(gtsam.PriorFactorPose2(key, values.atPose2(key), gtsam.noiseModel.Isotropic.Sigma(3, 1e-6)))
    return out


def gtsam_lm(graph, values, relative_tolerance: float = 1e-6):
    """GTSAM's Levenberg-Marquardt on ``graph`` from ``values``, to a relative decrease of
    ``relative_tolerance`` (an absolute one of 1e-12, at most 100 iterations): ``(seconds, answer,
    iterations)``, the seconds those of the optimizer alone."""
    import gtsam

    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(relative_tolerance)
    params.setAbsoluteErrorTol(1e-12)
    params.setMaxIterations(100)
    t0 = time.perf_counter()
    opt = gtsam.LevenbergMarquardtOptimizer(graph, values, params)
    result = opt.optimize()
    return time.perf_counter() - t0, result, opt.iterations()


def forward_backward(build: Callable[[], object], solve: Callable[[object], torch.Tensor],
                     repeat: int) -> tuple[float, float]:
    """Medians over ``repeat`` runs of ``solve(build())`` (a scalar loss on a solver's answer; what
    ``build`` makes, with inputs that require grad, is not timed) and of the loss's
    ``backward()``: ``(forward seconds, backward seconds)``, after one untimed run (the first
    backward in a process builds what the later ones reuse: ~0.4 s on parking-garage)."""
    solve(build()).backward()
    forward, backward = [], []
    for _ in range(repeat):
        problem = build()
        t0 = time.perf_counter()
        loss = solve(problem)
        forward.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss.backward()
        backward.append(time.perf_counter() - t0)
    return statistics.median(forward), statistics.median(backward)
