"""Least-squares building blocks shared by the solvers: robust kernels and sparse linear solvers
(LDL^T on the CPU, a batched multifrontal Cholesky on any torch device, preconditioned CG)."""

from ._kernels import KERNELS, RobustKernel
from ._linear import SparseLDL, block_jacobi_preconditioner, conjugate_gradient
from ._multifrontal import MultifrontalCholesky
from ._small import cholesky_soa, cholesky_solve_soa, spd_solve_soa

__all__ = ["KERNELS", "MultifrontalCholesky", "RobustKernel", "SparseLDL", "block_jacobi_preconditioner", "cholesky_soa",
           "cholesky_solve_soa", "conjugate_gradient", "spd_solve_soa"]
