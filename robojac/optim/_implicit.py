"""The implicit backward: gradients through a minimum by the implicit function theorem.

At a minimum ``grad_d c(X*, theta) = 0``, so ``dX*/dtheta = -H^-1 d(grad_d c)/dtheta`` with ``H``
the cost's exact Hessian in the tangent space (Gauss-Newton's ``J^T W J`` plus the residuals'
second-order terms).  Small problems form ``H`` densely (a batch of them at once); one large
problem never does: its factors' own Hessians (each in the tangent space of the entries it
reads) are formed once, and conjugate gradients on their sum, preconditioned by the
Gauss-Newton factorization, solve with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._threads import backward_on_forward_threads
from ._linear import SparseLDL
from ._multifrontal import MultifrontalCholesky
from ._problem import DENSE_MAX, Linearization, Problem, hold_fixed, sparse_gauss_newton

__all__ = ["Context", "Implicit", "held_sources", "newton_steps"]


#: The damping (of the Hessian's largest diagonal entry) that makes a minimum that is not isolated
#: give the damped least-norm derivative, as ``ik.solve``'s gradient does.
NOT_ISOLATED = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-3}
#: A solve whose answer is this many times ``|gbar| / max|diag H|`` met a numerically singular
#: ``H`` (LU without an exact zero pivot): it is solved again, damped.
_HUGE = {torch.float64: 1e12, torch.float32: 1e6, torch.float16: 1e3, torch.bfloat16: 1e3}


def held_sources(problem: Problem) -> dict[int, Tensor]:
    """``{variable's position: its value}`` for the variables with fixed entries whose value
    requires grad: the fixed entries are data of the problem (the rest of such a value is only
    the start, and passes nothing)."""
    return {i: v.value for i, v in enumerate(problem.variables) if v.value.requires_grad and bool(v.fixed.any())}


class Context:
    """What the backward needs: the problem, the minimum, which problems converged (the others
    pass zero gradients) and the damping of a minimum that is not isolated."""

    def __init__(self, problem: Problem, values: tuple[Tensor, ...], converged: Tensor, damping: float):
        self.problem, self.values, self.converged, self.damping = problem, values, converged, damping
        self.preconditioner = None  # one large problem: the solver's last Gauss-Newton factor (its solve)
        self.gauss_newton = False  # the Hessian of the backward: the exact one, or J^T W J
        self.threads = None  # torch's CPU threads for the backward: the solve's (None: the caller's)
        self.active = None  # (B, n) bool: coordinates held on an active bound (they do not move with the data)
        self.sources = ()  # positions of the variables whose fixed values come last among the inputs (held_sources)


# the implicit backward of one large problem stops its conjugate gradients at this relative
# residual: preconditioned by the Gauss-Newton factorization they converge fast.  Measured on
# sphere2500's gradient to the measurements: 1e-6 moved it by 2.5e-8 (relative norm) from 1e-7
# (1e-10: 7 iterations; 1e-5: 1.5e-6 away); the tests check 1e-5 against central differences
BACKWARD_CG_TOLERANCE = 1e-6


def _factor_costs(problem: Problem, values: tuple[Tensor, ...], delta: Tensor) -> list[Tensor]:
    """Each factor's ``(B,)`` cost at ``Exp(delta) X``, fixed entries held (the data as the factors
    hold them: with their graph)."""
    lin = Linearization(problem, problem.retract(values, delta.masked_fill(problem.held, 0.0)))
    return [0.5 * f.kernel.rho(r.square().sum(-1)).sum(-1) for f, r in zip(problem.factors, lin.residuals)]


class FactorHessians:
    """The exact Hessian of one large problem as the sum of its factors' own, in closed form:
    for a factor with residual ``r``, Jacobian ``J`` (its closed form) and robust kernel ``rho``,
    ``rho' (J^T J + sum_k r_k d^2 r_k) + 2 rho'' (J^T r)(J^T r)^T``, the middle term from the
    residual's ``curvature(v, *X, *data)`` (``sum_k v_k d^2 r_k`` in the stacked left tangents of
    its slots).  ``H v`` is then a gather, a batched ``T x T`` product and a scatter (~1 ms on
    sphere2500), where a Hessian-vector product through the cost is a double backward (~26 ms).
    Built for the factors that have a closed form with ``curvature`` (:meth:`closed`); the
    others' part of a product goes through their cost."""

    @staticmethod
    def closed(f) -> bool:
        return hasattr(f.residual, "value_and_jacobians") and hasattr(f.residual, "curvature")

    def __init__(self, problem: Problem, values: tuple[Tensor, ...]):
        self.rows, self.blocks = [], []
        with torch.no_grad():
            lin = Linearization(problem, values, closed_forms=True)
            for i, f in enumerate(problem.factors):
                if not self.closed(f):
                    continue
                r = lin.residuals[i]
                J = torch.cat(lin.jacobians(i), -1)  # (B, F, m, T), fixed entries zero
                X = problem.gather(f, values)
                s = r.square().sum(-1)
                w = f.kernel.weight(s)  # rho'
                H = w[..., None, None] * (J.transpose(-1, -2) @ J) + f.residual.curvature(w[..., None] * r, *X, *f.data)
                if f.kernel.name != "none":  # 2 rho'' (J^T r)(J^T r)^T
                    with torch.enable_grad():
                        s_ = s.detach().requires_grad_(True)
                        (slope,) = torch.autograd.grad(f.kernel.weight(s_).sum(), s_)
                    Jr = (J.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
                    H = H + 2 * slope[..., None, None] * Jr.unsqueeze(-1) * Jr.unsqueeze(-2)
                held = torch.cat([v.fixed[:, f.index[:, k], None].expand(-1, -1, v.group.tangent_dim)
                                  for k, v in enumerate(f.variables)], -1)  # (B, F, T)
                if bool(held.any()):
                    H = H.masked_fill(held[..., :, None] | held[..., None, :], 0.0)
                self.blocks.append(H)
                self.rows.append(torch.cat([problem.rows(f, k) for k in range(len(f.variables))], 1))  # (F, T)

    def apply(self, v: Tensor) -> Tensor:
        """``H v`` for ``v (n,)`` of the one problem (fixed entries contribute nothing)."""
        out = torch.zeros_like(v)
        for rows, H in zip(self.rows, self.blocks):
            out.index_add_(0, rows.flatten(), (H[0] @ v[rows].unsqueeze(-1)).flatten())
        return out


def _cg(apply, preconditioner, b: Tensor) -> Tensor:
    """Preconditioned conjugate gradients to :data:`BACKWARD_CG_TOLERANCE` (relative residual)."""
    x = torch.zeros_like(b)
    bnorm = float(b.norm())
    if bnorm == 0:
        return x
    r = b.clone()
    z = preconditioner(r).to(b.dtype)
    p = z.clone()
    rz = torch.dot(r, z)
    for _ in range(200):
        Ap = apply(p)
        alpha = rz / torch.dot(p, Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        if float(r.norm()) <= BACKWARD_CG_TOLERANCE * bnorm:
            break
        z = preconditioner(r).to(b.dtype)
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x


def _gauss_newton_preconditioner(problem: Problem, values: tuple[Tensor, ...], held: Tensor, damping: float):
    """The Gauss-Newton factorization's solve at ``values``, and the ridge ``damping`` asks for
    (relative to the system's largest entry); entries ``held (n,)`` that no factor weighs get
    the identity's diagonal (the fixed ones have it)."""
    with torch.no_grad():
        H_gn = sparse_gauss_newton(Linearization(problem, values), held)
    factor = SparseLDL(H_gn) if H_gn.device.type == "cpu" else MultifrontalCholesky(H_gn, 1)
    return factor.solve, (damping * float(H_gn.values().abs().max()) if damping else 0.0)


def _solve_sparse(problem: Problem, values: tuple[Tensor, ...], held: Tensor, rhs: Tensor, damping: float,
                  preconditioner, apply_exact) -> Tensor:
    """``H^-1 rhs`` for one large problem: conjugate gradients on the exact Hessian's products
    ``apply_exact``, preconditioned by the Gauss-Newton factorization, which near a minimum is
    nearly the exact Hessian (a few iterations).  ``held (1, n)``: entries whose rows are the
    identity's (fixed, or weighed by no factor)."""
    held = held[0]
    scale = 0.0
    if preconditioner is None:
        preconditioner, scale = _gauss_newton_preconditioner(problem, values, held, damping)
    inner = preconditioner

    def preconditioner(r):  # held entries: identity (the factor may hold a damping floor there)
        return torch.where(held, r, inner(r).to(r.dtype))

    def apply(v):  # held entries: identity
        hv = apply_exact(v).masked_fill(held, 0.0)
        return hv + torch.where(held, v, torch.zeros_like(v)) + scale * v

    return _cg(apply, preconditioner, rhs[0])[None]


def _dense_hessian(grad: Tensor, delta: Tensor, n: int) -> Tensor:
    """``(B, n, n)``: every Hessian-vector product in one vmapped double backward (54 separate
    ones took 0.12 s on a 9-pose graph, the batched one 0.02 s); a graph whose backward cannot be
    vmapped takes them one at a time."""
    eye = torch.eye(n, dtype=grad.dtype, device=grad.device)[:, None, :].expand(n, grad.shape[0], n)
    try:
        (rows,) = torch.autograd.grad(grad, delta, grad_outputs=eye, retain_graph=True, is_grads_batched=True)
        return rows.movedim(0, -1).detach()  # H is symmetric: row i of the products is column i
    except RuntimeError:
        cols = [torch.autograd.grad(grad[:, i].sum(), delta, retain_graph=True)[0] for i in range(n)]
        return torch.stack(cols, -1).detach()


def newton_steps(problem: Problem, values: tuple[Tensor, ...], converged: Tensor, steps: int = 2) -> tuple:
    """Newton steps with the cost's exact Hessian (many small problems; those ``converged``,
    fixed entries and coordinates on an active bound held): where Gauss-Newton's model lacks the
    residuals' curvature that an answer cannot do without.  A constraint's stiff augmented term
    (``robojac.optim._constraints.Stiff``) is such a residual: at the constrained minimum it is
    ``lambda / sqrt(w)``, not zero, and its curvature times that is the multiplier times the
    constraint's curvature, the Lagrangian's (the unit ball's projection of ``(2, 1, -2)``: from
    3.3e-7 off the minimum along the sphere a Gauss-Newton step went to 6.6e-7, one Newton step
    to 3.1e-8 and two to 6.8e-14).  A step whose system is not positive definite, or that raises
    the cost, is not taken."""
    B, n = problem.batch, problem.size
    for _ in range(steps):
        with torch.enable_grad():
            delta = values[0].new_zeros(B, n, requires_grad=True)
            costs = sum(_factor_costs(problem, values, delta))
            grad = torch.autograd.grad(costs.sum(), delta, create_graph=True)[0]
            H = _dense_hessian(grad, delta, n)
        g = grad.detach()
        held = problem.held
        if problem.bounded:
            held = held | problem.at_bounds(values, g)
        g = g.masked_fill(held, 0.0)
        if not bool((converged & (g.abs().amax(-1) > 0)).any()):
            break
        L, info = torch.linalg.cholesky_ex(hold_fixed(H, held))
        ok = converged & (info == 0)
        step = torch.cholesky_solve(-g[..., None], L)[..., 0]
        ok = ok & torch.isfinite(step).all(-1)
        trial = problem.retract(values, torch.where(ok[:, None], step, torch.zeros_like(step)))
        with torch.no_grad():
            zero = values[0].new_zeros(B, n)
            before, after = (sum(_factor_costs(problem, v, zero)) for v in (values, trial))
        take = ok & (after <= before + 1e-12 * before.abs())  # (a step to the minimum may read as a rounding rise)
        values = tuple(torch.where(take.reshape((B,) + (1,) * (x.dim() - 1)), t, x) for t, x in zip(trial, values))
    return values


def _dense_solve(H: Tensor, gbar: Tensor, damping: float) -> tuple[Tensor, Tensor]:
    """``(H^-1 gbar, info)`` for a batch of dense ``H (B, n, n)``, ``damping`` times each one's
    largest diagonal entry added to its diagonal (the damped least-norm derivative).  Without
    ``damping``, a problem whose ``H`` is singular (a minimum that is not isolated: a redundant
    arm's self-motion) is solved again with :data:`NOT_ISOLATED` of it, rather than passing no
    gradient."""
    B, n = gbar.shape

    def damped(d: float) -> Tensor:
        return H + d * torch.diag_embed(H.diagonal(dim1=-2, dim2=-1).amax(-1, keepdim=True).expand(B, n))

    if damping:
        return torch.linalg.solve_ex(damped(damping), gbar)
    lam, info = torch.linalg.solve_ex(H, gbar)
    scale = H.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp(min=torch.finfo(H.dtype).tiny)
    failed = (info != 0) | ~torch.isfinite(lam).all(-1) | (lam.abs().amax(-1) * scale > _HUGE[H.dtype] *
                                                          gbar.abs().amax(-1).clamp(min=torch.finfo(H.dtype).tiny))
    if not bool(failed.any()):
        return lam, info
    lam2, info2 = torch.linalg.solve_ex(damped(NOT_ISOLATED[H.dtype]), gbar)
    return torch.where(failed[:, None], lam2, lam), torch.where(failed, info2, info)


def _kept(lam: Tensor, info: Tensor, converged: Tensor) -> Tensor:
    """``lam (B, n)`` where its problem converged and the solve gave a finite answer; zero (no
    gradient) elsewhere."""
    ok = (info == 0) & converged & torch.isfinite(lam).all(-1)
    return torch.where(ok[:, None], lam, torch.zeros_like(lam))


def _gauss_newton_grads(problem: Problem, values: tuple[Tensor, ...], held: Tensor, gbar: Tensor,
                        converged: Tensor, damping: float, thetas: tuple[Tensor, ...]) -> tuple:
    """The data's gradients for ``hessian="gauss_newton"`` (dense problems).  The residuals
    linearized at the answer, ``r + J dX + R dtheta``, have their weighted least-squares
    minimum at ``dX = -H^-1 J^T W R dtheta`` (``H = J^T W J``, ``W`` the robust weights there),
    so the product with the upstream ``gbar`` is ``-R^T W J lambda``, ``lambda = H^-1 gbar``.
    That is one closed-form linearization and one backward through the residuals with the
    values held: a chain's kinematics is not differentiated again.  The exact Hessian's
    branch also differentiates ``J`` by the data (``(dJ/dtheta)^T W r``): a term as small as
    the residual, which this Hessian has dropped already.  That branch, a double backward
    through the cost with the kinematics in it, cost a lone Panda target 4.8-6.3 ms (3.3x its
    solve) and a lone TALOS target set of four frames 11.7-14.9 ms (3.0x); this one 2.1-2.2 and
    3.3-3.5 ms, and 10,000 Panda targets 37-39 -> 18 ms (``benchmarks/gradients.py``)."""
    with torch.enable_grad():
        lin = Linearization(problem, values, closed_forms=True)  # the residuals live in the data
    fixed = lin.detached()
    with torch.no_grad():
        lam, info = _dense_solve(hold_fixed(fixed.normal_equations()[0], held), gbar, damping)
        lam = _kept(lam, info, converged)
        seeds = []  # W J lambda, per factor (B, F, m)
        for i, f in enumerate(problem.factors):
            Jl = sum((Jk @ lam[:, problem.rows(f, k), None])[..., 0] for k, Jk in enumerate(fixed.blocks[i]))
            w = f.kernel.row_weights(fixed.residuals[i])
            seeds.append(Jl if w is None else w[..., None] * Jl)
    live = [(r * s).sum() for r, s in zip(lin.residuals, seeds) if r.requires_grad]
    if not live:
        return (None,) * len(thetas)
    grads = torch.autograd.grad(sum(live), thetas, allow_unused=True)
    return tuple(None if g is None else -g for g in grads)


class Implicit(torch.autograd.Function):
    """The answer as a function of the factor data, differentiated by the implicit function
    theorem (see the module's docstring)."""

    @staticmethod
    def forward(ctx, context: Context, *inputs):
        ctx.context = context
        ctx.threads = context.threads
        ctx.save_for_backward(*inputs)
        return tuple(v.detach().clone() for v in context.values)

    @staticmethod
    @backward_on_forward_threads
    def backward(ctx, *grad_values):
        problem, converged, damping = ctx.context.problem, ctx.context.converged, ctx.context.damping
        inputs = ctx.saved_tensors
        sources = ctx.context.sources
        thetas = inputs[: len(inputs) - len(sources)]
        values = tuple(v.detach() for v in ctx.context.values)
        # the fixed entries' own values flow straight to the answer's fixed entries
        direct = [None if grad_values[i] is None else grad_values[i] * problem.variables[i].fixed[..., None]
                  for i in sources]
        B, n = problem.batch, problem.size
        nothing = (None,) + tuple(None for _ in thetas) + tuple(direct)
        with torch.enable_grad():
            if sources:  # the fixed entries live in the cost: its gradient moves with them
                live = list(values)
                for i, src in zip(sources, inputs[len(thetas):]):
                    live[i] = torch.where(problem.variables[i].fixed[..., None], src, values[i])
                values = tuple(live)
            delta = values[0].new_zeros(B, n, requires_grad=True)
            # the upstream gradient in tangent coordinates: d(values)/d(delta) at delta = 0
            moved = problem.retract(values, delta)
            seed = sum((m * g).sum() for m, g in zip(moved, grad_values) if g is not None)
            if not isinstance(seed, Tensor):
                return nothing
            gbar = torch.autograd.grad(seed, delta, allow_unused=True)[0]
            if gbar is None:
                return nothing
            # fixed entries, and those no factor weighs (their answer does not move with the data)
            with torch.no_grad():
                held = problem.held | problem.unweighed(values)
                if ctx.context.active is not None:
                    held = held | ctx.context.active
            gbar = gbar.masked_fill(held, 0.0).detach()
            if ctx.context.gauss_newton and not (B == 1 and n > DENSE_MAX):  # (attach_gradients: no sources)
                return (None,) + _gauss_newton_grads(problem, values, held, gbar, converged, damping, thetas)
            # grad_d c with the data live
            costs = _factor_costs(problem, values, delta)
            grad = torch.autograd.grad(sum(costs).sum(), delta, create_graph=True)[0]
            if B == 1 and n > DENSE_MAX:  # one large problem: never the dense Hessian
                closed = [FactorHessians.closed(f) for f in problem.factors] if not problem.bounded else []
                through = grad  # the products through the cost: of every factor, or of those without curvature
                if any(closed):
                    hessians = FactorHessians(problem, values)
                    rest = [c for c, done in zip(costs, closed) if not done]
                    through = torch.autograd.grad(sum(rest).sum(), delta, create_graph=True)[0] if rest else None

                def product(v):
                    out = hessians.apply(v) if any(closed) else torch.zeros_like(v)
                    if through is not None:
                        out = out + torch.autograd.grad(through, delta, grad_outputs=v[None], retain_graph=True)[0][0]
                    return out

                lam = _solve_sparse(problem, values, held, gbar, damping, ctx.context.preconditioner, product).detach()
                info = torch.zeros(1, dtype=torch.int32, device=lam.device)
            else:
                lam, info = _dense_solve(hold_fixed(_dense_hessian(grad, delta, n), held), gbar, damping)
            lam = _kept(lam, info, converged)
            grads = torch.autograd.grad((grad * lam).sum(), inputs, allow_unused=True)
        out = [None if g is None else -g for g in grads]
        for k, d in enumerate(direct):
            j = len(thetas) + k
            out[j] = out[j] if d is None else d if out[j] is None else out[j] + d
        return (None,) + tuple(out)
