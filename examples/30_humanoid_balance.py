"""A humanoid that reaches without falling: a centre-of-mass task beside IK's frames, on the solver engine.

TALOS on a floating base (``Chain.with_floating_base``: its pelvis free to move) stands with
both soles on the ground and reaches with both hands to a point in front of it.  ``ik.solve``
places the soles and the hands exactly, and leaves the centre of mass wherever that puts it: for
a far reach, in front of the toes, where the robot would tip over.  The balanced answer solves
two tasks on ``robojac.optim``: the same frames (``ik.FramesTask``) and the centre of mass's
ground point over the middle of the feet (``ik.CenterOfMassTask``), each with its Jacobian in
closed form.  The hips move back while the hands still reach.  Every reach distance is one
problem of one batch.  The same residuals written as plain functions, which the engine
differentiates through the Jacobian core, reach the same tasks about 5x slower.

The support polygon is drawn from an assumed sole of 0.20 m by 0.10 m about each sole frame
(TALOS' URDF names its feet's meshes but they are not shipped here).

Writes ``balance.png`` (the farthest reach: IK alone against balanced, side view, the centre of
mass dropped to the ground) and ``balance_sweep.png`` (the centre of mass's x over the reach).

    python examples/30_humanoid_balance.py --out out/balance
"""

import argparse
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, ik, lie, optim, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

FEET = ["left_sole_link", "right_sole_link"]
HANDS = ["gripper_left_base_link", "gripper_right_base_link"]
SOLE = (0.20, 0.10)  # an assumed sole, length by width (m), centred on each sole frame


