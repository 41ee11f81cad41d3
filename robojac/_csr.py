"""Sparse CSR tensors built without torch's notice.

torch warns, once per process, that "Sparse CSR tensor support is in beta state" whenever one is
built.  robojac's sparse Jacobians and normal equations use only the parts that work (building,
products with dense vectors, reading the values), and a library call stays quiet unless asked,
so every CSR tensor of the package is built here, with that one warning silenced.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["csr_tensor"]


def csr_tensor(crow: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    """``torch.sparse_csr_tensor`` on ``values``' device, its structure trusted (valid by
    construction, so not checked)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, tuple(shape), device=values.device, check_invariants=False)
