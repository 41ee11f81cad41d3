"""How close robojac's Lie-group closed forms come to the exact values, next to pypose's and GTSAM's.

Inputs: rotation angles from 1e-4 rad to 3 rad (log-spaced) and from 1e-9 to 0.1 rad short of a
half turn, random axes and translations (seeded), rounded to the dtype.  References are float64
evaluations of the definitions, with no closed form: the right Jacobian
``Jr(xi) = sum_k (-ad xi)^k / (k + 1)!`` as a block of the matrix exponential of
``[[-ad xi, I], [0, 0]]`` (its inverse taken in float64), and ``Exp`` as the matrix exponential of
the twist.  Each figure is the largest error over the inputs, relative to the reference's norm,
and in units of the dtype's rounding (eps).  GTSAM runs in float64 only.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/lie_precision.py
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import table  # noqa: E402

from robojac import lie  # noqa: E402


def inputs(dof: int, seed: int = 0) -> torch.Tensor:
    """Twists ``(N, dof)`` (``[rho, phi]`` for SE3, ``[vx, vy, w]`` for SE2) in float64."""
    gen = torch.Generator().manual_seed(seed)
    angles = torch.cat((torch.logspace(-4, math.log10(3.0), 160, dtype=torch.float64),
                        math.pi - torch.logspace(-9, -1, 40, dtype=torch.float64)))
    if dof == 3:
        signs = torch.where(torch.rand(len(angles), generator=gen) < 0.5, -1.0, 1.0).double()
        v = torch.randn(len(angles), 2, generator=gen, dtype=torch.float64)
        return torch.cat((v, (angles * signs)[:, None]), -1)
    axis = torch.randn(len(angles), 3, generator=gen, dtype=torch.float64)
    phi = axis / axis.norm(dim=-1, keepdim=True) * angles[:, None]
    return torch.cat((torch.randn(len(angles), 3, generator=gen, dtype=torch.float64), phi), -1)


def right_jacobian_inverse(xi: torch.Tensor) -> torch.Tensor:
    ad = lie.se3_ad(xi) if xi.shape[-1] == 6 else lie.se2_ad(xi)
    n = ad.shape[-1]
    big = torch.zeros(xi.shape[:-1] + (2 * n, 2 * n), dtype=torch.float64)
    big[..., :n, :n], big[..., :n, n:] = -ad, torch.eye(n, dtype=torch.float64)
    return torch.linalg.inv(torch.linalg.matrix_exp(big)[..., :n, n:])


def exp_matrix(xi: torch.Tensor) -> torch.Tensor:
    """Homogeneous matrices of SE3 ``[rho, phi]`` or SE2 ``[vx, vy, w]`` twists."""
    n = 4 if xi.shape[-1] == 6 else 3
    W = torch.zeros(xi.shape[:-1] + (n, n), dtype=torch.float64)
    if n == 4:
        W[..., :3, :3], W[..., :3, 3] = lie.skew(xi[..., 3:]), xi[..., :3]
    else:
        W[..., 0, 1], W[..., 1, 0], W[..., :2, 2] = -xi[..., 2], xi[..., 2], xi[..., :2]
    return torch.linalg.matrix_exp(W)


def relative(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a), dtype=torch.float64), torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return float(((a - b).flatten(1).norm(dim=-1) / b.flatten(1).norm(dim=-1)).max())


def measure(dtype: torch.dtype) -> dict[str, dict[str, float]]:
    """``{quantity: {library: largest relative error}}`` in ``dtype``."""
    import pypose as pp
    from pypose.lietensor import operation as pp_op

    out: dict[str, dict[str, float]] = {}
    xi = inputs(6).to(dtype).double()  # the same inputs for the dtype and the reference
    Jr = right_jacobian_inverse(xi)
    out["SE3 Jr^-1"] = {"robojac": relative(lie.se3_right_jacobian_inverse(xi.to(dtype)), Jr),
                        "pypose": relative(pp_op.se3_Jl_inv(-xi.to(dtype)), Jr)}
    below = xi[xi[:, 3:].norm(dim=-1) < math.pi - 64 * torch.finfo(dtype).eps]  # past it Log answers the other way
    out["SE3 Log(Exp(xi))"] = {"robojac": relative(lie.se3_log(lie.se3_exp(below.to(dtype))), below),
                               "pypose": relative(pp.se3(below.to(dtype)).Exp().Log().tensor(), below)}
    T = exp_matrix(xi)[:, :3]
    out["SE3 Exp"] = {"robojac": relative(lie.se3_exp_matrix(xi.to(dtype))[:, :3], T),
                      "pypose": relative(pp.se3(xi.to(dtype)).Exp().matrix()[:, :3], T)}
    x2 = inputs(3, seed=1).to(dtype).double()
    out["SE2 Jr^-1"] = {"robojac": relative(lie.se2_right_jacobian_inverse(x2.to(dtype)), right_jacobian_inverse(x2))}
    out["SE2 Exp"] = {"robojac": relative(lie.se2_exp(x2.to(dtype))[:, :2], exp_matrix(x2)[:, :2, 2])}
    if dtype == torch.float64:
        _gtsam(out, xi, below, x2)
    return out


def _gtsam(out, xi, below, x2) -> None:
    try:
        import gtsam
    except ImportError:
        return
    swap = lambda v: np.r_[v[3:], v[:3]]  # noqa: E731  GTSAM's tangent is [phi, rho]
    P = np.block([[np.zeros((3, 3)), np.eye(3)], [np.eye(3), np.zeros((3, 3))]])
    out["SE3 Jr^-1"]["GTSAM"] = relative(
        [P @ gtsam.Pose3.LogmapDerivative(swap(v)) @ P for v in xi.numpy()], right_jacobian_inverse(xi))
    out["SE3 Log(Exp(xi))"]["GTSAM"] = relative(
        [swap(gtsam.Pose3.Logmap(gtsam.Pose3.Expmap(swap(v)))) for v in below.numpy()], below)
    out["SE3 Exp"]["GTSAM"] = relative(
        [gtsam.Pose3.Expmap(swap(v)).matrix()[:3] for v in xi.numpy()], exp_matrix(xi)[:, :3])
    out["SE2 Jr^-1"]["GTSAM"] = relative(
        [gtsam.Pose2.LogmapDerivative(v) for v in x2.numpy()], right_jacobian_inverse(x2))
    out["SE2 Exp"]["GTSAM"] = relative(
        [gtsam.Pose2.Expmap(v).translation() for v in x2.numpy()], exp_matrix(x2)[:, :2, 2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args()
    rows = []
    for dtype in (torch.float32, torch.float64):
        eps = torch.finfo(dtype).eps
        for quantity, errors in measure(dtype).items():
            def cell(lib):
                return f"{errors[lib]:.1e} ({errors[lib] / eps:.0f} eps)" if lib in errors else "-"

            rows.append([str(dtype).removeprefix("torch."), quantity, cell("robojac"), cell("pypose"), cell("GTSAM")])
    print(table(["dtype", "quantity", "robojac", "pypose", "GTSAM"], rows))


if __name__ == "__main__":
    main()
