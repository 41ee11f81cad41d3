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

Holding the centre of mass at one point moves the body more than balance needs.  The third answer
keeps it anywhere inside the support polygon, 3 cm from its edges (``ik.BalanceConstraint``, an
inequality constraint of the engine), with the soles and hands as equality constraints
(``ik.FramesTask``), and otherwise stays as near the standing posture as it can
(``ik.PostureTask``): ``ik.solve_balanced`` in one call.  Near reaches leave the constraint
slack, far ones stop at its margin.

The support polygon is drawn from an assumed sole of 0.20 m by 0.10 m about each sole frame
(TALOS' URDF names its feet's meshes but they are not shipped here).

Writes ``balance.png`` (the farthest reach: IK alone, the centre of mass held over the middle of
the feet, and kept inside the polygon; side view, the centre of mass dropped to the ground) and
``balance_sweep.png`` (the centre of mass's x over the reach).

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
MARGIN = 0.03  # the centre of mass kept this far inside the support polygon's edges (m)


def support_polygon(soles: torch.Tensor) -> torch.Tensor:
    """``(V, 2)``: the convex hull of both soles' rectangles on the ground, counter-clockwise."""
    L, W = SOLE[0] / 2, SOLE[1] / 2
    corners = torch.tensor([[L, W, 0.0], [-L, W, 0.0], [-L, -W, 0.0], [L, -W, 0.0]], dtype=soles.dtype)
    return ik.support_polygon(lie.se3_act(soles[:, None, :], corners[None]).reshape(-1, 3))


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

    # nearest the standing posture (the pelvis' place free), soles and hands on their targets,
    # the centre of mass kept anywhere inside the polygon, MARGIN from its edges: one call
    inside = ik.solve_balanced(talos, targets, polygon, posture=standing, config=ik.BalanceConfig(margin=MARGIN))

    # the same posture cost and frames (as equality constraints, on the engine), with the centre
    # of mass held over the middle of the feet by an equality instead
    free = torch.ones(talos.dof, dtype=torch.float64)
    free[:3] = 0.0
    q_mid = optim.Variable("Rn", plain.q[:, None].clone(), lower=lo, upper=hi, name="q")
    posture = optim.Factor(ik.PostureTask(talos, weights=free), [q_mid], data=(standing.expand(B, 1, -1),),
                           name="posture")
    frames_eq = optim.Constraint(frames.residual, [q_mid], data=(T[:, None],), kind="eq", name="soles and hands")
    over_middle = optim.Constraint(ik.CenterOfMassTask(talos, "xy"), [q_mid], data=(middle.expand(B, 1, 2),),
                                   kind="eq", name="centre of mass")
    held = optim.solve([q_mid], [posture], constraints=[frames_eq, over_middle])

    answers = {"IK alone": plain.q, "balanced (a task)": q_bal, "held over the middle": held.values[0][:, 0].detach(),
               "inside the polygon": inside.q}
    com = {k: talos.center_of_mass(v) for k, v in answers.items()}
    err = []
    for k in list(answers)[1:]:
        Xk = talos.forward_kinematics_tensor(answers[k], FEET + HANDS)
        err.append(torch.maximum((Xk[:, 2:, :3] - hand_targets).norm(dim=-1).amax(-1),
                                 (Xk[:, :2, :3] - soles[:, :3]).norm(dim=-1).amax(-1)))
    err = torch.stack(err).amax(0)
    moved = {k: (answers[k][:, 6:] - standing[6:]).norm(dim=-1) for k in answers}  # the joints, not the pelvis
    print(f"{'reach':>7s}  {'com x: IK alone':>16s}  {'a task':>8s}  {'inside':>8s}  {'pelvis x (task)':>15s}  "
          f"{'joints moved: held over the middle':>35s}  {'inside':>7s}  {'frames off':>10s}")
    for k in range(B):
        print(f"{float(reach[k]):6.2f} m  {float(com['IK alone'][k, 0]):+14.3f} m  "
              f"{float(com['balanced (a task)'][k, 0]):+6.3f} m  {float(com['inside the polygon'][k, 0]):+6.3f} m  "
              f"{float(q_bal[k, 0]):+13.3f} m  {float(moved['held over the middle'][k]):31.3f} rad  "
              f"{float(moved['inside the polygon'][k]):5.3f} rad  {float(err[k]):8.1e} m")
    tipping = int((com["IK alone"][:, 0] > front).sum())
    slack = int((com["inside the polygon"][:, 0] < front - MARGIN - 1e-6).sum())
    ok = bool(plain.converged.all() and balanced.converged.all() and held.converged.all() and inside.converged.all()
              and float(err.max()) < 1e-6 and float(com["inside the polygon"][:, 0].max()) <= front - MARGIN + 1e-8)
    print(f"IK alone: {tipping} of {B} reaches put the centre of mass in front of the toes.  Balanced by a task: "
          f"within {float((com['balanced (a task)'][:, :2] - middle).norm(dim=-1).max()):.1e} m of the middle of the "
          f"feet, {int(balanced.iterations.max())} iterations at most.  Nearest standing, inside the polygon: "
          f"{slack} of {B} reaches leave the constraint slack, the others stop {MARGIN * 100:.0f} cm behind the toes, "
          f"moving the joints {float((moved['inside the polygon'] / moved['held over the middle']).mean()):.2f}x as "
          f"much as holding the centre of mass over the middle; converged {int(inside.converged.sum())} and "
          f"{int(held.converged.sum())} of {B}, {int(inside.iterations.max())} and {int(held.iterations.max())} "
          "iterations at most")

    fig = plt.figure(figsize=(15, 6))
    titles = {"IK alone": "IK alone: hands and soles placed",
              "held over the middle": "nearest standing, the centre of mass over the middle",
              "inside the polygon": f"nearest standing, inside the polygon ({MARGIN * 100:.0f} cm margin)"}
    for i, name in enumerate(titles):
        qs = answers[name]
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        P = torch.cat((polygon, polygon[:1])).numpy()
        ax.plot(P[:, 0], P[:, 1], 0 * P[:, 0], color="#2ca02c", lw=2, label="support polygon")
        viz.plot_arm(talos, qs[-1], ax, frame=HANDS + FEET, target=hand_targets[-1], axis_length=0.08,
                     center_of_mass=True)
        c = com[name][-1]
        where = "over the feet" if float(c[0]) <= front else "in front of the toes"
        ax.set_title(f"{titles[name]}\ncentre of mass at x = {float(c[0]):+.2f} m ({where})\n"
                     f"joints moved {float(moved[name][-1]):.2f} rad from standing", fontsize=10)
        ax.view_init(elev=6, azim=-72)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"TALOS reaching {float(reach[-1]):.2f} m forward, both soles on the ground")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(args.out / "balance.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.axhspan(float(polygon[:, 0].min()), front, color="#2ca02c", alpha=0.15, label="the soles (support polygon)")
    ax.axhline(front - MARGIN, color="#2ca02c", lw=1, ls=":", label=f"{MARGIN * 100:.0f} cm inside the toes")
    ax.plot(reach.numpy(), com["IK alone"][:, 0].numpy(), "o-", color="#d62728", label="IK alone")
    ax.plot(reach.numpy(), com["balanced (a task)"][:, 0].numpy(), "s-", color="#1f77b4",
            label="held over the middle (a centre-of-mass task or constraint)")
    ax.plot(reach.numpy(), com["inside the polygon"][:, 0].numpy(), "^-", color="#9467bd",
            label="inside the polygon (balance constraint)")
    ax.set_xlabel("hands' reach forward [m]")
    ax.set_ylabel("centre of mass x [m]")
    ax.set_title("Centre of mass over the reach")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "balance_sweep.png", dpi=100)
    plt.close(fig)
    print(f"wrote {args.out / 'balance.png'} and {args.out / 'balance_sweep.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
