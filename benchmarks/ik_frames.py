"""IK of several frames at once: TALOS's two hands and two feet, robojac against a Pinocchio loop.

Targets: the poses of the four frames at random configurations inside the limits (reachable
together).  Success: every frame within 1 mm and 0.01 rad (the single-frame protocol of
``benchmarks/ik.py``) and the joints inside their limits, re-checked by Pinocchio in float64.
robojac runs ``ik.solve(talos, {frame: target, ...})`` at those tolerances: once over the whole
batch (float64 and float32), and target by target (the latency of one).

The peer: Pinocchio ships no IK solver of several frames; its documented closed-loop IK example
(damped least squares, ``J^T (J J^T + lambda I)^-1 e``) is one frame's.  This runs that loop
with the four frames' errors and Jacobians stacked, in float64, from Python (the example's own
form: one ``computeJointJacobians`` and four ``getFrameJacobian`` per step), full steps clamped
into the limits, up to 100 steps per start and up to 8 random starts per target.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ik_frames.py [--n 200] [--single 20]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, table  # noqa: E402

from robojac import data, ik, lie  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

URDF = data.path("robots/talos_reduced.urdf")
FRAMES = ["gripper_left_base_link", "gripper_right_base_link", "left_sole_link", "right_sole_link"]
CONFIG = ik.IKConfig(position_tolerance=1e-3, orientation_tolerance=1e-2)


class Pinocchio:
    """The model, the success check, and the stacked damped-least-squares loop."""

    def __init__(self, chain: Chain):
        import pinocchio as pin

        self.pin, self.chain = pin, chain
        self.model = pin.buildModelFromUrdf(str(URDF))
        self.data = self.model.createData()
        self.fids = [self.model.getFrameId(f) for f in FRAMES]
        self.lo, self.hi = self.model.lowerPositionLimit.copy(), self.model.upperPositionLimit.copy()
        # robojac's joints by name in Pinocchio's q (TALOS's are all one-variable joints)
        self.idx = [self.model.joints[self.model.getJointId(n)].idx_q for n in chain.joint_names]
        self.mimic = [(self.model.joints[self.model.getJointId(m)].idx_q, chain.joint_names.index(src), mult, off)
                      for m, (src, mult, off) in chain.tree.mimic.items()]

    def q_of(self, q: np.ndarray) -> np.ndarray:
        qp = self.pin.neutral(self.model)
        qp[self.idx] = q
        for i, src, mult, off in self.mimic:
            qp[i] = mult * q[src] + off
        return qp

    def errors(self, qp: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(stacked error (6K,), position errors (K,), rotation errors (K,))``: ``[p* - p; log(R* R^T)]``."""
        self.pin.framesForwardKinematics(self.model, self.data, qp)
        e = []
        for fid, Tk in zip(self.fids, T):
            M = self.data.oMf[fid]
            e.append(np.r_[Tk[:3, 3] - M.translation, self.pin.log3(Tk[:3, :3] @ M.rotation.T)])
        e = np.stack(e)
        return e.reshape(-1), np.linalg.norm(e[:, :3], axis=1), np.linalg.norm(e[:, 3:], axis=1)

    def success(self, q: torch.Tensor, T: np.ndarray) -> np.ndarray:
        q = q.detach().double().cpu()
        inside = self.chain.within_limits(q).numpy()
        ok = [(pe < 1e-3).all() and (re < 1e-2).all()
              for pe, re in (self.errors(self.q_of(qb), Tb)[1:] for qb, Tb in zip(q.numpy(), T))]
        return inside & np.array(ok)

    def solve(self, T: np.ndarray, rng: np.random.Generator, damping: float = 1e-6) -> bool:
        pin, model, data = self.pin, self.model, self.data
        for _ in range(8):
            qp = self.q_of(rng.uniform(self.lo[self.idx], self.hi[self.idx]))
            for _ in range(100):
                e, pe, re = self.errors(qp, T)
                if (pe < 1e-3).all() and (re < 1e-2).all():
                    return True
                pin.computeJointJacobians(model, data, qp)
                J = np.concatenate([pin.getFrameJacobian(model, data, fid, pin.LOCAL_WORLD_ALIGNED)
                                    for fid in self.fids])
                dq = J.T @ np.linalg.solve(J @ J.T + damping * np.eye(len(e)), e)
                qp = np.clip(pin.integrate(model, qp, dq), self.lo, self.hi)
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="targets (sets of four poses) in the batch")
    ap.add_argument("--single", type=int, default=20, help="targets solved one by one, for the latency")
    ap.add_argument("--pin-n", type=int, default=50, help="targets the Pinocchio loop solves (it is slow)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# TALOS: both hands and both feet at once; {describe_machine()}")
    chain = Chain.from_urdf(URDF)
    pin = Pinocchio(chain)
    # not seed 0: ik.solve's own random starts are drawn from seed 0 (IKConfig.seed), and a start
    # equal to the configuration a target came from would solve it in no steps
    q = chain.random_configuration(args.n, generator=torch.Generator().manual_seed(2026))
    X = chain.forward_kinematics_tensor(q, FRAMES)
    T = lie.se3_to_matrix(X).numpy()  # (n, K, 4, 4)
    rows = []
    for dtype in (torch.float64, torch.float32):
        targets = {f: X[:, k].to(dtype) for k, f in enumerate(FRAMES)}
        # warm: the start table, and (over 64 targets) its KD-tree, whose first use imports Open3D (~1.4 s)
        ik.solve(chain, {f: t[:100] for f, t in targets.items()}, config=CONFIG)
        t0 = time.perf_counter()
        r = ik.solve(chain, targets, config=CONFIG)
        el = time.perf_counter() - t0
        ok = pin.success(r.q, T)
        rows.append([f"robojac, batch of {args.n}, {str(dtype)[6:]}", f"{100 * ok.mean():.1f}%", "-",
                     fmt_time(el / args.n), f"{float(r.iterations.double().mean()):.1f}"])
    lone, ok, per_step, steps = [], [], [], []
    for b in range(args.single):
        t0 = time.perf_counter()
        r = ik.solve(chain, {f: X[b, k] for k, f in enumerate(FRAMES)}, config=CONFIG)
        lone.append(time.perf_counter() - t0)
        ok.append(pin.success(r.q[None], T[b : b + 1])[0])
        steps.append(int(r.iterations))
        if len(r.history) == 1 and int(r.iterations) > 0:  # one round: its restarts stepped together this often
            per_step.append(lone[-1] / int(r.iterations))
    rows.append(["robojac, one target at a time, float64", f"{100 * np.mean(ok):.1f}%",
                 fmt_time(statistics.median(lone)), fmt_time(statistics.mean(lone)), f"{np.mean(steps):.1f}"])
    if per_step:  # what a lone target's step of its 8 restarts costs, the driver's share included
        print(f"one target at a time: {fmt_time(statistics.median(per_step))} per step (median of the "
              f"{len(per_step)} targets solved in one round)")
    rng = np.random.default_rng(0)
    times, wins = [], []
    for b in range(min(args.pin_n, args.n)):
        t0 = time.perf_counter()
        wins.append(pin.solve(T[b], rng))
        times.append(time.perf_counter() - t0)
    rows.append([f"Pinocchio DLS loop (Python), {len(times)} targets", f"{100 * np.mean(wins):.1f}%",
                 fmt_time(statistics.median(times)), fmt_time(statistics.mean(times)), ""])
    print()
    head = ["solver", "success (Pinocchio's check)", "median per target", "mean per target", "steps (mean)"]
    print(table(head, rows))


if __name__ == "__main__":
    main()
