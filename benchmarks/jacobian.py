"""robojac's Jacobian core vs ``pypose.optim.functional.modjac``, on the same models in one run.

* a 7-joint chain (the Panda's kinematics) at batch 64 and 4096: Jacobian of the tip pose
  w.r.t. the joint vector; robojac's per-sample blocks (generic autodiff) and its closed form,
  against its own forward pass;
* an SE3 transform of N=100 poses acting on M=1000 points each;
* pose graphs (odometry plus loop closures) of 1000 poses / 2000 edges and 2500 / 5000:
  block-sparse Jacobian with sparse assembly.

pypose runs in a child process under --timeout seconds (it is dense and per-row).

A first table times ``modjac`` itself at its defaults against pypose's at its own, in this
process, interleaved: robojac's automatic strategy (forward or reverse mode by size,
vectorized) and robojac row by row (pypose's strategy), on a camera pose acting on 100 points,
the 7-joint chain at batch 64, and a small MLP; every Jacobian equal to pypose's where pypose's
columns are the same (plain parameters) and to robojac's row-by-row one.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/jacobian.py [--timeout 120] [--quick] [--defaults-only]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import warnings

import pypose as pp
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, interleaved_medians, median_time, run_with_timeout, table  # noqa: E402

from robojac.jacobian import SE3BetweenResidual, block_sparse_jacobian, per_sample_modjac, se3_act_jacobian  # noqa: E402
from robojac.kinematics import PoseTransform  # noqa: E402
from robojac.models import sample_arm  # noqa: E402

warnings.filterwarnings("ignore")
DT = torch.float64


class ChainModel(nn.Module):
    """B independent joint vectors -> B tip poses (the model pypose differentiates)."""

    def __init__(self, q):
        super().__init__()
        self.chain = sample_arm()
        self.q = nn.Parameter(q.clone())

    def forward(self):
        return self.chain(self.q)


class PoseGraphModel(nn.Module):
    def __init__(self, X, idx, Z):
        super().__init__()
        self.X = pp.Parameter(X.clone())
        self.idx, self.Z = idx, Z

    def forward(self):
        Ti, Tj = self.X[self.idx[:, 0]], self.X[self.idx[:, 1]]
        return (self.Z.Inv() * Ti.Inv() * Tj).Log().tensor()


def make_graph(N: int, E: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = pp.SE3(pp.randn_SE3(N, sigma=0.3, dtype=DT).tensor())
    odo = torch.stack((torch.arange(N - 1), torch.arange(1, N)), 1)
    loops = torch.randint(0, N, (E - (N - 1), 2), generator=g)
    idx = torch.cat((odo, loops))
    Z = pp.randn_SE3(E, sigma=0.1, dtype=DT)
    return X, idx, Z


def _pypose_time(builder, args, vectorize: bool, repeat: int = 1) -> float:
    model, inp = builder(*args)
    t0 = time.perf_counter()
    for _ in range(repeat):
        pp.optim.functional.modjac(model, inp, vectorize=vectorize)
    return (time.perf_counter() - t0) / repeat


def _chain_builder(B):
    q = sample_arm().random_configuration(B, generator=torch.Generator().manual_seed(B))
    return ChainModel(q), None


def _transform_builder(N, M):
    g = torch.Generator().manual_seed(1)
    return PoseTransform(pp.randn_SE3(N, dtype=DT)), torch.randn(N, M, 3, dtype=DT, generator=g)


def _graph_builder(N, E):
    return PoseGraphModel(*make_graph(N, E)), None


def _peer(builder, args, vectorize, timeout):
    status, value = run_with_timeout(_pypose_time, (builder, args, vectorize), timeout)
    if status == "ok":
        return value, fmt_time(value)
    return None, ("timeout > " + fmt_time(value)) if status == "timeout" else value


class Camera(nn.Module):
    def __init__(self):
        super().__init__()
        self.T_world_camera = pp.Parameter(pp.randn_SE3(dtype=DT))

    def forward(self, p):
        return self.T_world_camera.Act(p)


def defaults_table() -> None:
    """``modjac`` at its defaults against pypose's at its own (see the module docstring)."""
    from robojac.jacobian import modjac

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Linear(64, 3)).double()
    models = [("camera pose, 100 points (6 columns, 300 outputs)", Camera(), torch.randn(100, 3, dtype=DT), False),
              ("7-joint chain, B=64 (448 columns, 448 outputs)", _chain_builder(64)[0], None, False),
              ("MLP 3-64-3, 100 inputs (451 columns, 300 outputs)", mlp, torch.randn(100, 3, dtype=DT), True)]
    rows = []
    for name, model, x, plain in models:
        ours, by_rows, theirs = modjac(model, x), modjac(model, x, strategy="reverse-mode"), \
            pp.optim.functional.modjac(model, x)
        assert all(float((a - b).abs().max()) < 1e-12 for a, b in zip(ours, by_rows))
        if plain:
            assert all(float((a - b).abs().max()) < 1e-12 for a, b in zip(ours, theirs))
        t_auto, t_rows, t_pp = interleaved_medians([lambda: modjac(model, x),
                                                    lambda: modjac(model, x, strategy="reverse-mode"),
                                                    lambda: pp.optim.functional.modjac(model, x)], repeat=7)
        rows.append([name, fmt_time(t_pp), fmt_time(t_rows), fmt_time(t_auto), f"{t_pp / t_auto:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    print(table(["model", "pypose modjac (defaults)", "robojac row by row", "robojac (defaults: auto)",
                 "pypose / robojac"], rows), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds allowed to each pypose run")
    ap.add_argument("--quick", action="store_true", help="skip every pypose run but the smallest")
    ap.add_argument("--full", action="store_true", help="also run pypose's per-row modjac where it takes minutes")
    ap.add_argument("--defaults-only", action="store_true", help="only the table of modjac at its defaults")
    args = ap.parse_args()
    print(f"# Jacobian core vs pypose modjac; {describe_machine()}; float64\n", flush=True)
    defaults_table()
    if args.defaults_only:
        return
    headers = ["model", "pypose modjac (per-row / vectorized)", "robojac generic", "robojac fast path", "forward pass", "notes"]
    rows = []

    def report(row):
        rows.append(row)
        print(" | ".join(row), flush=True)

    # ---- the 7-joint chain ----------------------------------------------------------------
    for B in (64, 4096):
        model, _ = _chain_builder(B)
        q = model.q.detach()
        chain = model.chain
        ps = per_sample_modjac(model)
        t_ps = median_time(lambda: per_sample_modjac(model))
        fwd, t_an = interleaved_medians([lambda: chain(q), lambda: chain.jacobian(q)])
        # per-sample blocks equal the dense Jacobian's diagonal blocks (checked on a few)
        if B == 64:
            dense = pp.optim.functional.modjac(model, vectorize=True)[0]
            diag = torch.stack([dense[b, :, b] for b in range(B)])
            assert float((diag - ps.jacobian).abs().max()) < 1e-10
        peer = (None, "skipped (--quick)") if (args.quick and B > 64) else _peer(_chain_builder, (B,), True, args.timeout)
        if B > 64 and not args.full:
            peer_rows = (None, "not run (issue: > 240 s)")
        else:
            peer_rows = _peer(_chain_builder, (B,), False, args.timeout)
        report([f"7-joint chain, B={B}", f"{peer_rows[1]} / {peer[1]}", f"{fmt_time(t_ps)} (per-sample autodiff)",
                     f"{fmt_time(t_an)} (closed form)", fmt_time(fwd),
                     f"{t_an / fwd:.1f}x forward" + (f"; {peer[0] / t_an:,.0f}x pypose-vec" if peer[0] else "")])

    # ---- SE3 transform: 100 poses x 1000 points ----------------------------------------------
    N, M = 100, 1000
    model, pts = _transform_builder(N, M)
    T = model.T.detach()
    t_ps = median_time(lambda: per_sample_modjac(model, pts))
    fwd, t_an = interleaved_medians([lambda: model(pts), lambda: se3_act_jacobian(T.unsqueeze(-2), pts)], repeat=21)
    assert float((per_sample_modjac(model, pts).jacobian.view(N, M, 3, 6) - se3_act_jacobian(T.unsqueeze(-2), pts)[1]).abs().max()) < 1e-10
    peer = (None, "skipped (--quick)") if args.quick else _peer(_transform_builder, (N, M), True, args.timeout)
    report([f"SE3 transform, {N} poses x {M} points", f"- / {peer[1]}", f"{fmt_time(t_ps)} (per-sample autodiff)",
                 f"{fmt_time(t_an)} (closed form)", fmt_time(fwd),
                 f"{t_an / fwd:.1f}x forward" + (f"; {peer[0] / t_an:,.0f}x pypose-vec" if peer[0] else "")])

    # ---- pose graphs -------------------------------------------------------------------------
    for N, E in ((1000, 2000), (2500, 5000)):
        X, idx, Z = make_graph(N, E)
        res = SE3BetweenResidual()
        r, J = block_sparse_jacobian(res, X, idx, data=(Z.tensor(),))
        J.to_sparse_csr()
        t_an = median_time(lambda: block_sparse_jacobian(res, X, idx, data=(Z.tensor(),), pattern=J.pattern)[1].to_sparse_csr())
        auto = lambda Ti, Tj, Zt: (pp.SE3(Zt).Inv() * Ti.Inv() * Tj).Log().tensor()  # noqa: E731
        t_ad = median_time(lambda: block_sparse_jacobian(auto, X, idx, data=(Z.tensor(),), pattern=J.pattern)[1].to_sparse_csr(), repeat=5)
        fwd = median_time(lambda: res(X[idx[:, 0]], X[idx[:, 1]], Z))
        nbytes = J.blocks.numel() * J.blocks.element_size() + sum(a.numel() * a.element_size() for a in J.pattern._jacobian_csr)
        if N == 1000 and not args.quick:
            peer = _peer(_graph_builder, (N, E), True, max(args.timeout, 60))
            peer_rows = _peer(_graph_builder, (N, E), False, args.timeout) if args.full else (None, "not run (issue: 161 s)")
        elif N == 1000:
            peer, peer_rows = (None, "skipped (--quick)"), (None, "skipped")
        else:
            dense_gb = (E * 6) * (N * 7) * 8 / 1e9
            peer = (None, f"not run: dense J alone {dense_gb:.1f} GB")
            peer_rows = (None, "-")
        report([f"pose graph {N} poses / {E} edges", f"{peer_rows[1]} / {peer[1]}",
                     f"{fmt_time(t_ad)} (block-sparse autodiff)", f"{fmt_time(t_an)} (closed form + CSR)", fmt_time(fwd),
                     f"J memory {nbytes / 1e6:.1f} MB" + (f"; {peer[0] / t_an:,.0f}x pypose-vec" if peer[0] else "")])

    print()
    print(table(headers, rows), flush=True)

    # ---- memory grows linearly with the edges -------------------------------------------------
    print("\nBlock-sparse Jacobian + CSR assembly as the graph grows (closed form, pattern reused):")
    scale = []
    for N, E in ((2500, 5000), (5000, 10000), (10000, 20000), (20000, 40000)):
        X, idx, Z = make_graph(N, E)
        r, J = block_sparse_jacobian(SE3BetweenResidual(), X, idx, data=(Z.tensor(),))
        J.to_sparse_csr()
        t = median_time(lambda: block_sparse_jacobian(SE3BetweenResidual(), X, idx, data=(Z.tensor(),), pattern=J.pattern)[1].to_sparse_csr())
        nbytes = J.blocks.numel() * J.blocks.element_size() + sum(a.numel() * a.element_size() for a in J.pattern._jacobian_csr)
        scale.append([f"{N:,}", f"{E:,}", fmt_time(t), f"{nbytes / 1e6:.1f} MB", f"{nbytes / E:.0f} B/edge"])
    print(table(["poses", "edges", "time", "J memory", "per edge"], scale))


if __name__ == "__main__":
    main()
