"""The root-to-frame paths of a chain, compiled for small-batch IK on the CPU (numpy, float64).

A single IK target is latency-bound: a handful of restarts, a dozen iterations, each a forward
kinematics, a Jacobian and a 7x7 solve.  torch spends several microseconds per op on tensors
that small (the batched chain evaluation is ~60 ops), so this evaluator does the same
mathematics in about 25 numpy calls, vectorised over the problems *and* the joints:

* each joint frame is turned so that its axis is ``z`` (``C_i Q_i`` before the motion,
  ``Q_i^T`` folded into what follows), so joint ``i``'s local transform is ``C_i Motion_z(theta)``:
  ``[Rc + sin(theta) Rc K + (1 - cos(theta)) Rc K^2 | tc]`` for a rotation (Rodrigues,
  ``K = [z]x``), ``[Rc | tc + theta Rc z]`` for a translation.  Both are
  ``[1, sin, 1 - cos, theta] @ B_i`` with a constant ``(4, 12)`` basis ``B_i``: one matmul builds
  every local transform of every problem.
* the poses of the joint frames are the running product of those transforms (fixed joints
  folded into the constants ``C_i``); joint ``i``'s axis in the root frame is the third column
  of its rotation, and its Jacobian column is ``[z_i x (p_tip - p_i); z_i]`` (``[z_i; 0]`` when
  prismatic).
* mimic joints: ``theta = M q + o`` and the columns fold through ``M``.
* several frames (IK of a humanoid's hands and feet): their paths are padded to the longest with
  joints that do not move and evaluated together, the frame one more batch axis, so the number
  of calls is one path's.

The solver engine (:mod:`._lm_engine`, through :meth:`Chain.pose_and_jacobian`) serves large
batches and other devices; this path is checked against it.
"""

from __future__ import annotations

import numpy as np

from ..kinematics import Chain
from ..kinematics import JointType

__all__ = ["SerialPath", "FramePaths", "quat_to_matrix_np", "rotation_error"]


_QUAT_PRODUCTS = np.zeros((16, 9))  # R.flat = (q q^T).flat @ this + I.flat, q = [x, y, z, w] of unit length
_QUAT_TERMS = (  # entry of R: ((a, b), c) for each term c q_a q_b
    (((1, 1), -2), ((2, 2), -2)), (((0, 1), 2), ((2, 3), -2)), (((0, 2), 2), ((1, 3), 2)),
    (((0, 1), 2), ((2, 3), 2)), (((0, 0), -2), ((2, 2), -2)), (((1, 2), 2), ((0, 3), -2)),
    (((0, 2), 2), ((1, 3), -2)), (((1, 2), 2), ((0, 3), 2)), (((0, 0), -2), ((1, 1), -2)),
)
for _r, _terms in enumerate(_QUAT_TERMS):
    for (_a, _b), _c in _terms:
        _QUAT_PRODUCTS[4 * _a + _b, _r] = _c
_EYE_FLAT = np.eye(3).reshape(9)


