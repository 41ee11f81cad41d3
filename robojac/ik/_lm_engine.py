"""One IK attempt on the solver engine, for large batches and any device (see :func:`robojac.ik.solve`).

Damped least squares is :func:`robojac.optim.solve`'s Levenberg-Marquardt on the joints that
move the frame:

* the closed-form pose-error factor (:class:`._targets.AttemptResidual`, with the geometric
  Jacobian's rotation rows as damped least squares takes them), which also says when an attempt
  is done (within the tolerances, or another start of its target is: the engine's
  ``"satisfied"``);
* a vector variable with the joint limits as bounds (a revolute joint comes back by a full turn;
  a joint whose step would leave its limits is held for that step, ``at_bound="hold"``) and the
  rest pose as a pull in the damped null space.

The engine runs the problems still going as a smaller batch once they fit one (a power of two:
the kinematics' workspaces are reused), as the loop it replaced did.  Measured against that loop
(``benchmarks/ab.py --against fefce57 --case ik --rounds 9``, alternating processes, 2026-12-05):
10,000 Panda targets in float32 269 -> 292 ms (1.08x; 1.05-1.17x over this session's runs of
the last versions), success 100% in both; a lone target runs on :mod:`._lm_numpy` either way
(730 -> 696 us).

:mod:`._lm_numpy` takes the same steps in numpy for the latency-bound small rounds on the CPU
(its measured reason is written there).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import optim
from ..kinematics import Chain
from ._step import LAMBDA_DOWN, LAMBDA_MAX, LAMBDA_MIN, LAMBDA_UP, Problem, on_joints
from ._targets import AttemptResidual, pose_errors

__all__ = ["attempts", "differentiable", "lm_engine", "trust_region"]


def trust_region(pb: Problem) -> optim.TrustRegionConfig:
    """IK's damping schedule as the engine's trust region: divided by 3 after a step that lowers
    the error, multiplied by 3 after one that does not (and after a second in a row that the
    model overstated, :class:`robojac.optim.TrustRegionConfig`), an attempt stalled at ``1e8``."""
    return optim.TrustRegionConfig(lambda_initial=pb.lambda_initial, factor_down=1.0 / LAMBDA_DOWN, factor_up=LAMBDA_UP,
                                   lambda_min=LAMBDA_MIN, lambda_max=LAMBDA_MAX)


def lm_engine(chain: Chain, frame: str, T: Tensor, q: Tensor, pb: Problem):
    """Damped least squares for problems ``(P,)`` (targets ``T (P, 7|3)``, starts ``q (P, dof)``);
    returns ``(q, pos_err, rot_err, solved, iterations)``.  Joints off the frame's path keep their
    starting values and stay out of the linear algebra (TALOS's left arm: 9 x 9 systems, not 32 x 32)."""
    P, dof = q.shape
    drive = pb.drive if pb.drive is not None else torch.arange(dof, device=q.device)
    rows = 3 if pb.position_only else 6
    w = pb.weights2[:rows].sqrt()
    residual = AttemptResidual(chain, frame, q, drive, w, pb.position_only,
                               tolerances=(pb.position_tolerance, pb.orientation_tolerance), group=pb.group)
    q, iterations = attempts(residual, T, q, drive, pb)
    X = chain.forward_kinematics_tensor(q, [frame])[:, 0]
    _, pe, re = pose_errors(X, T, pb.position_only)
    solved = (pe < pb.position_tolerance) & (re < pb.orientation_tolerance)
    return q, pe, re, solved, iterations


def attempts(residual, T: Tensor, q: Tensor, drive: Tensor, pb: Problem) -> tuple[Tensor, Tensor]:
    """``(q, iterations)`` after the attempts from ``q (P, dof)`` on the engine, stepping the
    joints ``drive``: ``residual`` (one frame's or several frames', which also says when an
    attempt is done) of the targets ``T``, the joint limits as bounds, the rest pose as a pull
    in the damped null space."""
    sub = on_joints(pb, drive)
    rest = sub.rest_pose if sub.rest_pose is not None and pb.nullspace_gain != 0 else None
    joints = optim.Variable("Rn", q[:, None].index_select(2, drive), name="q", lower=sub.lower, upper=sub.upper,
                            period=sub.turn, rest=rest, rest_gain=pb.nullspace_gain if rest is not None else 0.0,
                            at_bound="hold")
    factor = optim.Factor(residual, [joints], data=(T[:, None],), name="target")
    # the attempt ends within the tolerances, at its step budget, or stalled: no cost tests
    stop = optim.TerminationConfig(max_iterations=pb.max_iterations, relative_tolerance=0.0, step_tolerance=0.0,
                                   gradient_tolerance=0.0)
    # the thread count ik.solve chose for the whole call (measured there), not the engine's own rule
    threads = torch.get_num_threads() if q.device.type == "cpu" else None
    out = optim.solve([joints], [factor], optim.SolverConfig(trust_region(pb), stop, backward="none",
                                                             num_threads=threads))
    return q.index_copy(1, drive, out.values[0][:, 0]), out.iterations


def differentiable(residual, T: Tensor, q: Tensor, drive: Tensor, converged: Tensor) -> Tensor:
    """``q (P, dof)`` differentiable with respect to the targets ``T``: the implicit function
    theorem at the answer (:func:`robojac.optim.attach_gradients`) for ``residual`` (its exact
    Jacobian), Gauss-Newton's Hessian, the damped least-norm derivative for redundant joints
    (damping 1e-10 of the Hessian's largest entry in float64, 1e-5 below); the joints off
    ``drive`` get none, and a problem not ``converged`` passes zero."""
    var = optim.Variable("Rn", q[:, None, drive], name="q")
    factor = optim.Factor(residual, [var], data=(T[:, None],), name="target")
    damping = 1e-10 if q.dtype == torch.float64 else 1e-5
    (qm,) = optim.attach_gradients([var], [factor], (q[:, None, drive],), converged, damping=damping,
                                   hessian="gauss_newton")
    return q.index_copy(1, drive, qm[:, 0])
