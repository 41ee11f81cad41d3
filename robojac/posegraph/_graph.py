"""``PoseGraph``: poses, relative-pose measurements with information matrices, and the cost."""

from __future__ import annotations

import logging

import numpy as np
import pypose as pp
import torch
from torch import Tensor, nn

from .._config import index_tensor
from .._precision import spacing
from ..jacobian import SE3BetweenResidual, between_curvature, se3_between, whiten
from ..lie import (require_values, se3_act, se3_tensor, sim3_ad, skew, sim3_adjoint, sim3_compose, sim3_inverse,
                   sim3_left_jacobian_inverse, sim3_log, wrap_lie)
from ..optim import RobustKernel
from ..lie import se2_ad, se2_adjoint, se2_compose, se2_inverse, se2_log, se2_right_jacobian_inverse, se2_to_se3, se3_to_se2

__all__ = ["PoseGraph", "PositionPriorResidual", "SE2BetweenResidual", "Sim3BetweenResidual", "PoseGraphError"]

log = logging.getLogger(__name__)
_RESOLUTION = 1e-3  # metres: positions held more coarsely than this by their dtype are worth a warning


class PoseGraphError(ValueError):
    """A pose graph that cannot be optimized as given (says which edge, vertex or component)."""


class _Between:
    """A between residual's evaluation from its ``error`` and ``linearize`` (each group's own)."""

    def __call__(self, Xi: Tensor, Xj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None) -> Tensor:
        return whiten(self.error(Xi, Xj, Z), sqrt_info)

    def value_and_jacobians(self, Xi: Tensor, Xj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None):
        r, later = self.linearize(Xi, Xj, Z, sqrt_info)
        return r, later()