def quat_to_matrix_np(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of unit quaternions ``(..., 4)`` in pypose's ``[qx, qy, qz, qw]``
    (three calls: one outer product, one matrix product with the constant map above)."""
    q = quat.reshape(-1, 4)
    R = (q[:, :, None] * q[:, None, :]).reshape(-1, 16) @ _QUAT_PRODUCTS + _EYE_FLAT
    return R.reshape(quat.shape[:-1] + (3, 3))


def _matrix(pose) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float64)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = quat_to_matrix_np(pose[3:]), pose[:3]
    return T


def _skew(a: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


def _z_to(a: np.ndarray) -> np.ndarray:
    """A rotation ``Q`` with ``Q e_z = a`` (unit ``a``)."""
    c = float(a[2])
    if c < -1.0 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    K = _skew(np.array([-a[1], a[0], 0.0]))  # [e_z x a]x
    return np.eye(3) + K + K @ K / (1.0 + c)


_VEE_TRACE = np.zeros((9, 4))  # R.flat @ this = [vee(R - R^T) / 2, trace(R)]
for _r, (_a, _b) in enumerate(((7, 5), (2, 6), (3, 1))):
    _VEE_TRACE[_a, _r], _VEE_TRACE[_b, _r] = 0.5, -0.5
_VEE_TRACE[[0, 4, 8], 3] = 1.0


def _segments(chain: Chain, frame: str) -> tuple[list, np.ndarray]:
    """``([(C_i Q_i, rotational, source joint, multiplier, offset), ...], tool)``: the movable
    joints on ``frame``'s path with the constant transforms before each (fixed joints folded in),
    and the transform after the last."""
    tree = chain.tree
    index = {j.name: k for k, j in enumerate(tree.actuated)}
    C = np.eye(4)
    segments = []
    for g in tree.path(frame)[1:]:
        j = tree.joint_of[g]
        C = C @ _matrix(j.origin.tolist())
        if j.type is JointType.FIXED:
            continue
        src, mult, off = (j.name, 1.0, 0.0) if j.mimic is None else tree.mimic[j.name]
        Q = np.eye(4)
        Q[:3, :3] = _z_to(np.asarray(j.axis, dtype=np.float64))
        segments.append((C @ Q, j.type.rotational, index[src], mult, off))
        C = Q.T
    return segments, C


class FramePaths:
    """The movable joints between ``chain``'s root and each of ``frames``, as numpy float64
    constants, evaluated together: the ``K`` paths are padded to the longest (``n`` joints) with
    joints that do not move, so one call of each kind serves every frame (a humanoid's hands and
    feet: a running product of 9 steps, not 4 products of 6 to 9).  A frame fixed to the root is a
    path of padding alone: its constant pose, and zero Jacobian rows."""

    def __init__(self, chain: Chain, frames: tuple[str, ...]):
        compiled = [_segments(chain, f) for f in frames]
        K, dof = len(frames), chain.dof
        n = max(1, max(len(segments) for segments, _ in compiled))
        self.n, self.K, self.dof, self.frames = n, K, dof, tuple(frames)
        basis = np.zeros((n, K, 4, 3, 4))
        basis[:, :, 0, :, :3] = np.eye(3)  # padding: [1, 0, 0, 0] @ basis = [I | 0]
        self.rotational = np.ones((n, K), dtype=bool)
        M, o = np.zeros((K, n, dof)), np.zeros((n, K))
        self.tool = np.empty((K, 1, 4, 4))
        Kz = _skew(np.array([0.0, 0.0, 1.0]))
        for k, (segments, tool) in enumerate(compiled):
            for i, (Ci, rot, src, mult, off) in enumerate(segments):
                Rc, tc = Ci[:3, :3], Ci[:3, 3]
                basis[i, k, 0, :, :3], basis[i, k, 0, :, 3] = Rc, tc
                if rot:
                    basis[i, k, 1, :, :3], basis[i, k, 2, :, :3] = Rc @ Kz, Rc @ Kz @ Kz
                else:
                    basis[i, k, 3, :, 3] = Rc[:, 2]
                self.rotational[i, k] = rot
                M[k, i, src], o[i, k] = mult, off
            self.tool[k, 0] = tool
        # the local transform of joint i of frame k: [1, sin, 1 - cos, theta] @ basis[i, k]
        self.basis = basis.reshape(n, K, 4, 12)
        self.all_rotational = bool(self.rotational.all())
        self.identity = K == 1 and n == dof and np.array_equal(M[0], np.eye(dof)) and not o.any()
        self.M_flat = M.transpose(2, 1, 0).reshape(dof, n * K)  # q @ this: the joints' angles, (P, n K)
        self.o = o[:, :, None]
        self.Mt = M.transpose(0, 2, 1).copy()  # (K, dof, n): folds the joints' columns into q's
        self.segments = [len(segments) for segments, _ in compiled]
        self.drives = (M != 0).any(1)  # (K, dof): the actuated joints that move each frame
        self.lead = (K,)  # the frame axis of the arrays inside (none for one frame's SerialPath)

    def evaluate(self, q: np.ndarray, jacobian: bool = True):
        """``(R (P, K, 3, 3), p (P, K, 3), Jt (P, dof, 6 K) or None)`` of the ``K`` frames for
        ``q (P, dof)``; ``Jt`` stacks their transposed geometric Jacobians (``[v, w]`` per frame)."""
        R, p, Jt = self._evaluate(q, jacobian)
        P = q.shape[0]
        return R.transpose(1, 0, 2, 3), p.transpose(1, 0, 2), None if Jt is None else Jt.reshape(P, self.dof, -1)

    def _evaluate(self, q: np.ndarray, jacobian: bool = True):
        """``(R (*lead, P, 3, 3), p (*lead, P, 3), Jt (P, dof, *lead, 6) or None)``, ``lead`` the
        frame axis ``(K,)`` (``()`` for one frame's :class:`SerialPath`); ``Jt`` is the transposed
        geometric Jacobian (rows per joint, ``[v, w]``, root frame).

        Arrays are joint-major inside (``(n, *lead, P, ...)``), so every product is one large
        matrix product or a batch of ``n`` of them, never ``P`` tiny ones."""
        P, n, lead = q.shape[0], self.n, self.lead
        theta = q.T if self.identity else (q @ self.M_flat).T
        if lead:
            theta = theta.reshape(n, lead[0], P)
        if not self.identity:
            theta = theta + self.o
        coef = np.empty(theta.shape + (4,))
        coef[..., 0] = 1.0
        np.sin(theta, out=coef[..., 1])
        np.cos(theta, out=coef[..., 2])
        np.subtract(1.0, coef[..., 2], out=coef[..., 2])
        coef[..., 3] = theta
        G = np.empty((n + 1,) + theta.shape[1:] + (4, 4))
        G[:n, ..., :3, :] = np.matmul(coef, self.basis).reshape(theta.shape + (3, 4))
        G[:n, ..., 3, :] = (0.0, 0.0, 0.0, 1.0)
        G[n] = self.tool
        for i in range(1, n + 1):  # running product: the joint frames in the root frame (a
            np.matmul(G[i - 1], G[i], out=G[i])  # log-depth scan saves 3 us at 16 problems, costs 3x at 256)
        R, p = G[n, ..., :3, :3], G[n, ..., :3, 3]
        if not jacobian:
            return R, p, None
        z = G[:n, ..., :3, 2]  # (n, *lead, P, 3) joint axes
        d = p - G[:n, ..., :3, 3]
        J = np.empty(theta.shape + (6,))
        for c in range(3):  # z x d, a component at a time (2.5x faster than one product with
            # the Levi-Civita tensor at 256 problems)
            a, b = (c + 1) % 3, (c + 2) % 3
            J[..., c] = z[..., a] * d[..., b] - z[..., b] * d[..., a]
        J[..., 3:] = z
        if not self.all_rotational:
            prismatic = ~self.rotational
            J[prismatic, :, :3] = z[prismatic]
            J[prismatic, :, 3:] = 0.0
        if self.identity:  # (P, n = dof, *lead, 6)
            return R, p, np.ascontiguousarray(J.transpose(2, 0, 1, 3) if lead else J.transpose(1, 0, 2))
        if not lead:
            J = (self.Mt @ J.reshape(n, P * 6)).reshape(self.dof, P, 6).transpose(1, 0, 2)
        else:
            K = lead[0]
            J = np.matmul(self.Mt, J.transpose(1, 0, 2, 3).reshape(K, n, P * 6))  # (K, dof, P 6)
            J = J.reshape(K, self.dof, P, 6).transpose(2, 1, 0, 3)
        return R, p, np.ascontiguousarray(J)


class SerialPath(FramePaths):
    """One frame's path: :class:`FramePaths` of one frame, its arrays without the frame axis
    (the latency of a lone target: a few microseconds a call less)."""

    def __init__(self, chain: Chain, frame: str):
        super().__init__(chain, (frame,))
        if not self.segments[0]:
            raise ValueError(f"frame {frame!r}: no joint moves it (it is fixed to the root {chain.tree.root!r})")
        self.frame, self.drives = frame, self.drives[0]  # (dof,): the actuated joints that move the frame
        self.lead = ()
        self.basis, self.tool, self.rotational = self.basis[:, 0], self.tool[0, 0], self.rotational[:, 0]
        self.o, self.Mt = self.o[:, 0], self.Mt[0]

    def evaluate(self, q: np.ndarray, jacobian: bool = True):
        """``(R (P, 3, 3), p (P, 3), Jt (P, dof, 6) or None)`` of the frame for ``q (P, dof)``."""
        return self._evaluate(q, jacobian)


def rotation_error(R_target: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Log(R* R^T) (P, 3), its angle (P,))``, exact up to an angle of pi."""
    E = R_target @ R.transpose(0, 2, 1)
    vt = E.reshape(-1, 9) @ _VEE_TRACE
    v = vt[:, :3]  # sin(angle) * axis
    s = np.sqrt((v * v).sum(-1))
    angle = np.arctan2(s, 0.5 * (vt[:, 3] - 1.0))
    near_pi = s < 1e-7
    if near_pi.any():  # sin(angle) ~ 0: the axis from the symmetric part (or zero rotation)
        for i in np.nonzero(near_pi & (angle >= 1.0))[0]:
            S = 0.5 * (E[i] + E[i].T) + np.eye(3)
            k = int(np.argmax(np.diag(S)))
            axis = S[:, k] / np.linalg.norm(S[:, k])
            v[i] = axis * s[i] if s[i] > 0 else axis
            s[i] = 1.0 if s[i] == 0 else s[i]
    # angle / s -> 1 as s -> 0 below a half turn; where s == 0 there, v == 0 and any scale does
    return v * (angle / np.maximum(s, 1e-300))[:, None], angle
