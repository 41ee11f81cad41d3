"""Batched forward kinematics and Jacobians of the Panda (7 DoF, base to hand), side by side.

robojac vs pytorch_kinematics (same configurations, same dtype, same run) and Pinocchio called
from Python per configuration.  Prints configurations per second and ratios (median times).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/kinematics.py [--batches 1 1000 100000] [--dtypes float32 float64]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, median_time, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

DEFAULT_URDF = data.path("robots/panda.urdf")


def _pk_chain(urdf: pathlib.Path, tip: str, dtype):
    import logging

    logging.disable(logging.WARNING)
    import pytorch_kinematics as pk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pk.build_serial_chain_from_urdf(urdf.read_bytes(), tip).to(dtype=dtype)


def _pinocchio(urdf: pathlib.Path, tip: str):
    try:
        import pinocchio as pin
    except ImportError:
        return None
    model = pin.buildModelFromUrdf(str(urdf))
    data = model.createData()
    fid = model.getFrameId(tip)
    return pin, model, data, fid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urdf", type=pathlib.Path, default=DEFAULT_URDF)
    ap.add_argument("--tip", default="panda_hand")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 1000, 100000])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    args = ap.parse_args()
    print(f"# Panda FK and Jacobian ({args.urdf.name}, base to {args.tip}); {describe_machine()}")
    chain = Chain.from_urdf(args.urdf, tip=args.tip)
    pin = _pinocchio(args.urdf, args.tip)
    rows = []
    for dname in args.dtypes:
        dtype = getattr(torch, dname)
        pkc = _pk_chain(args.urdf, args.tip, dtype)
        for B in args.batches:
            q = chain.random_configuration(B, dtype=dtype, generator=torch.Generator().manual_seed(B))
            reps = 200 if B == 1 else (30 if B <= 1000 else 9)
            fk = median_time(lambda: chain.forward_kinematics(q), repeat=reps)
            jac = median_time(lambda: chain.jacobian(q), repeat=reps)
            pk_reps = max(3, reps // 4)
            pk_fk = median_time(lambda: pkc.forward_kinematics(q, end_only=False), repeat=pk_reps, budget_s=30)
            pk_jac = median_time(lambda: pkc.jacobian(q), repeat=pk_reps, budget_s=30)
            # agreement, so the speed numbers compare the same thing (pytorch_kinematics builds its
            # constants in float32 even for a float64 chain: about 2e-8 apart from Pinocchio and us)
            ours = chain.jacobian(q[:64])
            theirs = pkc.jacobian(q[:64])
            assert float((ours - theirs).abs().max()) < 1e-5, "Jacobians disagree"
            rows.append([dname, f"{B:,}", "FK (all frames)", fmt_time(fk), f"{B / fk / 1e6:.3f}", fmt_time(pk_fk),
                         f"{B / pk_fk / 1e6:.3f}", f"{pk_fk / fk:.1f}x"])
            rows.append([dname, f"{B:,}", "Jacobian", fmt_time(jac), f"{B / jac / 1e6:.3f}", fmt_time(pk_jac),
                         f"{B / pk_jac / 1e6:.3f}", f"{pk_jac / jac:.1f}x"])
    print()
    print(table(["dtype", "batch", "what", "robojac", "robojac M/s", "pytorch_kinematics", "pk M/s", "speed-up"], rows))
    if pin is not None:
        p, model, data, fid = pin
        import time

        import numpy as np

        qs = chain.random_configuration(20000, generator=torch.Generator().manual_seed(7)).numpy()
        qs = np.concatenate((qs, np.zeros((len(qs), model.nq - qs.shape[1]))), 1)  # Pinocchio's model keeps the fingers

        t0 = time.perf_counter()
        for x in qs:
            p.framesForwardKinematics(model, data, x)
        t_fk = (time.perf_counter() - t0) / len(qs)
        t0 = time.perf_counter()
        for x in qs:
            p.computeFrameJacobian(model, data, x, fid, p.LOCAL_WORLD_ALIGNED)
        t_j = (time.perf_counter() - t0) / len(qs)
        print(f"\nPinocchio {p.__version__} from Python, one configuration per call (float64): "
              f"FK of all frames {t_fk * 1e6:.1f} us ({1 / t_fk / 1e6:.3f} M/s), frame Jacobian {t_j * 1e6:.1f} us "
              f"({1 / t_j / 1e6:.3f} M/s).  (Its C++ loop on one core, measured by the issue: 2.4 M FK/s, 1.9 M J/s.)")


if __name__ == "__main__":
    main()
