"""Make pypose's Lie-group operations differentiate in their stored numbers.

pypose's operations (``Act``, ``Mul``, ``Inv``, ``Log``, ``Exp``, ``Adj``...) are
``torch.autograd.Function``s whose backward hands a group input the *left-tangent* cotangent
padded with a zero, while plain tensor operations on the same LieTensor (``X.translation()``,
indexing, ``X.tensor()``) hand back cotangents of the stored numbers.  Autograd adds the two at
the same leaf, so any model that mixes them gets a silently wrong gradient, and forward mode
fails because the Functions define no ``jvp``.

Inside :func:`raw_autograd`, each of those Functions is replaced by one whose derivative is
the ordinary derivative with respect to stored numbers:

    backward(g) = P(X)^T  pypose_backward( M(Z)^T g )          (Z the output, X an input)

with ``M``/``P`` from :mod:`robojac.lie._tangent`, plus a ``jvp`` built from the same local
Jacobian.  Values are unchanged.  Outside the context pypose behaves exactly as before: the
switch is a :class:`contextvars.ContextVar`, so other threads are unaffected.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

import torch
from pypose.lietensor import operation as _op

from ._ops import sim3_left_jacobian, sim3_left_jacobian_inverse
from ._tangent import GroupSpec, group_spec, raw_from_tangent, tangent_from_raw

__all__ = ["raw_autograd", "raw_autograd_enabled"]

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("robojac_raw_autograd", default=False)
_INSTALL_LOCK = threading.Lock()
_INSTALLED = False
_WRAPPERS: dict[type, type] = {}


def raw_autograd_enabled() -> bool:
    """Whether :func:`raw_autograd` is active in this context."""
    return _ENABLED.get()


@contextlib.contextmanager
def raw_autograd():
    """Within this block, pypose Lie operations differentiate in stored numbers (see module doc).

    Used by :mod:`robojac.jacobian` so that tangent-space Jacobians are correct whatever a
    model does with a pose's raw numbers, and so that forward-mode AD works on LieTensors.
    """
    _install()
    token = _ENABLED.set(True)
    try:
        yield
    finally:
        _ENABLED.reset(token)


class _Ctx:
    """Stand-in for an autograd ctx, to call pypose's ``setup_context``/``backward``."""

    saved_tensors: tuple = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


def _spec_table() -> dict[str, tuple[tuple[GroupSpec | None, ...], GroupSpec | None]]:
    table = {}
    for G, g in (("SO3", "so3"), ("SE3", "se3"), ("RxSO3", "rxso3"), ("Sim3", "sim3")):
        S = group_spec(G)
        table[f"{G}_Log"] = ((S,), None)
        table[f"{g}_Exp"] = ((None,), S)
        for name in ("Act", "Act4", "AdjXa", "AdjTXa"):
            table[f"{G}_{name}"] = ((S, None), None)
        table[f"{G}_Mul"] = ((S, S), S)
        table[f"{G}_Inv"] = ((S,), S)
    return table


def _sim3_log_backward(inputs, output, g_out):
    # d Log(Exp(d) X) / dd = Jl(Log X)^-1, which robojac.lie gives directly
    g = (sim3_left_jacobian_inverse(output).transpose(-1, -2) @ g_out.unsqueeze(-1)).squeeze(-1)
    return (torch.cat((g, g.new_zeros(g.shape[:-1] + (1,))), dim=-1),)


def _sim3_exp_backward(inputs, output, g_out):
    # d Exp(x) = Exp(Jl(x) dx) Exp(x) on the left
    (x,) = inputs
    return ((sim3_left_jacobian(x).transpose(-1, -2) @ g_out[..., :-1].unsqueeze(-1)).squeeze(-1),)


