"""The centre of mass and its Jacobian, side by side with Pinocchio.

robojac's ``Chain.center_of_mass_and_jacobian`` on a batch of configurations against
Pinocchio's ``jacobianCenterOfMass`` (which computes the centre of mass too), called per
configuration from Python (as a batched user calls it), on TALOS (32 joints, 60 links, fixed
at the pelvis) and the Panda; robojac in float64 and float32, Pinocchio in float64.  The
answers are compared first (Pinocchio's with the root link's mass added back: its fixed-base
``centerOfMass`` leaves that link out).  Medians; ratios are robojac's time over
the peer's (below 1: robojac is faster).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/center_of_mass.py [--batches 1 1000 100000]
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import batch_arguments, describe_machine, fmt_time, median_time, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

ROBOTS = {"TALOS (32 joints)": "talos_reduced.urdf", "Panda (7 + 1 joints)": "panda.urdf"}
PER_CALL = 2000  # configurations a per-configuration peer is timed on (scaled to the batch)


def _pinocchio(pin, chain: Chain, path: pathlib.Path, q: np.ndarray):
    """``(run(n), (com, J) of q[0] with the root link counted)``: Pinocchio per configuration."""
    model = pin.buildModelFromUrdf(str(path))
    mdata = model.createData()
    qp = np.zeros((len(q), model.nq))
    for k in range(len(q)):
        for name, v in zip(chain.joint_names, q[k]):
            j = model.joints[model.getJointId(name)]
            qp[k, j.idx_q] = v
        for m, (src, mult, off) in chain.tree.mimic.items():
            qp[k, model.joints[model.getJointId(m)].idx_q] = mult * q[k, chain.joint_names.index(src)] + off

    def run(n: int) -> None:
        for k in range(n):
            pin.jacobianCenterOfMass(model, mdata, qp[k])  # computes the centre of mass too (data.com[0])

    c = pin.centerOfMass(model, mdata, qp[0])
    J = pin.jacobianCenterOfMass(model, mdata, qp[0])
    moving, root = mdata.mass[0], model.inertias[0]
    total = moving + root.mass
    cols = [model.joints[model.getJointId(n)].idx_v for n in chain.joint_names]
    Jq = J[:, cols].copy()
    for m, (src, mult, _) in chain.tree.mimic.items():
        Jq[:, chain.joint_names.index(src)] += mult * J[:, model.joints[model.getJointId(m)].idx_v]
    return run, ((moving * c + root.mass * root.lever) / total, Jq * moving / total)


def main() -> None:
    args = batch_arguments(__doc__)
    try:
        import pinocchio as pin
    except ImportError:
        pin = None
    print(f"# centre of mass and its Jacobian; {describe_machine()}")
    print(f"# Pinocchio: {pin.__version__ if pin else 'not installed'}")
    rows = []
    for label, urdf in ROBOTS.items():
        path = data.path(f"robots/{urdf}")
        chain = Chain.from_urdf(path)
        q_all = chain.random_configuration(max(args.batches), generator=torch.Generator().manual_seed(0))
        if pin is not None:
            run, (c_ref, J_ref) = _pinocchio(pin, chain, path, q_all[:PER_CALL].numpy())
            c, J = chain.center_of_mass_and_jacobian(q_all[0])
            err = max(np.abs(c.numpy() - c_ref).max(), np.abs(J.numpy() - J_ref).max())
            print(f"# {label}: mass {chain.mass:.3f} kg; robojac vs Pinocchio at one configuration: "
                  f"max difference {err:.1e}")
            n = min(PER_CALL, len(q_all))
            per_config = median_time(lambda: run(n), repeat=max(3, args.repeats // 3)) / n
        for dtype in args.dtypes:
            for B in args.batches:
                q = q_all[:B].to(getattr(torch, dtype))
                ours = median_time(lambda: chain.center_of_mass_and_jacobian(q), repeat=args.repeats)
                row = [label, dtype, f"{B:,}", fmt_time(ours), f"{B / ours / 1e6:.3f}"]
                if pin is not None:
                    theirs = per_config * B
                    row += [fmt_time(theirs), f"{1 / per_config / 1e6:.3f}", f"{ours / theirs:.2f}x"]
                rows.append(row)
    print(table(["robot", "robojac dtype", "batch", "robojac", "robojac M/s", "Pinocchio (per call)", "Pinocchio M/s",
                 "robojac / Pinocchio"], rows))


if __name__ == "__main__":
    main()
