"""The Jacobian core.

* :func:`modjac` -- a module's Jacobian w.r.t. its parameters (pypose-compatible), with
  tangent-space columns for SO3/SE3/RxSO3/Sim3 parameters; :func:`value_and_modjac` -- its
  outputs too, from the same runs of the model.
* :func:`jacobian`, :func:`vjp`, :func:`jvp`, :func:`hessian`, :func:`vhp`, :func:`hvp` --
  functional forms w.r.t. inputs (torch.func / torch.autograd.functional semantics).
* :func:`batch_jacobian`, :func:`divergence` -- per-sample Jacobians of batched functions and
  their trace, exact or Hutchinson.
* :func:`per_sample_modjac` -- ``(B, m, n)`` blocks for batches of independent problems.
* :func:`block_sparse_jacobian`, :class:`BlockSparseJacobian`, :class:`BlockSparsePattern` --
  factor-graph Jacobians assembled into sparse matrices with a reusable pattern;
  :class:`BlockLayout` -- the CSR layout of ``J^T J`` over entries of mixed tangent sizes.
* :func:`se3_act_jacobian`, :class:`SE3BetweenResidual` -- closed-form fast paths;
  :func:`between_curvature` -- a between residual's second derivatives (any Lie group).

Convention: left perturbation ``X' = Exp(d) * X``, tangent ``[rho, phi]`` (pypose's).
"""

from ._analytic import SE3BetweenResidual, between_curvature, se3_act_jacobian, se3_between, whiten
from ._divergence import batch_jacobian, divergence
from ._functional import hessian, hvp, jacobian, jvp, vhp, vjp
from ._modjac import VECTORIZE_MAX, model_function, modjac, value_and_modjac
from ._params import ColumnBlock
from ._persample import PerSampleJacobian, per_sample_modjac
from ._sparse import BlockLayout, BlockSparseJacobian, BlockSparsePattern, block_sparse_jacobian

__all__ = [
    "BlockLayout",
    "BlockSparseJacobian",
    "BlockSparsePattern",
    "ColumnBlock",
    "PerSampleJacobian",
    "SE3BetweenResidual",
    "VECTORIZE_MAX",
    "between_curvature",
    "batch_jacobian",
    "block_sparse_jacobian",
    "divergence",
    "hessian",
    "hvp",
    "jacobian",
    "jvp",
    "model_function",
    "modjac",
    "per_sample_modjac",
    "se3_act_jacobian",
    "se3_between",
    "value_and_modjac",
    "vhp",
    "vjp",
    "whiten",
]
