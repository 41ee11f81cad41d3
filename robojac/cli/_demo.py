"""``robojac demo``: a short tour of what robojac does, with pictures."""

from __future__ import annotations

import pathlib
import time

from .._files import save_figure_atomic


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="a short tour: tangent-space Jacobians, batched kinematics, pictures")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("robojac_demo"), help="folder for the pictures")


def _section(title: str) -> None:
    print(f"\n== {title}")


def run(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pypose as pp
    import torch
    from torch import nn

    from .. import viz
    from ..jacobian import block_sparse_jacobian, modjac, SE3BetweenResidual
    from ..kinematics import PoseTransform
    from ..models import planar_arm, sample_arm

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    _section("1. Jacobians in the tangent space of SE3")
    T = pp.randn_SE3(dtype=torch.float64)

    class Translation(nn.Module):  # a model that reads the pose's raw numbers
        def __init__(self):
            super().__init__()
            self.T = pp.Parameter(T.clone())

        def forward(self):
            return self.T.translation()

    (ours,) = modjac(Translation())
    (theirs,) = pp.optim.functional.modjac(Translation())
    exact = torch.cat((torch.eye(3, dtype=torch.float64), -pp.vec2skew(T.translation())), 1)  # [I, -[t]x]
    print(f"   d translation / d pose: robojac {tuple(ours.shape)} columns, pypose {tuple(theirs.shape)}")
    print(f"   error against the exact [I, -[t]x]: robojac {float((ours - exact).abs().max()):.1e}, "
          f"pypose {float((theirs[..., :6] - exact).abs().max()):.2f}")
    points = torch.randn(1000, 3, dtype=torch.float64)
    (J,) = modjac(PoseTransform(T), points, vectorize=True, strategy="forward-mode")
    print(f"   a pose acting on 1000 points, forward mode: Jacobian {tuple(J.shape)}")

    _section("2. Block-sparse Jacobian of a pose graph (2500 poses, 5000 edges)")
    N, E = 2500, 5000
    X = pp.randn_SE3(N, dtype=torch.float64)
    idx = torch.stack((torch.arange(E) % N, torch.randint(0, N, (E,))), 1)
    Z = pp.randn_SE3(E, dtype=torch.float64)
    t0 = time.perf_counter()
    r, Jg = block_sparse_jacobian(SE3BetweenResidual(), X, idx, data=(Z.tensor(),))
    Jg.normal_equations(r)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    r, Jg = block_sparse_jacobian(SE3BetweenResidual(), X, idx, data=(Z.tensor(),), pattern=Jg.pattern)
    H, g = Jg.normal_equations(r)
    dt = time.perf_counter() - t0
    print(f"   J {Jg.shape} with {Jg.to_sparse_csr().values().numel():,} non-zeros; blocks, J^T J and J^T r: "
          f"{first * 1e3:.0f} ms the first time (builds the sparsity pattern), {dt * 1e3:.0f} ms with it")

    _section("3. Batched kinematics of a 7-DoF arm")
    arm = sample_arm()
    q = arm.random_configuration(100_000, generator=torch.Generator().manual_seed(0))
    arm.forward_kinematics(q)
    arm.jacobian(q)  # the first calls set up reusable workspaces
    t0 = time.perf_counter()
    poses = arm.forward_kinematics(q)
    t1 = time.perf_counter()
    Jq = arm.jacobian(q)
    t2 = time.perf_counter()
    print(f"   {arm}")
    print(f"   FK of all {len(poses)} frames for {len(q):,} configurations (float64): {(t1 - t0) * 1e3:.0f} ms; "
          f"Jacobians {tuple(Jq.shape)}: {(t2 - t1) * 1e3:.0f} ms")
    home = torch.tensor([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785], dtype=torch.float64)
    ax = viz.plot_arm(arm, home)
    ax.set_title("7-DoF sample arm (Panda kinematics) at home")
    save_figure_atomic(ax.figure, out / "arm7.png", dpi=110)
    ax = viz.plot_jacobian_heatmap(arm.jacobian(home), col_labels=arm.joint_names, title="Which joint moves the tool how")
    ax.figure.tight_layout()
    save_figure_atomic(ax.figure, out / "jacobian7.png", dpi=110)
    planar = planar_arm((1.0, 0.8, 0.5))
    s = torch.linspace(0, 1, 30, dtype=torch.float64)[:, None]
    qs = torch.tensor([-0.3, 1.2, -0.8]) + s * torch.tensor([1.5, -1.0, 1.4])
    strip = viz.plot_trajectory_strip(planar, qs, num_frames=5, title="3-link planar arm")
    save_figure_atomic(strip, out / "planar_strip.png", dpi=90)
    viz.animate_arm(planar, qs, out / "planar.gif", fps=10)

    _section("4. Inverse kinematics of the 7-DoF arm")
    from .. import ik

    q_true = arm.random_configuration(2000, generator=torch.Generator().manual_seed(1))
    targets = arm.forward_kinematics(q_true, "tool")  # reachable poses, inside the limits
    t0 = time.perf_counter()
    res = ik.solve(arm, targets.float())
    dt = time.perf_counter() - t0
    print(f"   {len(q_true):,} random poses: {float(res.converged.float().mean()) * 100:.2f}% solved inside the limits "
          f"(< 0.1 mm, < 1 mrad) in {dt:.2f} s ({len(q_true) / dt:,.0f} targets/s, float32, random starts)")
    t0 = time.perf_counter()
    one = ik.solve(arm, targets[0])
    print(f"   one target: {(time.perf_counter() - t0) * 1e3:.1f} ms, {int(one.iterations)} steps, "
          f"error {float(one.pos_err) * 1e3:.4f} mm / {float(one.rot_err):.1e} rad")
    ax = viz.plot_arm(arm, one.q, target=targets.tensor()[0])
    ax.set_title("IK: the arm placing its tool on a target pose")
    save_figure_atomic(ax.figure, out / "ik7.png", dpi=110)
    plt.close("all")
    print(f"\npictures written to {out.resolve()}/")
    return 0
