"""Learning through a solver: how much to trust each correspondence, trained on the solved pose.

Each training problem aligns two point sets whose correspondences come from a matcher: a fifth
of them are wrong, and the matcher's score says, noisily, which.  A two-parameter model turns
each score into a weight, ``w = sigmoid(a * score + b)``; the pose is solved on the engine with
the weighted residuals ``sqrt(w) (T p - q)``; the loss is the solved pose's error against the
truth.  Its gradient reaches ``a`` and ``b`` through the solver by the implicit function theorem
(``robojac.optim.solve``'s default backward).  Before training every correspondence weighs the
same and the outliers drag the pose; after it, the model has learned to trust high scores.

    python examples/11_learn_through_a_solver.py --out out/learn
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402

from robojac import lie, optim  # noqa: E402


def make_problems(B: int, M: int, seed: int):
    """``(T_q_p, p, q, score, outlier)``: point sets with 20% wrong correspondences."""
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, generator=g)
    T = pp.se3(0.3 * torch.randn(B, 6, **kw)).Exp()
    p = torch.randn(B, M, 3, **kw)
    q = T.unsqueeze(1).Act(p) + 0.005 * torch.randn(B, M, 3, **kw)
    outlier = torch.rand(B, M, **kw) < 0.2
    q = torch.where(outlier[..., None], q + 0.8 * torch.randn(B, M, 3, **kw), q)
    score = torch.where(outlier, 0.0, 1.0) + 0.45 * torch.randn(B, M, **kw)  # the matcher's noisy confidence
    return T, p, q, score, outlier


def weighted_point_to_point(T, p, q, sqrt_w):
    return (sqrt_w[..., None] * (lie.se3_act(T[:, :, None, :], p) - q)).flatten(2)


def solve_poses(p, q, w):
    B = p.shape[0]
    T = optim.Variable("SE3", pp.identity_SE3(B, 1, dtype=p.dtype).tensor(), name="T_q_p")
    f = optim.Factor(weighted_point_to_point, [T], data=(p[:, None], q[:, None], w.sqrt()[:, None]), name="matches")
    return optim.solve([T], [f])


def pose_error(result, truth):
    return (pp.SE3(result.values[0][:, 0]).Inv() * truth).Log().norm(dim=-1)  # (B,), differentiable


def main(out: pathlib.Path, steps: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    T_train, p, q, score, outlier = make_problems(24, 40, seed=0)
    T_test, p_t, q_t, score_t, outlier_t = make_problems(24, 40, seed=1)
    ab = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # w = sigmoid(a score + b): all 0.5 at first
    opt = torch.optim.Adam([ab], lr=0.3)

    def weights(s):
        return torch.sigmoid(ab[0] * s + ab[1])

    with torch.no_grad():
        before = pose_error(solve_poses(p_t, q_t, weights(score_t)), T_test)
    losses = []
    for step in range(steps):
        opt.zero_grad()
        loss = pose_error(solve_poses(p, q, weights(score)), T_train).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        result = solve_poses(p_t, q_t, weights(score_t))
        after = pose_error(result, T_test)
    print(f"training loss (mean pose error, tangent norm): {losses[0]:.4f} -> {losses[-1]:.4f} in {steps} steps")
    print(f"held-out problems: mean error {float(before.mean()):.4f} -> {float(after.mean()):.4f}; "
          f"learned a = {float(ab[0].detach()):.2f}, b = {float(ab[1].detach()):.2f}; all converged: {bool(result.converged.all())}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(losses, color="#3b5b92")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("mean pose error")
    axes[0].set_title("loss on the solver's answer")
    s = torch.linspace(-1.5, 2.5, 200, dtype=torch.float64)
    with torch.no_grad():
        axes[1].plot(s.numpy(), weights(s).numpy(), color="#d62728", label="learned weight")
    axes[1].hist([score_t[~outlier_t].numpy(), score_t[outlier_t].numpy()], bins=30, density=True,
                 label=["right matches", "wrong matches"], color=["#7fb77e", "#c0c0c0"], alpha=0.8)
    axes[1].set_xlabel("matcher score")
    axes[1].set_title("weight learned over the scores")
    axes[1].legend(fontsize=8)
    axes[2].bar(torch.arange(24).numpy() - 0.2, before.numpy(), width=0.4, label="equal weights", color="#c0c0c0")
    axes[2].bar(torch.arange(24).numpy() + 0.2, after.numpy(), width=0.4, label="learned weights", color="#3b5b92")
    axes[2].set_xlabel("held-out problem")
    axes[2].set_ylabel("pose error")
    axes[2].set_title("before and after training")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learned_weights.png", dpi=90)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/learn"))
    p.add_argument("--steps", type=int, default=40)
    a = p.parse_args()
    main(a.out, a.steps)
