"""Shared test helpers: batch shapes, manifold finite differences, closeness with tolerance."""

from __future__ import annotations

import math

import numpy as np
import pypose as pp
import torch

# jaxlie's harness idea: every group test over several leading batch shapes
BATCH_SHAPES = [(), (1,), (3,), (3, 1, 2)]

GROUPS = {
    "SO3": (pp.SO3_type, pp.so3_type, 3),
    "SE3": (pp.SE3_type, pp.se3_type, 6),
    "RxSO3": (pp.RxSO3_type, pp.rxso3_type, 4),
    "Sim3": (pp.Sim3_type, pp.sim3_type, 7),
}


def random_group(name: str, shape=(), dtype=torch.float64, device="cpu", sigma=1.0) -> pp.LieTensor:
    fn = {"SO3": pp.randn_SO3, "SE3": pp.randn_SE3, "RxSO3": pp.randn_RxSO3, "Sim3": pp.randn_Sim3}[name]
    return fn(*shape, sigma=sigma, dtype=dtype, device=device)


def left_perturb(X: pp.LieTensor, d: torch.Tensor) -> pp.LieTensor:
    """``Exp(d) * X`` with pypose's own operations (values only)."""
    _, alg, _ = GROUPS[_name(X)]
    return pp.LieTensor(d, ltype=alg).Exp() * X


def _name(X) -> str:
    for name, (lt, _, _) in GROUPS.items():
        if X.ltype is lt:
            return name
    raise ValueError(X.ltype)