def support_polygon(soles: torch.Tensor) -> torch.Tensor:
    """``(N, 2)``: the convex hull of both soles' rectangles on the ground (a closed loop)."""
    L, W = SOLE[0] / 2, SOLE[1] / 2
    corners = torch.tensor([[L, W, 0.0], [-L, W, 0.0], [-L, -W, 0.0], [L, -W, 0.0]], dtype=soles.dtype)
    pts = lie.se3_act(soles[:, None, :], corners[None]).reshape(-1, 3)[:, :2]
    hull = [int(pts[:, 0].argmin())]  # gift wrapping: 8 points
    while True:
        p = hull[-1]
        cand = (p + 1) % len(pts)
        for k in range(len(pts)):
            a, b = pts[cand] - pts[p], pts[k] - pts[p]
            if a[0] * b[1] - a[1] * b[0] < 0:
                cand = k
        if cand == hull[0]:
            break
        hull.append(cand)
    return pts[hull + hull[:1]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/balance"), help="folder for the pictures")
    ap.add_argument("--reaches", type=int, default=8, help="reach distances from 0.1 to 0.6 m")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    talos = Chain.from_urdf(data.path("robots/talos_reduced.urdf")).with_floating_base()
    standing = torch.zeros(talos.dof, dtype=torch.float64)
    X = talos.forward_kinematics_tensor(standing, FEET + HANDS)
    standing[2] = -float(X[0, 2])  # the pelvis raised until the soles touch the ground, z = 0
    X = talos.forward_kinematics_tensor(standing, FEET + HANDS)
    soles, hands = X[:2], X[2:, :3]
    middle = soles[:, :2].mean(0)
    polygon = support_polygon(soles)
    front = float(polygon[:, 0].max())
    print(f"TALOS on a floating base: {talos.dof} joints, {talos.mass:.1f} kg; standing, the centre of mass is at "
          f"x = {float(talos.center_of_mass(standing)[0]):+.3f} m; the soles reach to x = {front:+.3f} m")

    reach = torch.linspace(0.1, 0.6, args.reaches, dtype=torch.float64)
    B = len(reach)
    hand_targets = hands.expand(B, 2, 3).clone()
    hand_targets[..., 0] += reach[:, None]
    targets = {FEET[0]: soles[0].expand(B, 7), FEET[1]: soles[1].expand(B, 7),
               HANDS[0]: hand_targets[:, 0], HANDS[1]: hand_targets[:, 1]}
    plain = ik.solve(talos, targets, q0=standing.expand(B, -1))

    lo, hi = talos.joint_limits
    q = optim.Variable("Rn", plain.q[:, None].clone(), lower=lo, upper=hi, name="q")  # IK's answers as the starts
    T = torch.cat((soles.expand(B, 2, 7), torch.cat((hand_targets, soles[:1, 3:].expand(B, 2, 4)), -1)), 1)
    frames = optim.Factor(ik.FramesTask(talos, FEET + HANDS, position_only=[False, False, True, True]), [q],
                          data=(T[:, None],), name="soles and hands")
    balance = optim.Factor(ik.CenterOfMassTask(talos, "xy"), [q], data=(middle.expand(B, 1, 2),),
                           name="centre of mass")
    config = optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=400))
    balanced = optim.solve([q], [frames, balance], config)
    q_bal = balanced.values[0][:, 0].detach()

    c_plain, c_bal = talos.center_of_mass(plain.q), talos.center_of_mass(q_bal)
    Xb = talos.forward_kinematics_tensor(q_bal, FEET + HANDS)
    hand_err = (Xb[:, 2:, :3] - hand_targets).norm(dim=-1).max(-1).values
    sole_err = (Xb[:, :2, :3] - soles[:, :3]).norm(dim=-1).max(-1).values
    print(f"{'reach':>7s}  {'IK alone: com x':>16s}  {'balanced: com x':>16s}  {'pelvis x':>9s}  "
          f"{'hands off':>10s}  {'soles off':>10s}")
    for k in range(B):
        print(f"{float(reach[k]):6.2f} m  {float(c_plain[k, 0]):+14.3f} m  {float(c_bal[k, 0]):+14.3f} m  "
              f"{float(q_bal[k, 0]):+7.3f} m  {float(hand_err[k]):8.1e} m  {float(sole_err[k]):8.1e} m")
    tipping = int((c_plain[:, 0] > front).sum())
    ok = bool(plain.converged.all() and balanced.converged.all() and hand_err.max() < 1e-6 and sole_err.max() < 1e-6)
    print(f"IK alone: {tipping} of {B} reaches put the centre of mass in front of the toes; balanced: the centre of "
          f"mass within {float((c_bal[:, :2] - middle).norm(dim=-1).max()):.1e} m of the middle of the feet, "
          f"converged {balanced.converged.tolist()}, {balanced.iterations.max()} iterations at most")

    fig = plt.figure(figsize=(12, 6))
    for i, (title, qk) in enumerate((("IK alone: hands and soles placed", plain.q[-1]),
                                     ("balanced: + the centre of mass over the feet", q_bal[-1]))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        P = polygon.numpy()
        ax.plot(P[:, 0], P[:, 1], 0 * P[:, 0], color="#2ca02c", lw=2, label="support polygon")
        viz.plot_arm(talos, qk, ax, frame=HANDS + FEET, target=hand_targets[-1], axis_length=0.08, center_of_mass=True)
        c = talos.center_of_mass(qk)
        where = "over the feet" if float(c[0]) <= front else "in front of the toes"
        ax.set_title(f"{title}\ncentre of mass at x = {float(c[0]):+.2f} m ({where})", fontsize=10)
        ax.view_init(elev=6, azim=-72)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"TALOS reaching {float(reach[-1]):.2f} m forward, both soles on the ground")
    fig.tight_layout()
    fig.savefig(args.out / "balance.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.axhspan(float(polygon[:, 0].min()), front, color="#2ca02c", alpha=0.15, label="the soles (support polygon)")
    ax.plot(reach.numpy(), c_plain[:, 0].numpy(), "o-", color="#d62728", label="IK alone")
    ax.plot(reach.numpy(), c_bal[:, 0].numpy(), "s-", color="#1f77b4", label="balanced (centre-of-mass task)")
    ax.plot(reach.numpy(), q_bal[:, 0].numpy(), "--", color="#1f77b4", alpha=0.6, label="balanced: pelvis x")
    ax.set_xlabel("hands' reach forward [m]")
    ax.set_ylabel("x [m]")
    ax.set_title("Centre of mass over the reach")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "balance_sweep.png", dpi=100)
    plt.close(fig)
    print(f"wrote {args.out / 'balance.png'} and {args.out / 'balance_sweep.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
