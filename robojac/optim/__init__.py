"""Least squares: the solver engine and its building blocks.

* :func:`solve` with :class:`SolverConfig` (:class:`TrustRegionConfig`, :class:`TerminationConfig`)
  -> :class:`SolveResult`: Gauss-Newton / Levenberg-Marquardt over :class:`Variable` s (R^n, SO3,
  SE3, SE2, RxSO3, Sim3) and :class:`Factor` s, batched over many problems, differentiable (implicit or
  unrolled); Jacobians from :mod:`robojac.jacobian`.  Equality and inequality :class:`Constraint` s
  by an augmented Lagrangian (:class:`ConstraintConfig`).
* robust kernels (:class:`RobustKernel`), sparse linear solvers (LDL^T on the CPU, a batched
  multifrontal Cholesky on any torch device, preconditioned CG), many small SPD systems
  structure-of-arrays.
* :func:`fit` -> :class:`FitResult`: a module's own parameters fitted to its output (pypose's
  ``optim.LM``), on the engine, with :func:`robojac.jacobian.modjac`'s tangent columns.
* :func:`covariances`: marginal covariances at an answer (the inverse Gauss-Newton Hessian's
  diagonal blocks; one large problem by the selected inverse of its sparse factor).
"""

from ._constraints import Constraint, ConstraintConfig
from ._engine import (
    RIDGE, TRUSTED, History, IterationRecord, SolveResult, SolverConfig, TerminationConfig, TrustRegionConfig,
    attach_gradients, damped, solve,
)
from ._fit import FitResult, fit
from ._kernels import KERNELS, RobustKernel
from ._marginals import covariances
from ._linear import SparseLDL, block_jacobi_preconditioner, conjugate_gradient
from ._multifrontal import MultifrontalCholesky
from ._problem import Factor, Linearization, Problem
from ._small import cholesky_soa, cholesky_solve_soa, soa_pays, spd_solve_soa
from ._variables import Group, Variable, group, product, wrap_periodic

__all__ = ["RIDGE", "TRUSTED", "Constraint", "ConstraintConfig", "Factor", "FitResult", "Group", "History",
           "IterationRecord", "KERNELS", "Linearization", "MultifrontalCholesky", "Problem", "RobustKernel",
           "SolveResult", "SolverConfig", "SparseLDL", "TerminationConfig", "TrustRegionConfig", "Variable",
           "attach_gradients", "block_jacobi_preconditioner", "cholesky_soa", "cholesky_solve_soa",
           "conjugate_gradient", "covariances", "damped", "fit", "group", "product", "soa_pays", "solve",
           "spd_solve_soa", "wrap_periodic"]