class SE2BetweenResidual(_Between):
    """The planar edge residual ``r = L Log(Z^-1 Xi^-1 Xj)`` on ``[x, y, theta]`` poses (3-dof);
    its blocks are opposite (``dr/dXi = -dr/dXj``, ``opposite_jacobians``)."""

    opposite_jacobians = True

    def linearize(self, Xi: Tensor, Xj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None):
        """``(r, later)``: the residual now, its blocks from ``later()`` (computed only if used)."""
        e = self.error(Xi, Xj, Z)
        return whiten(e, sqrt_info), lambda: self.jacobians_at(e, Xj, sqrt_info)

    def curvature(self, v: Tensor, Xi: Tensor, Xj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None) -> Tensor:
        """``sum_k v_k d^2 r_k`` ``(..., 6, 6)`` in the left tangents of ``(Xi, Xj)``
        (:func:`~robojac.jacobian.between_curvature`): the implicit backward's exact Hessian."""
        e = self.error(Xi, Xj, Z)
        basis = se2_ad(torch.eye(3, dtype=e.dtype, device=e.device))
        return between_curvature(v, e, se2_adjoint(se2_inverse(Xj)), se2_right_jacobian_inverse, basis, sqrt_info)

    @staticmethod
    def error(Xi: Tensor, Xj: Tensor, Z: Tensor) -> Tensor:
        """The unwhitened error ``e = Log(Z^-1 Xi^-1 Xj)``, from which :meth:`jacobians_at` continues."""
        return se2_log(se2_compose(se2_inverse(Z), se2_compose(se2_inverse(Xi), Xj)))

    @staticmethod
    def jacobians_at(e: Tensor, Xj: Tensor, sqrt_info: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(dr/dXi, dr/dXj)`` at the unwhitened error ``e`` of :meth:`error`."""
        Jj = se2_right_jacobian_inverse(e) @ se2_adjoint(se2_inverse(Xj))
        if sqrt_info is not None:
            Jj = sqrt_info @ Jj
        return -Jj, Jj


class Sim3BetweenResidual(_Between):
    """A similarity edge's residual ``r = L Log(Z^-1 Y_i Y_j^-1)`` ``(..., 7)`` in sim3's
    ``[rho, phi, sigma]``, on the inverse similarities ``Y = T^-1`` (``T_camera_world``) that
    :func:`~robojac.posegraph.optimize` steps: ``Z^-1 Y_i Y_j^-1 = Z^-1 T_i^-1 T_j``, the
    :class:`PoseGraph`'s edge error.  Stepping ``Y`` on the left is stepping ``T`` on the right, in
    each pose's own frame: a turn or a rescale of ``T`` about the world's origin moves a pose 1 km
    away by 1 km times the step, and in those coordinates Levenberg-Marquardt took 26 iterations
    on a 1,500-pose graph where it takes 12 in these (GTSAM's Levenberg-Marquardt, which steps on
    the right: 6 accepted and 2 refused).

    Its blocks are a closed form, checked against :mod:`robojac.jacobian`'s automatic ones (an
    iteration on example 27's graph: 21 ms against 168 ms): with ``E = Z^-1 Y_i Y_j^-1 = Exp(e)``,
    ``dr/dY_i = L Jl(e)^-1 Ad(Z^-1)`` and ``dr/dY_j = -L Jl(e)^-1 Ad(E)``."""

    def linearize(self, Yi: Tensor, Yj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None):
        """``(r, later)``: the residual now, its blocks from ``later()`` (computed only if used)."""
        Zinv = sim3_inverse(Z)
        E = sim3_compose(Zinv, sim3_compose(Yi, sim3_inverse(Yj)))
        e = sim3_log(E)

        def later() -> tuple[Tensor, Tensor]:
            LJ = sim3_left_jacobian_inverse(e)
            if sqrt_info is not None:
                LJ = sqrt_info @ LJ
            both = LJ @ torch.cat((sim3_adjoint(Zinv), -sim3_adjoint(E)), -1)  # one product: 7x7 ones cost as much
            return both[..., :7], both[..., 7:]

        return whiten(e, sqrt_info), later

    def curvature(self, v: Tensor, Yi: Tensor, Yj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None) -> Tensor:
        """``sum_k v_k d^2 r_k`` ``(..., 14, 14)`` in the left tangents ``[a, b]`` of ``(Y_i, Y_j)``:
        the implicit backward's exact Hessian, from :func:`~robojac.jacobian.between_curvature`.
        Here the perturbed error is ``Log(E Exp(A a) Exp(-b))`` with ``A = Ad(Y_j Y_i^-1)``, that
        function's ``Log(E Exp(-A a') Exp(A b'))`` at ``a' = -a``, ``b' = -A^-1 b``: a linear change
        of coordinates, ``M^T H' M`` with ``M = diag(-I, -A^-1)``."""
        Zinv = sim3_inverse(Z)
        E = sim3_compose(Zinv, sim3_compose(Yi, sim3_inverse(Yj)))
        e = sim3_log(E)
        A = sim3_adjoint(sim3_compose(Yj, sim3_inverse(Yi)))
        H = between_curvature(v, e, A, lambda y: sim3_left_jacobian_inverse(-y),
                              sim3_ad(torch.eye(7, dtype=e.dtype, device=e.device)), sqrt_info)
        A_inv = sim3_adjoint(sim3_compose(Z, E))  # Ad(Y_i Y_j^-1)
        Haa, Hab = H[..., :7, :7], H[..., :7, 7:] @ A_inv
        Hbb = A_inv.mT @ H[..., 7:, 7:] @ A_inv
        return torch.cat((torch.cat((Haa, Hab), -1), torch.cat((Hab.mT, Hbb), -1)), -2)

    @staticmethod
    def error(Yi: Tensor, Yj: Tensor, Z: Tensor) -> Tensor:
        """The unwhitened error ``Log(Z^-1 Y_i Y_j^-1)``."""
        return sim3_log(sim3_compose(sim3_inverse(Z), sim3_compose(Yi, sim3_inverse(Yj))))


class PositionPriorResidual:
    """A measured position of a point of a pose (a GNSS antenna, a surveyed marker):
    ``r = L (T a - p)`` ``(..., k)`` for the point ``a`` in the pose's frame (its lever arm; the
    pose's origin where ``a`` is left out), the measurement ``p`` and square-root information
    ``L`` (``k = 3``; ``k = 2`` for a planar pose ``[x, y, theta]``).  With ``q = T a``, its block
    in the pose's left tangent ``[rho, phi]`` is ``L [I, -[q]x]`` (planar: ``L [I, J q]``, ``J`` the
    quarter turn), and :meth:`curvature` gives the second-order term of ``q`` under ``Exp(d) T``,
    ``(1/2) phi x (phi x q) + (1/2) phi x rho``, for the implicit backward.  GTSAM's ``GPSFactor``
    (``GPSFactorArm`` with a lever arm) and g2o's ``EdgeSE3XYZPrior`` measure the same."""

    @staticmethod
    def point(X: Tensor, a: Tensor | None = None) -> Tensor:
        """``q = T a`` ``(..., k)`` of poses ``X`` (``(..., 7)``, or planar ``(..., 3)``)."""
        if X.shape[-1] == 3:
            t = X[..., :2]
            if a is None:
                return t
            c, s = torch.cos(X[..., 2]), torch.sin(X[..., 2])
            return t + torch.stack((c * a[..., 0] - s * a[..., 1], s * a[..., 0] + c * a[..., 1]), -1)
        return X[..., :3] if a is None else se3_act(X[..., :7], a)

    def __call__(self, X: Tensor, p: Tensor, sqrt_info: Tensor | None = None, a: Tensor | None = None) -> Tensor:
        return whiten(self.point(X, a) - p, sqrt_info)

    def value_and_jacobians(self, X: Tensor, p: Tensor, sqrt_info: Tensor | None = None, a: Tensor | None = None):
        q = self.point(X, a)
        if q.shape[-1] == 2:
            turn = torch.stack((-q[..., 1], q[..., 0]), -1).unsqueeze(-1)  # J q
            J = torch.cat((torch.eye(2, dtype=q.dtype, device=q.device).expand(q.shape[:-1] + (2, 2)), turn), -1)
        else:
            J = torch.cat((torch.eye(3, dtype=q.dtype, device=q.device).expand(q.shape[:-1] + (3, 3)), -skew(q)), -1)
        if sqrt_info is not None:
            J = sqrt_info @ J
        return whiten(q - p, sqrt_info), (J,)

    def curvature(self, v: Tensor, X: Tensor, p: Tensor, sqrt_info: Tensor | None = None,
                  a: Tensor | None = None) -> Tensor:
        """``sum_k v_k d^2 r_k`` in the pose's left tangent: ``(..., 6, 6)`` (planar ``(..., 3, 3)``)."""
        q = self.point(X, a)
        w = v if sqrt_info is None else (sqrt_info.mT @ v.unsqueeze(-1)).squeeze(-1)
        wq = (w * q).sum(-1)[..., None, None]
        if q.shape[-1] == 2:  # (1/2) rho . J^T w theta - (1/2) (w . q) theta^2
            H = torch.zeros(q.shape[:-1] + (3, 3), dtype=q.dtype, device=q.device)
            side = 0.5 * torch.stack((w[..., 1], -w[..., 0]), -1)
            H[..., :2, 2], H[..., 2, :2] = side, side
            H[..., 2:, 2:] = -wq
            return H
        outer = w.unsqueeze(-1) * q.unsqueeze(-2)
        eye = torch.eye(3, dtype=q.dtype, device=q.device)
        top = torch.cat((torch.zeros_like(outer), 0.5 * skew(w)), -1)
        bottom = torch.cat((-0.5 * skew(w), 0.5 * (outer + outer.mT) - wq * eye), -1)
        return torch.cat((top, bottom), -2)


class PoseGraph(nn.Module):
    """A pose graph: ``N`` poses, ``E`` edges ``(i, j)`` measuring ``Z_ij ~ T_i^-1 T_j``.

    * ``poses``: an SE3 ``pp.Parameter`` ``(N, 7)`` in ascending :attr:`vertex_ids` order (2D
      graphs hold planar poses: ``z = 0``, rotation about ``z``).
    * ``information``: ``(E, d, d)`` in robojac's tangent order -- ``[rho, phi]`` for 3D
      (``d = 6``), ``[x, y, theta]`` for 2D (``d = 3``).
    * edge residual ``r = L Log(Z^-1 T_i^-1 T_j)`` with ``Omega = L^T L`` (the planar 3-dof log
      for 2D graphs); :meth:`cost` is ``0.5 * sum r^T Omega r``, GTSAM's ``graph.error()``.
    * ``similarity=True``: a 3D graph of similarities (a monocular camera's keyframes, whose map
      scale drifts): ``poses`` a Sim3 ``pp.Parameter`` ``(N, 8)`` ``[t, qx, qy, qz, qw, s]``
      (``p -> s R p + t``), ``measurements (E, 8)`` of the same form, ``information (E, 7, 7)`` in
      sim3's ``[rho, phi, sigma]``; scales must be positive.  GTSAM's ``Similarity3`` holds
      ``(R, t / s, s)`` and orders its tangent ``[phi, rho, sigma]``.
    * position priors (GNSS fixes, surveyed points; SE3 and 2D graphs): ``prior_index (P,)``, the
      poses measured, ``prior_positions (P, k)`` their measured positions (``k = 3``; ``k = 2``, ``x,
      y``, for a 2D graph), ``prior_information (P, k, k)`` and, optionally, ``prior_lever_arms
      (P, k)`` (or ``(k,)`` for all), the measured point in the pose's frame (a GNSS antenna's
      place on the vehicle; the pose's origin by default); each adds ``r = L (T a - p)``
      (:class:`PositionPriorResidual`) to the cost.  The priors then hold the graph in the world
      (no first pose is held, only ``FIX`` vertices), so without ``fixed`` poses they must fix its
      rotation: positions not all on one line (3D), or at least two different ones (2D).
    """

    def __init__(self, poses, edges: Tensor, measurements, information: Tensor, *, vertex_ids: Tensor | None = None,
                 dim: int = 3, fixed: Tensor | None = None, name: str = "pose graph",
                 edge_lines: list[int] | None = None, similarity: bool = False, prior_index: Tensor | None = None,
                 prior_positions: Tensor | None = None, prior_information: Tensor | None = None,
                 prior_lever_arms: Tensor | None = None):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim: expected 2 or 3, got {dim!r}")
        if not isinstance(similarity, bool):
            raise TypeError(f"similarity: expected True or False, got {similarity!r}")
        if similarity and dim != 3:
            raise ValueError("similarity: similarity graphs are 3D (dim=3)")
        width = 8 if similarity else 7  # a pose's numbers
        layout = "[t, qx, qy, qz, qw, s]" if similarity else "[t, qx, qy, qz, qw]"
        if isinstance(poses, pp.LieTensor):
            X = poses.as_subclass(Tensor)
        elif poses is None or isinstance(poses, (str, bytes)):
            raise PoseGraphError(f"poses: expected real poses (N, {width if dim == 3 else 3}), "
                                 f"got {type(poses).__name__}")
        else:
            X = torch.as_tensor(poses, device="cpu")
        if not X.is_floating_point() and not X.is_complex() and X.dtype != torch.bool:
            X = X.double()  # whole numbers written as ints
        if not X.is_floating_point() or X.dim() != 2:
            raise PoseGraphError(f"poses: expected real poses (N, {width if dim == 3 else 3}), got shape "
                                 f"{tuple(X.shape)}, dtype {X.dtype}")
        device = X.device  # every buffer follows the poses
        require_values(X, "poses")
        Z = measurements.as_subclass(Tensor) if isinstance(measurements, pp.LieTensor) else measurements
        Z = torch.as_tensor(Z, device=device)
        try:
            edges = index_tensor(edges, "edges", device)
        except TypeError as e:
            raise PoseGraphError(f"{e} (pose indices, (E, 2))") from None
        information = torch.as_tensor(information, device=device)
        N, E, d = X.shape[0], edges.shape[0], (3 if dim == 2 else 7 if similarity else 6)
        self.name, self.dim, self.similarity = name, dim, similarity
        self._edge_lines = edge_lines
        if X.shape != (N, width) or not X.is_floating_point():
            raise PoseGraphError(f"poses: expected a float tensor (N, {width}) {layout}, got {tuple(X.shape)}")
        if edges.shape != (E, 2) or Z.shape != (E, width) or tuple(information.shape) != (E, d, d):
            raise PoseGraphError(
                f"edges (E, 2), measurements (E, {width}), information (E, {d}, {d}) expected; "
                f"got {tuple(edges.shape)}, "
                f"{tuple(Z.shape)}, {tuple(information.shape)}"
            )
        if not torch.isfinite(X).all():
            bad = int(torch.nonzero(~torch.isfinite(X).all(-1))[0])
            raise PoseGraphError(f"poses: vertex {self._vid(vertex_ids, bad)} has NaN or infinite values")
        for what, T in (("measurement", Z), ("information", information)):
            ok = torch.isfinite(T.flatten(1)).all(-1)
            if not ok.all():
                raise PoseGraphError(f"{self._edge_name(int(torch.nonzero(~ok)[0]), edges, vertex_ids)}: {what} has NaN or infinite values")
        # quaternions off unit length beyond the dtype's rounding are refused (a measurement of |q| = 1.5
        # had been optimized as given, converged, its residuals wrong); within it they are kept as given,
        # so a derivative with respect to the measurements' own numbers stays theirs
        for what, T in (("poses", X), ("measurements", Z)):
            se3_tensor(T.detach()[:, :7], name=what)  # lie's one rule for a pose's numbers; refusal only
        if similarity:
            for what, T in (("poses", X), ("measurements", Z)):
                bad = torch.nonzero(T[:, 7] <= 0)
                if bad.numel():
                    k = int(bad[0])
                    where = (f"vertex {self._vid(vertex_ids, k)}" if what == "poses"
                             else self._edge_name(k, edges, vertex_ids))
                    raise PoseGraphError(f"{what}: {where} has scale {float(T[k, 7]):.3g}; a similarity's scale "
                                         f"(the last number) must be positive")
        if E and (edges.min() < 0 or edges.max() >= N):
            bad = int(torch.nonzero((edges < 0).any(-1) | (edges >= N).any(-1))[0])
            raise PoseGraphError(f"edge {bad}: endpoint index out of range [0, {N})")
        loops = edges[:, 0] == edges[:, 1]
        if loops.any():  # r = L Log(Z^-1 T_i^-1 T_i) = L Log(Z^-1): a constant, whatever the pose
            bad = int(torch.nonzero(loops)[0])
            raise PoseGraphError(f"{self._edge_name(bad, edges, vertex_ids)}: an edge from a pose to itself "
                                 f"constrains nothing (its residual is its measurement's own, whatever the pose); "
                                 f"{int(loops.sum())} of {E} edges are such loops")
        info = information.to(X.dtype)
        info = 0.5 * (info + info.mT)
        L, status = torch.linalg.cholesky_ex(info)
        if (status != 0).any():
            bad = int(torch.nonzero(status)[0])
            raise PoseGraphError(
                f"{int((status != 0).sum())} of {E} information matrices are not positive definite (the first: "
                f"{self._edge_name(bad, edges, vertex_ids)}); a g2o file can be read with "
                "read_g2o(path, information='nearest_pd') to replace them by the nearest positive definite ones"
            )
        try:
            ids = torch.arange(N, device=device) if vertex_ids is None else index_tensor(vertex_ids, "vertex_ids", device)
        except TypeError as e:
            raise PoseGraphError(f"{e} (one id per pose)") from None
        if ids.shape != (N,):
            raise PoseGraphError(f"vertex_ids: expected {N} integer ids (one per pose), got shape {tuple(ids.shape)}")
        if N and torch.unique(ids).numel() != N:
            raise PoseGraphError("vertex_ids: each pose needs its own id; some are repeated")
        if fixed is not None:
            fixed = torch.as_tensor(fixed, device=device)
            if fixed.shape != (N,):
                raise PoseGraphError(f"fixed: expected one flag per pose, shape ({N},), got {tuple(fixed.shape)}")
        self.poses = pp.Parameter(pp.Sim3(X.clone()) if similarity else pp.SE3(X.clone()))
        self.register_buffer("edges", edges)
        self.register_buffer("measurements", Z.to(X.dtype))
        self.register_buffer("information", info)
        self.register_buffer("sqrt_information", L.mT.contiguous())  # upper: Omega = L^T L
        self.register_buffer("vertex_ids", ids)
        self.register_buffer("fixed", torch.zeros(N, dtype=torch.bool, device=device) if fixed is None
                             else torch.as_tensor(fixed, dtype=torch.bool, device=device))
        self._set_priors(prior_index, prior_positions, prior_information, prior_lever_arms, X.dtype, device)
        self._check_resolution(X)

    def _check_resolution(self, X: Tensor) -> None:
        """Warn where the dtype holds positions more coarsely than a millimetre: float32 keeps 7
        digits, so map coordinates (4,000 km out) are rounded to 0.25 m before any solve sees them."""
        if self.poses.dtype == torch.float64 or X.device.type == "meta" or not X.numel():
            return
        k = 2 if self.dim == 2 else 3
        far = max(float(X.detach()[:, :k].abs().max()) if X.numel() else 0.0,
                  float(self.prior_positions.detach().abs().max()) if self.prior_positions.numel() else 0.0)
        step = float(spacing(torch.tensor(far, dtype=torch.float64, device="cpu"), self.poses.dtype))
        if step > _RESOLUTION:
            log.warning("%s: positions up to %.4g m from the origin are held in %s to %.2g m; use float64 "
                        "(read_g2o(..., dtype=torch.float64)) or move the graph near its origin",
                        self.name, far, self.poses.dtype, step)

    def _set_priors(self, index, positions, information, arms, dtype, device) -> None:
        given = [a is not None for a in (index, positions, information)]
        k = 2 if self.dim == 2 else 3
        if any(given) and not all(given):
            raise PoseGraphError("prior_index, prior_positions, prior_information: expected all three or none")
        if arms is not None and not any(given):
            raise PoseGraphError("prior_lever_arms: given without priors (prior_index, prior_positions, "
                                 "prior_information)")
        if not any(given):
            index = torch.zeros(0, dtype=torch.long, device=device)
            positions = torch.zeros(0, k, dtype=dtype, device=device)
            information = torch.zeros(0, k, k, dtype=dtype, device=device)
        elif self.similarity:
            raise PoseGraphError("prior_index: position priors are for SE3 and 2D graphs, not similarity graphs")
        try:
            index = index_tensor(index, "prior_index", device)
        except TypeError as e:
            raise PoseGraphError(f"{e} (the measured poses, (P,))") from None
        P, N = index.shape[0] if index.dim() == 1 else -1, self.num_poses
        positions = torch.as_tensor(positions, device=device)
        information = torch.as_tensor(information, device=device)
        if (index.dim() != 1 or tuple(positions.shape) != (P, k) or tuple(information.shape) != (P, k, k)
                or not positions.is_floating_point() or not information.is_floating_point()):
            raise PoseGraphError(f"prior_index (P,), prior_positions (P, {k}), prior_information (P, {k}, {k}) "
                                 f"expected (real numbers); got {tuple(index.shape)}, {tuple(positions.shape)}, "
                                 f"{tuple(information.shape)}")
        if P and (int(index.min()) < 0 or int(index.max()) >= N):
            raise PoseGraphError(f"prior_index: expected indices of poses in [0, {N}), got "
                                 f"{int(index.min())}..{int(index.max())}")
        for what, T in (("prior_positions", positions), ("prior_information", information)):
            ok = torch.isfinite(T.detach().flatten(1)).all(-1)
            if not ok.all():
                raise PoseGraphError(f"{what}: prior {int(torch.nonzero(~ok)[0])} has NaN or infinite values")
        info = information.to(dtype)
        info = 0.5 * (info + info.mT)
        L, status = torch.linalg.cholesky_ex(info)
        if (status != 0).any():
            raise PoseGraphError(f"prior_information: {int((status != 0).sum())} of {P} matrices are not positive "
                                 f"definite (the first: prior {int(torch.nonzero(status)[0])})")
        arms = torch.zeros(P, k, dtype=dtype, device=device) if arms is None else torch.as_tensor(arms, device=device)
        if not arms.is_floating_point() or arms.shape not in ((k,), (P, k)):
            raise PoseGraphError(f"prior_lever_arms: expected ({P}, {k}) or ({k},) real numbers (each measured point "
                                 f"in its pose's frame), got {tuple(arms.shape)}, dtype {arms.dtype}")
        if not bool(torch.isfinite(arms.detach()).all()):
            raise PoseGraphError("prior_lever_arms: contains NaN or infinite values")
        if P and not bool(self.fixed.any()):
            self._check_prior_gauge(positions.detach().double())
        self.register_buffer("prior_lever_arms", arms.to(dtype).expand(P, k).contiguous())
        self.register_buffer("prior_index", index)
        self.register_buffer("prior_positions", positions.to(dtype))
        self.register_buffer("prior_information", info)
        self.register_buffer("prior_sqrt_information", L.mT.contiguous())

    def _check_prior_gauge(self, p: Tensor) -> None:
        """Position priors alone hold a graph's rotation only if they are not all on one line (3D) or
        at one point (2D): the graph could turn about that line, or point, and keep every cost."""
        centred = p - p.mean(0)
        s = torch.linalg.svdvals(centred) if len(p) > 1 else p.new_zeros(1)
        scale = float(p.abs().max()) * 1e-12 + 1e-300  # the positions' rounding
        if self.dim == 2 and not float(s[0]) > scale:
            raise PoseGraphError(f"prior_positions: all {len(p)} priors are at one point, so the graph can turn "
                                 "about it; measure at least two different positions, or FIX a pose")
        if self.dim == 3 and not (len(s) > 1 and float(s[1]) > max(1e-9 * float(s[0]), scale)):
            raise PoseGraphError(f"prior_positions: all {len(p)} priors lie on one line, so the graph can turn "
                                 "about it; measure positions off that line, or FIX a pose")

    # ---- description -----------------------------------------------------------------
    @property
    def num_poses(self) -> int:
        return self.poses.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edges.shape[0]

    @property
    def num_priors(self) -> int:
        return self.prior_index.shape[0]

    @property
    def odometry(self) -> Tensor:
        """``(E,)`` bool: the edges between consecutive poses (in vertex-id order), an odometry's;
        the others are loop closures."""
        return (self.edges[:, 1] - self.edges[:, 0]).abs() == 1

    @property
    def tangent_dim(self) -> int:
        return 3 if self.dim == 2 else 7 if self.similarity else 6

    @property
    def group(self) -> str:
        """The solver's group of :meth:`state`: ``"SE2"``, ``"SE3"`` or ``"Sim3"``."""
        return "SE2" if self.dim == 2 else "Sim3" if self.similarity else "SE3"

    def extra_repr(self) -> str:
        sim = ", similarity=True" if self.similarity else ""
        priors = f", priors={self.num_priors}" if self.num_priors else ""
        return (f"name={self.name!r}, dim={self.dim}{sim}, poses={self.num_poses}, edges={self.num_edges}, "
                f"fixed={int(self.fixed.sum())}{priors}")

    @staticmethod
    def _vid(ids, k: int):
        return k if ids is None else int(ids[k])

    def _edge_name(self, k: int, edges=None, ids=None) -> str:
        edges = self.edges if edges is None else edges
        ids = getattr(self, "vertex_ids", None) if ids is None else ids
        i, j = (int(v) for v in edges[k])
        where = f" (line {self._edge_lines[k]})" if self._edge_lines else ""
        return f"edge {k} {self._vid(ids, i)}->{self._vid(ids, j)}{where}"

    # ---- states and residuals ------------------------------------------------------------
    def state(self, poses: Tensor | None = None) -> Tensor:
        """The optimization state: ``(N, 3)`` ``[x, y, theta]`` for 2D, ``(N, 7)`` poses for 3D,
        ``(N, 8)`` inverse similarities ``T^-1`` for a similarity graph (:class:`Sim3BetweenResidual`)."""
        X = (self.poses if poses is None else poses)
        X = X.as_subclass(Tensor) if isinstance(X, pp.LieTensor) else X
        return se3_to_se2(X) if self.dim == 2 else sim3_inverse(X) if self.similarity else X

    def poses_from_state(self, state: Tensor) -> pp.LieTensor:
        if self.similarity:
            return wrap_lie(sim3_inverse(state), pp.Sim3_type)
        return wrap_lie(se2_to_se3(state) if self.dim == 2 else state)

    def measurement_state(self) -> Tensor:
        return se3_to_se2(self.measurements) if self.dim == 2 else self.measurements

    def residual_function(self):
        if self.dim == 2:
            return SE2BetweenResidual()
        return Sim3BetweenResidual() if self.similarity else SE3BetweenResidual()

    def errors(self, poses: Tensor | None = None) -> Tensor:
        """Unwhitened edge errors ``Log(Z^-1 T_i^-1 T_j)``, ``(E, d)``."""
        S = self.state(poses)
        Xi, Xj = S[self.edges[:, 0]], S[self.edges[:, 1]]
        if self.dim == 2:
            return SE2BetweenResidual()(Xi, Xj, self.measurement_state())
        if self.similarity:
            return Sim3BetweenResidual.error(Xi, Xj, self.measurements)
        return se3_between(Xi, Xj, self.measurements)

    def residuals(self, poses: Tensor | None = None) -> Tensor:
        """Whitened residuals ``L e``, ``(E, d)``."""
        return (self.sqrt_information @ self.errors(poses).unsqueeze(-1)).squeeze(-1)

    def forward(self) -> Tensor:
        return self.residuals()

    def chi2(self, poses: Tensor | None = None) -> Tensor:
        """Per-edge ``e^T Omega e``, ``(E,)``."""
        return self.residuals(poses).square().sum(-1)

    def prior_points(self, poses: Tensor | None = None) -> Tensor:
        """The points the position priors measure, ``T a`` of each measured pose and its lever arm,
        ``(P, k)`` in the graph's world frame."""
        return PositionPriorResidual.point(self.state(poses)[self.prior_index], self.prior_lever_arms)

    def prior_residuals(self, poses: Tensor | None = None) -> Tensor:
        """The position priors' whitened residuals ``L (T a - p)``, ``(P, k)``."""
        S = self.state(poses)
        return PositionPriorResidual()(S[self.prior_index], self.prior_positions, self.prior_sqrt_information,
                                       self.prior_lever_arms)

    def squared_residuals(self, poses: Tensor | None = None) -> Tensor:
        """``(E + P,)``: each edge's ``e^T Omega e`` (:meth:`chi2`), then each position prior's."""
        s = self.chi2(poses)
        return torch.cat((s, self.prior_residuals(poses).square().sum(-1))) if self.num_priors else s

    def cost(self, poses: Tensor | None = None, kernel: RobustKernel | None = None) -> Tensor:
        """``0.5 * sum rho(e^T Omega e)`` over the edges and position priors (plain least squares
        without a kernel: GTSAM's error)."""
        s = self.squared_residuals(poses)
        return 0.5 * (s if kernel is None else kernel.rho(s)).sum()

    # ---- structure -----------------------------------------------------------------------
    def components(self) -> list[np.ndarray]:
        """Connected components as arrays of vertex ids (largest first)."""
        import scipy.sparse as sp
        from scipy.sparse.csgraph import connected_components

        N = self.num_poses
        e = self.edges.cpu().numpy()
        A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(N, N))
        n, labels = connected_components(A, directed=False)
        ids = self.vertex_ids.cpu().numpy()
        comps = [ids[labels == k] for k in range(n)]
        return sorted(comps, key=len, reverse=True)

    def check_connected(self) -> None:
        comps = self.components()
        if len(comps) > 1:
            desc = ", ".join(f"{len(c)} poses (ids {c[:3].tolist()}{'...' if len(c) > 3 else ''})" for c in comps[:5])
            more = f" and {len(comps) - 5} more" if len(comps) > 5 else ""
            raise PoseGraphError(f"{self.name} is not connected: {len(comps)} components: {desc}{more}; "
                                 "each needs its own anchor, so optimize them separately")