def _adjoint_transpose_backward(adjoint, ad):
    """The backward of pypose's ``AdjT``, whose forward is ``f = Ad(X^-1) a`` (the transpose of
    ``Ad(X)`` only in SO3 and RxSO3, whose adjoints are orthogonal).  With ``X' = Exp(d) X``,
    ``df/dd = Ad(X^-1) ad(a)`` and ``df/da = Ad(X^-1)``.  pypose's backward uses ``Ad(X)`` for
    ``Ad(X^-1)^T``, so in SE3 and Sim3 its gradients were wrong (``modjac`` of ``X.AdjT(a)`` off
    by up to 30 in a fuzz against central differences)."""

    def backward(inputs, output, g_out):
        X, a = inputs
        a_grad = torch.linalg.solve(adjoint(X).mT, g_out.unsqueeze(-1)).squeeze(-1)  # Ad(X^-1)^T g
        X_grad = (a_grad.unsqueeze(-2) @ ad(a)).squeeze(-2)
        return torch.cat((X_grad, X_grad.new_zeros(X_grad.shape[:-1] + (1,))), dim=-1), a_grad

    return backward


# Operations whose pypose backward is inexact: a replacement taking (inputs, output, padded
# tangent cotangent) and returning pypose-style gradients.
_EXACT_BACKWARD = {
    "Sim3_Log": _sim3_log_backward,
    "sim3_Exp": _sim3_exp_backward,
    "SE3_AdjTXa": _adjoint_transpose_backward(_op.SE3_Adj, _op.se3_adj),
    "Sim3_AdjTXa": _adjoint_transpose_backward(_op.Sim3_Adj, _op.sim3_adj),
}


def _make_wrapper(orig: type, in_specs, out_spec) -> type:
    exact = _EXACT_BACKWARD.get(orig.__name__)

    def raw_vjp(inputs, output, grad):
        if out_spec is not None:
            g_tan = (raw_from_tangent(output, out_spec).transpose(-1, -2) @ grad.unsqueeze(-1)).squeeze(-1)
            grad = torch.cat((g_tan, g_tan.new_zeros(g_tan.shape[:-1] + (1,))), dim=-1)
        if exact is not None:
            grads = exact(inputs, output, grad)
        else:
            ctx = _Ctx()
            orig.setup_context(ctx, tuple(inputs), output)
            grads = orig.backward(ctx, grad)
        grads = grads if isinstance(grads, tuple) else (grads,)
        result = []
        for x, gr, spec in zip(inputs, grads, in_specs):
            if gr is not None and spec is not None:
                P = tangent_from_raw(x, spec)
                gr = (P.transpose(-1, -2) @ gr[..., : spec.tangent_dim].unsqueeze(-1)).squeeze(-1)
            result.append(gr)
        return tuple(result)

    class _Raw(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*inputs):
            return orig.forward(*inputs)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs, output)
            ctx.save_for_forward(*inputs, output)

        @staticmethod
        def backward(ctx, grad):
            *inputs, output = ctx.saved_tensors
            return raw_vjp(inputs, output, grad)

        @staticmethod
        def jvp(ctx, *tangents):
            *inputs, output = ctx.saved_tensors
            k = output.shape[-1]
            basis = torch.eye(k, dtype=output.dtype, device=output.device)
            basis = basis.view((k,) + (1,) * (output.dim() - 1) + (k,)).expand((k,) + output.shape)
            rows = torch.vmap(lambda e: raw_vjp(inputs, output, e))(basis)
            out = torch.zeros_like(output)
            for row, t in zip(rows, tangents):
                if row is not None and t is not None:
                    out = out + (row * t.unsqueeze(0)).sum(-1).movedim(0, -1)
            return out

    _Raw.__name__ = _Raw.__qualname__ = f"Raw{orig.__name__}"
    return _Raw


def _install() -> None:
    """Give each pypose Lie Function an ``apply`` that checks the context switch (once)."""
    global _INSTALLED
    if _INSTALLED:
        return
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        base_apply = torch.autograd.Function.__dict__["apply"].__func__
        for name, (in_specs, out_spec) in _spec_table().items():
            orig = getattr(_op, name, None)
            if orig is None:  # an operation this pypose version does not have
                continue
            _WRAPPERS[orig] = _make_wrapper(orig, in_specs, out_spec)

            def apply(cls, *args, **kwargs):
                if _ENABLED.get():
                    return _WRAPPERS[cls].apply(*args, **kwargs)
                return base_apply(cls, *args, **kwargs)

            orig.apply = classmethod(apply)
        _INSTALLED = True
