"""Inverse kinematics on real arms: robojac vs pytorch_kinematics on the same targets, same run.

The issue's protocol: targets are the forward kinematics of random configurations inside the
joint limits; solvers start from random configurations; success = position error < 1 mm and
rotation error < 0.01 rad and inside the limits, re-checked independently in float64 by
Pinocchio (by robojac's own float64 kinematics when Pinocchio is absent).  pytorch_kinematics
runs ``PseudoInverseIK`` with its defaults (10 random retries, its joint limits, and the
protocol's tolerances: 1 mm, 0.01 rad).  robojac runs at the same tolerances, then at its own
defaults (10x tighter: 0.1 mm, 0.001 rad) for reference.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ik.py [--n 10000] [--pk-n 1000] [--single 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, table  # noqa: E402

from robojac import data, ik  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

ROBOTS = data.path("robots")
# the protocol's success thresholds, which are also pytorch_kinematics' default tolerances
PROTOCOL = ik.IKConfig(position_tolerance=1e-3, orientation_tolerance=1e-2)
ARMS = [("panda.urdf", "panda_hand"), ("kuka_iiwa14.urdf", "lbr_iiwa_link_7"), ("ur5.urdf", "ee_link")]


class Checker:
    """Position and rotation errors of joint values against target matrices, in float64."""

    def __init__(self, urdf: pathlib.Path, tip: str, chain: Chain):
        self.chain, self.tip = chain, tip
        try:
            import pinocchio as pin

            self.pin, self.model = pin, pin.buildModelFromUrdf(str(urdf))
            self.data, self.fid = self.model.createData(), self.model.getFrameId(tip)
            self.name = "Pinocchio"
        except ImportError:
            self.pin, self.name = None, "robojac float64"

    def success(self, q: torch.Tensor, T: np.ndarray) -> np.ndarray:
        q = q.detach().double().cpu()
        inside = self.chain.within_limits(q).numpy()
        if self.pin is None:
            X = self.chain.forward_kinematics(q, self.tip).matrix().numpy()
            pos = np.linalg.norm(X[:, :3, 3] - T[:, :3, 3], axis=-1)
            rot = np.array([_angle(a[:3, :3].T @ b[:3, :3]) for a, b in zip(T, X)])
        else:
            pos, rot = np.empty(len(q)), np.empty(len(q))
            for i, qi in enumerate(q.numpy()):
                qp = self.pin.neutral(self.model)
                qp[: len(qi)] = qi
                self.pin.framesForwardKinematics(self.model, self.data, qp)
                M = self.data.oMf[self.fid]
                pos[i] = np.linalg.norm(M.translation - T[i, :3, 3])
                rot[i] = np.linalg.norm(self.pin.log3(T[i, :3, :3].T @ M.rotation))
        return (pos < 1e-3) & (rot < 1e-2) & inside


def _angle(R: np.ndarray) -> float:
    """Rotation angle of a rotation matrix."""
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))


def _pk_solver(urdf: pathlib.Path, tip: str, dtype):
    logging.disable(logging.WARNING)
    import pytorch_kinematics as pk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chain = pk.build_serial_chain_from_urdf(urdf.read_bytes(), tip).to(dtype=dtype)
    limits = torch.tensor(chain.get_joint_limits(), dtype=dtype).T
    solver = pk.PseudoInverseIK(chain, num_retries=10, joint_limits=limits)
    return pk, solver


def _pk_pick(sol) -> torch.Tensor:
    """Per problem: the first converged retry, else the one with the smallest error."""
    err = sol.err_pos + sol.err_rot
    score = torch.where(sol.converged, torch.zeros_like(err), 1.0 + err)
    k = score.argmin(1)
    return sol.solutions[torch.arange(len(k)), k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robots", type=pathlib.Path, default=ROBOTS)
    ap.add_argument("--n", type=int, default=10000, help="targets per robot for robojac's batch")
    ap.add_argument("--pk-n", type=int, default=1000, help="targets per robot for pytorch_kinematics' batch")
    ap.add_argument("--single", type=int, default=200, help="targets solved one at a time (latency)")
    ap.add_argument("--repeat", type=int, default=3, help="batch runs per solver (median)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--no-peer", action="store_true", help="skip pytorch_kinematics")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"# IK, {args.n} targets per robot ({args.dtype}); {describe_machine()}")
    rows = []
    for urdf_name, tip in ARMS:
        urdf = args.robots / urdf_name
        chain = Chain.from_urdf(urdf, tip=tip)
        check = Checker(urdf, tip, chain)
        q_true = chain.random_configuration(args.n, generator=torch.Generator().manual_seed(2026))
        X = chain.forward_kinematics(q_true, tip)
        T = X.matrix().numpy()
        target = X.to(dtype)
        singles = [X[i] for i in range(args.single)]  # indexing a LieTensor (~30 us) is not the solve's
        row, batch_time = [chain.name.split(":")[0]], {}
        for label, config in (("protocol tolerances", PROTOCOL), ("default tolerances", ik.IKConfig())):
            ik.solve(chain, target[:256], config=config)  # warm-up: compile paths, allocate
            times, res = [], None
            for r in range(args.repeat):
                t0 = time.perf_counter()
                res = ik.solve(chain, target, config=dataclasses.replace(config, seed=r))
                times.append(time.perf_counter() - t0)
            batch_time[label] = t_cfg = statistics.median(times)
            ok_rj = check.success(res.q, T)
            lat = []
            for single in singles:
                t0 = time.perf_counter()
                ik.solve(chain, single, config=config)
                lat.append(time.perf_counter() - t0)
            row += [f"{ok_rj.mean() * 100:.2f}%", f"{args.n / t_cfg:,.0f}/s", fmt_time(statistics.median(lat))]
            print(f"{urdf_name}: robojac ({label}) {ok_rj.mean() * 100:.2f}% ({check.name}), {args.n / t_cfg:,.0f} "
                  f"targets/s, single {fmt_time(statistics.median(lat))} median, {fmt_time(statistics.mean(lat))} mean",
                  flush=True)
        t_rj = batch_time["protocol tolerances"]  # the comparison with pytorch_kinematics: same tolerances
        if not args.no_peer:
            pk, solver = _pk_solver(urdf, tip, dtype)
            n = min(args.pk_n, args.n)
            goal = pk.Transform3d(matrix=torch.from_numpy(T[:n]).to(dtype))
            t_pk = []
            for r in range(args.repeat):
                t0 = time.perf_counter()
                sol = solver.solve(goal)
                t_pk.append(time.perf_counter() - t0)
            t_pk = statistics.median(t_pk)
            ok_pk = check.success(_pk_pick(sol), T[:n])
            lat_pk = []
            for i in range(min(20, args.single)):
                g = pk.Transform3d(matrix=torch.from_numpy(T[i : i + 1]).to(dtype))
                t0 = time.perf_counter()
                solver.solve(g)
                lat_pk.append(time.perf_counter() - t0)
            ratio = (t_pk / n) / (t_rj / args.n)
            row += [f"{ok_pk.mean() * 100:.1f}%", fmt_time(t_pk / n * 1000), fmt_time(statistics.median(lat_pk)),
                    f"{ratio:.0f}x"]
            print(f"  pytorch_kinematics: {ok_pk.mean() * 100:.1f}% of {n}, {fmt_time(t_pk)} for the batch, single "
                  f"{fmt_time(statistics.median(lat_pk))}; robojac {ratio:.0f}x faster per target", flush=True)
        rows.append(row)
    headers = ["robot", "robojac success", "robojac rate", "robojac single",
               "at defaults: success", "rate", "single"]
    if not args.no_peer:
        headers += ["pk success", "pk per 1000", "pk single", "speed-up"]
    print()
    print(table(headers, rows))


if __name__ == "__main__":
    main()
