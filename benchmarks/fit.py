"""``optim.fit`` against pypose's ``optim.LM``: a module's own parameters fitted to its output.

Each case fits one module from the same start, robojac with ``optim.fit`` (its defaults: LM, the
engine's stopping tests), pypose with ``pp.optim.LM(model)`` stepped until its cost is within
1e-9 of robojac's (or 50 steps), as pypose's documentation steps it.  Only pypose's ``step``
calls are timed; the cost check between them is not.  Both costs are evaluated here, ``0.5 sum
r^T W r``.  Medians over --repeat runs after a warm-up (torch's first vectorized forward-mode
Jacobian in a process takes about a second, in either library).

* pypose's own LM example: a ``(2, 2)`` batch of SE3 poses fitted so that ``pose @ input`` is the
  identity (24 unknowns, 24 residuals);
* a scaled pose ``exp(s) T p`` (an SE3 parameter and a scalar) fitted to 1,000 noisy
  correspondences (7 unknowns, 3,000 residuals), without and with an information matrix per row;
* pypose's example at 300 poses, robojac with ``per_sample=True`` (300 problems of 6 unknowns),
  pypose's LM as one problem of 1,800 (the only way it has).

pypose's example, alone and at 300 poses, runs twice: at ``fit``'s default damping, and with
``TrustRegionConfig.gauss_newton_first()``, whose Gauss-Newton steps suit it.

* one Sim3 parameter aligning KITTI 00's positions (every fifth of ``data/posegraph/kitti_00.g2o``)
  to a copy at half the scale, turned and 1% noisy (7 unknowns, 2,727 residuals).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fit.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time

import pypose as pp
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, table  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.optim import SolverConfig, TrustRegionConfig, fit  # noqa: E402
from robojac.posegraph import read_g2o  # noqa: E402


class Inverse(nn.Module):
    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.pose = pp.Parameter(pp.SE3(start.clone()))

    def forward(self, input):
        return (self.pose @ input).Log().tensor()


class Similarity(nn.Module):
    def __init__(self):
        super().__init__()
        self.S = pp.Parameter(pp.identity_Sim3(dtype=torch.float64))

    def forward(self, p):
        return self.S.Act(p)


class ScaledPose(nn.Module):
    def __init__(self):
        super().__init__()
        self.T = pp.Parameter(pp.identity_SE3(dtype=torch.float64))
        self.s = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, p):
        return self.s.exp() * self.T.Act(p)


def _cases():
    g = torch.Generator().manual_seed(0)
    kw = dict(dtype=torch.float64)
    input = pp.SE3(lie.se3_exp(torch.randn(2, 2, 6, generator=g, **kw)))
    start = lie.se3_exp(torch.randn(2, 2, 6, generator=g, **kw))
    p = torch.randn(1000, 3, generator=g, **kw)
    T = pp.SE3(lie.se3_exp(0.5 * torch.randn(6, generator=g, **kw)))
    q = 1.4 * T.Act(p) + 0.01 * torch.randn(1000, 3, generator=g, **kw)
    A = torch.randn(1000, 3, 3, generator=g, **kw)
    W = A @ A.transpose(-1, -2) + 0.5 * torch.eye(3, **kw)
    many_input = pp.SE3(lie.se3_exp(torch.randn(300, 6, generator=g, **kw)))
    many_start = lie.se3_exp(torch.randn(300, 6, generator=g, **kw))
    reference = read_g2o(data.path("posegraph/kitti_00.g2o")).poses.tensor()[::5, :3].detach()
    turn = pp.SE3(lie.se3_exp(torch.tensor([20.0, -5.0, 3.0, 0.1, -0.2, 0.9], **kw)))
    estimate = 0.5 * turn.Act(reference)
    estimate = estimate + 0.01 * estimate.abs().mean() * torch.randn(estimate.shape, generator=g, **kw)
    first = SolverConfig(trust_region=TrustRegionConfig.gauss_newton_first())
    return [("pypose's example: (2, 2) poses inverted", lambda: Inverse(start), (input,), None, None, False, None),
            ("the same, gauss_newton_first()", lambda: Inverse(start), (input,), None, None, False, first),
            ("scaled pose, 1,000 correspondences", ScaledPose, (p,), q, None, False, None),
            ("the same, an information matrix per row", ScaledPose, (p,), q, W, False, None),
            ("pypose's example at 300 poses (per_sample)", lambda: Inverse(many_start), (many_input,), None, None,
             True, None),
            ("the same, gauss_newton_first()", lambda: Inverse(many_start), (many_input,), None, None, True, first),
            ("Sim3 alignment, KITTI 00 (909 positions)", Similarity, (estimate,), reference, None, False, None)]


def _cost(model, args, target, W) -> float:
    with torch.no_grad():
        r = model(*args) if target is None else model(*args) - target
        return float(0.5 * (r * r).sum() if W is None else 0.5 * torch.einsum("...i,...ij,...j->", r, W, r))


def _ours(make, args, target, W, per_sample, config):
    model = make()
    t = time.perf_counter()
    result = fit(model, args, target, weight=W, per_sample=per_sample, config=config)
    iterations = int(result.iterations.max()) if per_sample else result.iterations
    converged = bool(result.converged.all()) if per_sample else result.converged
    return time.perf_counter() - t, iterations, _cost(model, args, target, W), converged


def _theirs(make, args, target, W, goal: float):
    model = make()
    lm = pp.optim.LM(model)
    seconds, steps = 0.0, 0
    for steps in range(1, 51):
        t = time.perf_counter()
        lm.step(args[0] if len(args) == 1 else args, target, weight=W)
        seconds += time.perf_counter() - t
        if _cost(model, args, target, W) <= goal * (1 + 1e-9) + 1e-24:
            break
    return seconds, steps, _cost(model, args, target, W)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(describe_machine(), f"pypose {pp.__version__}")
    rows = []
    for name, make, inputs, target, W, per_sample, config in _cases():
        _ours(make, inputs, target, W, per_sample, config), _theirs(make, inputs, target, W, math.inf)  # warm-up
        ours = [_ours(make, inputs, target, W, per_sample, config) for _ in range(args.repeat)]
        theirs = [_theirs(make, inputs, target, W, ours[0][2]) for _ in range(args.repeat)]
        t_ours, t_theirs = statistics.median(o[0] for o in ours), statistics.median(t[0] for t in theirs)
        rows.append([name, f"{1e3 * t_ours:.1f} ms", f"{ours[0][1]} it, {ours[0][2]:.6g}", f"{1e3 * t_theirs:.1f} ms",
                     f"{theirs[0][1]} steps, {theirs[0][2]:.6g}", f"{t_theirs / t_ours:.2f}x"])
        assert all(o[3] for o in ours), name
    print(table(["case", "robojac fit", "iterations, cost", "pypose LM", "steps, cost", "pypose / robojac"], rows))


if __name__ == "__main__":
    main()