def manifold_fd(f, X: pp.LieTensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of ``f(Exp(d) X)`` in every tangent direction of every element.

    Returns ``f(X).shape + X.lshape + (dof,)`` (the layout of robojac's tangent Jacobians).
    """
    dof = GROUPS[_name(X)][2]
    out = f(X)
    J = torch.zeros(out.shape + X.shape[:-1] + (dof,), dtype=out.dtype, device=out.device)
    flat = J.view(out.shape + (-1,))
    for n in range(X.shape[:-1].numel() * dof if X.dim() > 1 else dof):
        d = torch.zeros(X.shape[:-1].numel() * dof, dtype=X.dtype, device=X.device)
        d[n] = eps
        d = d.view(X.shape[:-1] + (dof,))
        flat[..., n] = (f(left_perturb(X, d)) - f(left_perturb(X, -d))) / (2 * eps)
    return J


def euclid_fd(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of ``f`` at ``x``: ``f(x).shape + x.shape``."""
    out = f(x)
    J = torch.zeros(out.shape + (x.numel(),), dtype=out.dtype, device=out.device)
    for n in range(x.numel()):
        d = torch.zeros(x.numel(), dtype=x.dtype, device=x.device)
        d[n] = eps
        d = d.view(x.shape)
        J[..., n] = (f(x + d) - f(x - d)) / (2 * eps)
    return J.view(out.shape + x.shape)


def per_sample_hessian_fd(f, x: torch.Tensor, h: float = 1e-4) -> torch.Tensor:
    """Second central differences ``(k, n, n)`` of a per-sample scalar ``f: (k, n) -> (k,)`` at
    ``x (k, n)`` (each sample's Hessian, all samples stepped at once)."""
    k, n = x.shape
    H = x.new_zeros(k, n, n)
    for i in range(n):
        for j in range(n):
            di, dj = torch.zeros_like(x), torch.zeros_like(x)
            di[:, i], dj[:, j] = h, h
            H[:, i, j] = (f(x + di + dj) - f(x + di - dj) - f(x + dj - di) + f(x - di - dj)) / (4 * h * h)
    return H


def max_err(a, b) -> float:
    """The largest absolute difference; both on one device (a test that mixes devices fails here)."""
    a = a.as_subclass(torch.Tensor) if hasattr(a, "ltype") else a
    b = b.as_subclass(torch.Tensor) if hasattr(b, "ltype") else torch.as_tensor(b, device=a.device)
    if a.device != b.device:
        raise AssertionError(f"compared tensors on {a.device} and {b.device}")
    return float((a - b).detach().abs().max()) if a.numel() else 0.0


def pinocchio_configuration(pin, model, chain, q):
    """Pinocchio's q for the chain's ``q (dof,)``, joint by name, with the mimic relation applied
    (Pinocchio treats mimic joints as free)."""
    vals = dict(zip(chain.joint_names, q.tolist()))
    for m, (src, mult, off) in chain.tree.mimic.items():
        vals[m] = mult * vals[src] + off
    qp = pin.neutral(model)
    for name, v in vals.items():
        j = model.joints[model.getJointId(name)]
        if j.nq == 2:  # continuous joints are (cos, sin) in Pinocchio
            qp[j.idx_q : j.idx_q + 2] = [math.cos(v), math.sin(v)]
        else:
            qp[j.idx_q] = v
    return qp


def coal_capsule(coal, a, b, r):
    """``(coal.Capsule, coal.Transform3s)`` of the capsule ``a``-``b`` of radius ``r`` (coal's
    capsules lie along their own z, about their centre)."""
    import numpy as np

    d = b - a
    length = float(np.linalg.norm(d))
    z = d / length if length > 0 else np.array([0.0, 0.0, 1.0])
    x = np.cross(z, [1.0, 0.0, 0.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    return coal.Capsule(r, length), coal.Transform3s(np.stack([x, np.cross(z, x), z], 1), (a + b) / 2)


def pinocchio_collision(pin, coal, urdf: str, model_c, world):
    """``(model, geometry_model)``: Pinocchio's model of ``urdf`` with a ``RobotCollision``'s
    shapes as geometry objects on the same links, then ``world``'s obstacles on the universe,
    and collision pairs in robojac's order: the self-collision pairs, then each shape with each
    obstacle (``distances(q, world).flatten(-2)``'s order)."""
    import numpy as np

    model = pin.buildModelFromUrdf(urdf)
    gm = pin.GeometryModel()
    for k, (link, (a, b), r) in enumerate(zip(model_c.links, model_c.segments.tolist(), model_c.radii.tolist())):
        fid = model.getFrameId(link)
        g, T = coal_capsule(coal, np.array(a), np.array(b), r)
        placement = model.frames[fid].placement * pin.SE3(T.getRotation(), T.getTranslation())
        gm.addGeometryObject(pin.GeometryObject(f"shape{k}", model.frames[fid].parentJoint, fid, placement, g))
    for k, s in enumerate(world.shapes):
        kind = type(s).__name__
        if kind in ("Sphere", "Capsule"):
            a, b = (np.array(s.center),) * 2 if kind == "Sphere" else (np.array(s.a), np.array(s.b))
            g, T = coal_capsule(coal, a, b, s.radius)
            M = pin.SE3(T.getRotation(), T.getTranslation())
        elif kind == "Box":
            g = coal.Box(*(2 * np.array(s.half_extents)))
            H = pp.SE3(torch.tensor(s.pose, dtype=torch.float64)).matrix().numpy()
            M = pin.SE3(H[:3, :3], H[:3, 3])
        else:
            g, M = coal.Halfspace(np.array(s.normal), s.offset), pin.SE3.Identity()
        gm.addGeometryObject(pin.GeometryObject(f"obstacle{k}", 0, 0, M, g))
    for i, j in model_c.pairs.tolist():
        gm.addCollisionPair(pin.CollisionPair(i, j))
    G = len(model_c.links)
    for i in range(G):
        for k in range(len(world.shapes)):
            gm.addCollisionPair(pin.CollisionPair(i, G + k))
    return model, gm


class Stacked:
    """robojac's factors of one trajectory (``spec``: ``(residual, index (F, K))`` pairs, as
    ``motion.trajopt`` builds them) stacked densely over its free waypoints ``x ((T-2) n,)``, the
    ends held at ``q_start`` and ``q_end``: residuals ``r (m,)`` and Jacobian ``J (m, (T-2) n)``
    from their closed forms, in numpy, for SciPy's solvers."""

    def __init__(self, spec, q_start, q_end, T):
        self.spec, self.a, self.b, self.T, self.n = spec, q_start, q_end, T, q_start.numel()
        self._last = (None, None)  # SciPy asks for the residuals and the Jacobian at one x in two calls

    def __call__(self, x):
        key = np.asarray(x, dtype=np.float64).tobytes()
        if self._last[0] != key:
            self._last = (key, self._evaluate(x))
        return self._last[1]

    def waypoints(self, x):
        mid = torch.as_tensor(x, dtype=torch.float64, device="cpu").reshape(self.T - 2, self.n)
        return torch.cat((self.a[None], mid, self.b[None]))

    def _evaluate(self, x):
        Q = self.waypoints(x)
        rs, Js = [], []
        for residual, idx in self.spec:
            r, blocks = residual.value_and_jacobians(*(Q[idx[:, k]][None] for k in range(idx.shape[1])))
            F, m = r.shape[1:]
            J = torch.zeros(F, m, self.T, self.n, dtype=torch.float64, device="cpu")
            for k, Jk in enumerate(blocks):
                J[torch.arange(F, device="cpu"), :, idx[:, k]] += Jk[0]
            rs.append(r[0].reshape(-1))
            Js.append(J.reshape(F * m, self.T * self.n))
        J = torch.cat(Js)[:, self.n : -self.n]
        return torch.cat(rs).detach().numpy(), J.detach().numpy()


TALOS_FEET = ["left_sole_link", "right_sole_link"]
TALOS_HANDS = ["gripper_left_base_link", "gripper_right_base_link"]
#: an assumed sole of 0.20 m by 0.10 m about each sole frame (TALOS' foot meshes are not shipped)
TALOS_SOLE = ((0.1, 0.05, 0.0), (-0.1, 0.05, 0.0), (-0.1, -0.05, 0.0), (0.1, -0.05, 0.0))


def talos_standing(talos):
    """``(stand (dof,), X (4, 7), polygon (V, 2))``: TALOS on a floating base standing with its
    soles on the ground (z = 0), its soles' and hands' poses, and the soles' support polygon."""
    from robojac import ik, lie

    stand = torch.zeros(talos.dof, dtype=torch.float64, device="cpu")
    stand[2] = -float(talos.forward_kinematics_tensor(stand, TALOS_FEET)[0, 2])
    X = talos.forward_kinematics_tensor(stand, TALOS_FEET + TALOS_HANDS)
    sole = torch.tensor(TALOS_SOLE, dtype=torch.float64, device="cpu")
    return stand, X, ik.support_polygon(lie.se3_act(X[:2, None, :], sole[None]).reshape(-1, 3))


def nearest_standing(talos, stand, T, polygon, q0, *, margin=0.03, balance=True, config=None):
    """TALOS' whole-body problem on robojac's engine: the joints nearest ``stand`` (the pelvis'
    position free), the soles at ``T[:, :2]`` and the hands at ``T[:, 2:, :3]`` (equalities), the
    centre of mass ``margin`` inside ``polygon (B, 1, V, 2)`` (an inequality, unless not
    ``balance``), from ``q0 (B, dof)``."""
    from robojac import ik, optim

    B = len(q0)
    lo, hi = talos.joint_limits
    q = optim.Variable("Rn", q0[:, None].clone(), lower=lo, upper=hi, name="q")
    w = torch.ones(talos.dof, dtype=torch.float64, device="cpu")
    w[:3] = 0.0
    posture = optim.Factor(ik.PostureTask(talos, weights=w), [q], data=(stand.expand(B, 1, -1),))
    cons = [optim.Constraint(ik.FramesTask(talos, TALOS_FEET + TALOS_HANDS, position_only=[False, False, True, True]),
                             [q], data=(T[:, None],), kind="eq", name="frames")]
    if balance:
        cons.append(optim.Constraint(ik.BalanceConstraint(talos, margin=margin), [q], data=(polygon,), kind="leq",
                                     name="balance"))
    return optim.solve([q], [posture], config or optim.SolverConfig(), constraints=cons)


def slsqp_nearest_standing(talos, stand, T, polygon, q0, *, margin=0.03):
    """The same problem for one target set (``T (4, 7)``, ``polygon (V, 2)``, ``q0 (dof,)``) by
    SciPy's SLSQP, the constraints' values and Jacobians from robojac's closed forms (the hands'
    zero rotation rows left out): ``scipy.optimize.OptimizeResult``."""
    from scipy import optimize

    from robojac import ik

    w = torch.ones(talos.dof, dtype=torch.float64, device="cpu")
    w[:3] = 0.0
    frames = ik.FramesTask(talos, TALOS_FEET + TALOS_HANDS, position_only=[False, False, True, True])
    balance = ik.BalanceConstraint(talos, margin=margin)
    rows = [k for k in range(24) if k not in (15, 16, 17, 21, 22, 23)]
    T, P = T[None, None], polygon[None, None]

    def at(z):
        return torch.as_tensor(z, dtype=torch.float64)[None, None]

    def cost(z):
        r = w * (torch.as_tensor(z) - stand)
        return 0.5 * float(r @ r), (w * r).numpy()

    cons = [{"type": "eq", "fun": lambda z: frames(at(z), T)[0, 0, rows].numpy(),
             "jac": lambda z: frames.value_and_jacobians(at(z), T)[1][0][0, 0, rows].numpy()},
            {"type": "ineq", "fun": lambda z: -balance(at(z), P)[0, 0].numpy(),
             "jac": lambda z: -balance.value_and_jacobians(at(z), P)[1][0][0, 0].numpy()}]
    lo, hi = talos.joint_limits
    return optimize.minimize(cost, q0.numpy(), jac=True, method="SLSQP", constraints=cons,
                             bounds=list(zip(lo.numpy(), hi.numpy())), options={"ftol": 1e-14, "maxiter": 500})
