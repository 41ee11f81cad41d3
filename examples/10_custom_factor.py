"""A new factor on the solver engine, with no Jacobian written: point-to-line registration.

A laser tracker measures the direction to each target but not its range: every point of a
part is known to lie on a ray.  Find the part's pose ``T_world_part`` so that each model point,
moved by it, lands on its ray.  The residual is the point's offset from its line; the engine
differentiates it in the tangent space of SE3 through ``robojac.jacobian``.  Eight poses are
solved in one batch, and the gradient of the answer with respect to the measured rays is
available too (here: how much the pose moves when one ray tilts).

    python examples/10_custom_factor.py --out out/custom_factor
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402

from robojac import lie, optim  # noqa: E402


def point_to_line(T_world_part, p_part, origin, direction):
    """Offset of each moved point from its ray: ``(B, 1, 3M)``.  Shapes: ``T (B, 1, 7)``,
    ``p_part``/``origin``/``direction`` ``(B, 1, M, 3)``."""
    v = lie.se3_act(T_world_part[:, :, None, :], p_part) - origin
    return (v - (v * direction).sum(-1, keepdim=True) * direction).flatten(2)


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    B, M = 8, 30
    p_part = torch.randn(B, M, 3, dtype=torch.float64, generator=g) * torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)
    truth = pp.se3(torch.cat((torch.randn(B, 3, dtype=torch.float64, generator=g) + torch.tensor([3.0, 0, 1]),
                              0.4 * torch.randn(B, 3, dtype=torch.float64, generator=g)), -1)).Exp()
    tracker = torch.zeros(3, dtype=torch.float64)  # every ray starts at the tracker
    on_part = truth.unsqueeze(1).Act(p_part) + 1e-4 * torch.randn(B, M, 3, dtype=torch.float64, generator=g)
    direction = torch.nn.functional.normalize(on_part - tracker, dim=-1).requires_grad_()

    start = pp.se3(torch.tensor([3.0, 0, 1, 0, 0, 0], dtype=torch.float64).expand(B, 6)).Exp()
    T = optim.Variable("SE3", start.tensor()[:, None], name="T_world_part")
    rays = optim.Factor(point_to_line, [T], data=(p_part[:, None], tracker.expand(B, 1, M, 3), direction[:, None]),
                        name="rays")
    result = optim.solve([T], [rays])
    err = (pp.SE3(result.values[0][:, 0].detach()).Inv() * truth).Log().tensor()
    print(f"{B} poses from {M} rays each: converged {result.converged.tolist()}, iterations {result.iterations.tolist()}")
    print(f"  largest error: {float(err[:, :3].norm(dim=-1).max()) * 1e3:.3f} mm, "
          f"{float(err[:, 3:].norm(dim=-1).max()):.2e} rad (rays measured to 0.1 mm)")
    # how the first pose's position moves when its first ray tilts: d t / d direction
    result.values[0][0, 0, :3].sum().backward()
    print(f"  d(sum of pose 0's position)/d(ray 0 direction) = {direction.grad[0, 0].tolist()}")

    fig = plt.figure(figsize=(12, 5))
    for k, (title, X) in enumerate((("start: the model at the first guess", start),
                                    ("solved: every point on its ray", pp.SE3(result.values[0][:, 0].detach())))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        for b in range(3):
            pts = X[b].unsqueeze(0).Act(p_part[b]).numpy()
            ends = (direction[b].detach() * 4.5).numpy()
            for e in ends:
                ax.plot([0, e[0]], [0, e[1]], [0, e[2]], color="#bbbbbb", lw=0.5)
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=8, label=f"part {b}")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(1.5, 4.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_zlim(-0.5, 2.5)
        ax.legend(fontsize=7)
    hist = result.history.cost.detach()
    fig.suptitle("Point-to-line registration on robojac.optim (three of the eight parts)")
    fig.tight_layout()
    fig.savefig(out / "point_to_line.png", dpi=90)
    ax = plt.figure(figsize=(5, 3.5)).add_subplot()
    ax.semilogy(hist.clamp_min(1e-30).numpy())
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost (each of the 8 problems)")
    ax.figure.tight_layout()
    ax.figure.savefig(out / "point_to_line_cost.png", dpi=90)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/custom_factor"))
    main(p.parse_args().out)
