"""The uncertainty of a pose graph's answer: each pose's marginal covariance."""

from __future__ import annotations

import pypose as pp
import torch
from torch import Tensor

from .. import lie, optim
from .._config import check_choice, check_instance, index_tensor
from ._graph import PoseGraph
from ._solve import SOLVE_DTYPE, _held, anchor_offset, factors, moved

__all__ = ["covariances"]


def covariances(graph: PoseGraph, poses=None, *, which=None, frame: str = "body",
                kernel: optim.RobustKernel | None = None) -> Tensor:
    """Marginal covariances ``(K, d, d)`` of the poses ``which`` (indices into ``graph.poses``,
    all ``N`` by default) at ``poses`` (an answer, ``result.poses``; by default the graph's own),
    in the graph's dtype and device: the diagonal blocks of the inverse of the Gauss-Newton
    Hessian ``J^T Omega J`` there (to first order, the covariance of the estimate when the
    measurements' noise has covariance ``Omega^-1``), as GTSAM's ``Marginals`` gives them.

    * ``d = 6``, ``[rho, phi]`` (translation, then rotation) for 3D graphs; ``d = 3``,
      ``[x, y, theta]`` for 2D ones; ``d = 7``, ``[rho, phi, sigma]`` for similarity graphs.
      GTSAM orders a ``Pose3``'s ``[phi, rho]`` and a ``Similarity3``'s ``[phi, rho, sigma]``.
    * ``frame="body"``: perturbations on the right, ``T Exp(xi)``, in the pose's own frame (GTSAM's
      convention; its translation block is the position's covariance in the pose's axes);
      ``"world"``: on the left, ``Exp(xi) T``, the solver's.  ``C_body = Ad(T^-1) C_world Ad(T^-1)^T``.
    * The gauge is the one :func:`optimize` holds: the graph's FIXed poses, or else its first pose.
      Those have zero covariance, and every other is relative to them.  A graph its position
      priors hold (no FIXed pose) holds none: every covariance is absolute.
    * ``kernel``: the robust kernel the answer was found with (its weights at ``poses`` scale the
      edges' information), as ``PGOConfig.kernel``.

    One large graph takes the selected inverse of its sparse Cholesky factor (see
    :func:`robojac.optim.covariances`): all of sphere2500's 2,500 covariances in 0.61 s on these
    2 cores, against 8.3 s for GTSAM's ``Marginals`` (``benchmarks/covariances.py``, 2026-12-06).
    A disconnected graph raises :class:`PoseGraphError` naming its components.
    """
    check_instance("graph", graph, PoseGraph, "a PoseGraph")
    check_choice("covariances", "frame", frame, ("body", "world"))
    if kernel is not None:
        check_instance("kernel", kernel, optim.RobustKernel, "a RobustKernel")
    graph.check_connected()
    N = graph.num_poses
    if poses is None:
        P = graph.poses.detach().as_subclass(Tensor)
    else:
        P = poses.as_subclass(Tensor) if isinstance(poses, pp.LieTensor) else poses
        width, layout = (8, "[t, qx, qy, qz, qw, s]") if graph.similarity else (7, "[t, qx, qy, qz, qw]")
        if not isinstance(P, Tensor) or tuple(P.shape) != (N, width) or not P.is_floating_point():
            raise ValueError(f"poses: expected the graph's {N} poses as (N, {width}) {layout} (result.poses), got "
                             f"{tuple(P.shape) if isinstance(P, Tensor) else type(P).__name__}")
        lie.require_values(P, "poses")
        if not bool(torch.isfinite(P).all()):
            raise ValueError("poses: contains NaN or infinite values")
        P = P.detach().to(device=graph.poses.device)
    S = graph.state(P.to(SOLVE_DTYPE))  # as optimize solves: float64, whatever the graph's dtype
    c = anchor_offset(graph, S)
    S = moved(S, c, -1)  # about the anchor, as optimize solves (see anchor_offset)
    if which is None:
        entries = torch.arange(N, device=S.device)
    else:
        entries = index_tensor(which, "which", S.device)
        if entries.dim() != 1 or (entries.numel() and (int(entries.min()) < 0 or int(entries.max()) >= N)):
            shown = repr(which) if entries.numel() <= 8 else f"{entries.numel()} indices"
            raise ValueError(f"which: expected a 1-D list of pose indices in [0, {N}) (positions in graph.poses, "
                             f"not vertex ids), got {shown}")
    X = optim.Variable(graph.group, S[None], fixed=_held(graph)[None].to(S.device), name="poses")
    C = optim.covariances([X], factors(graph, X, c, kernel, False), [X.value], X, entries=entries)[0]  # left
    if graph.similarity:  # the state is T^-1: Exp(d) T^-1 = (T Exp(-d))^-1, T's own frame already
        if frame == "world":
            A = lie.sim3_adjoint(lie.sim3_inverse(S[entries]))  # Ad(T)
            C = A @ C @ A.mT
    elif frame == "body":
        T = S[entries]
        A = lie.se2_adjoint(lie.se2_inverse(T)) if graph.dim == 2 else lie.se3_adjoint(lie.se3_inverse(T))
        C = A @ C @ A.mT
    else:  # back from the anchor's frame to the world's: Ad of the translation c
        A = (lie.se2_adjoint(torch.cat((c, c.new_zeros(1)))) if graph.dim == 2
             else lie.se3_adjoint(torch.cat((c, c.new_tensor([0.0, 0.0, 0.0, 1.0])))))
        C = A @ C @ A.mT
    return C.to(graph.poses.dtype)
