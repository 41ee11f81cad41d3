"""robojac.jacobian.batch_jacobian and divergence: against per-sample autograd."""

import pytest
import torch
from torch import nn

from robojac.jacobian import batch_jacobian, divergence

from helpers import max_err


def _net(device):
    with device:  # the layers' parameters are created there
        return nn.Sequential(nn.Flatten(1), nn.Linear(24, 32), nn.Tanh(), nn.Linear(32, 24),
                             nn.Unflatten(1, (2, 3, 4))).double()


def _reference(net, x):
    return torch.stack([torch.autograd.functional.jacobian(lambda z: net(z[None])[0], xi) for xi in x])


@pytest.mark.parametrize("strategy", ["forward-mode", "forward-stacked", "reverse-mode", "reverse-stacked"])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_batch_jacobian_of_a_k_d1_d2_d3_function(strategy, chunk_size, device):
    net = _net(device)
    x = torch.randn(7, 2, 3, 4, dtype=torch.float64, device=device)
    J = batch_jacobian(net, x, strategy=strategy, chunk_size=chunk_size)
    assert J.shape == (7, 2, 3, 4, 2, 3, 4)
    assert max_err(J, _reference(net, x)) < 1e-14


def test_batch_jacobian_of_a_shape_changing_function(device):
    W = torch.randn(5, 3, dtype=torch.float64, device=device)
    f = lambda x: torch.tanh(x @ W.T)  # noqa: E731  (k, 3) -> (k, 5)
    x = torch.randn(4, 3, dtype=torch.float64, device=device)
    for s in ("forward-mode", "forward-stacked", "reverse-mode", "reverse-stacked"):
        J = batch_jacobian(f, x, strategy=s)
        ref = torch.stack([torch.autograd.functional.jacobian(lambda z: f(z[None])[0], xi) for xi in x])
        assert J.shape == (4, 5, 3) and max_err(J, ref) < 1e-14


def test_exact_divergence_is_the_trace(dtype, device):
    net = _net(device).to(dtype)
    x = torch.randn(7, 2, 3, 4, dtype=dtype, device=device)
    ref = _reference(net, x).reshape(7, 24, 24).diagonal(dim1=-2, dim2=-1).sum(-1)
    for cs in (None, 7):
        assert max_err(divergence(net, x, chunk_size=cs), ref) < (1e-12 if dtype == torch.float64 else 1e-4)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_estimate_is_unbiased_with_shrinking_error(distribution, device):
    net = _net(device)
    x = torch.randn(7, 2, 3, 4, dtype=torch.float64, device=device)
    exact = divergence(net, x)
    g = torch.Generator(device).manual_seed(0)
    errs = []
    for n in (50, 5000):
        est = torch.stack([divergence(net, x, method="hutchinson", num_samples=n, generator=g, distribution=distribution) for _ in range(8)])
        errs.append(float((est - exact).detach().pow(2).mean().sqrt()))
    # variance falls as 1/n: 100x more probes, about 10x less error (allow a wide band)
    assert errs[1] < errs[0] / 4
    assert errs[1] < 0.1 * float(exact.detach().abs().mean()) + 0.02


def test_divergence_bad_input(device):
    f = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match="method: expected 'exact' or 'hutchinson'"):
        divergence(f, torch.randn(2, 3, device=device), method="approx")
    with pytest.raises(ValueError, match="needs an output shaped like x"):
        divergence(lambda x: x[:, :2], torch.randn(2, 3, device=device))
    with pytest.raises(ValueError, match="leading batch dimension"):
        divergence(f, torch.tensor(1.0, device=device))
    with pytest.raises(ValueError, match="same leading batch size"):
        batch_jacobian(lambda x: x.sum(0), torch.randn(2, 3, device=device))
    with pytest.raises(ValueError, match="num_samples: expected a positive int"):
        divergence(f, torch.randn(2, 3, device=device), method="hutchinson", num_samples=0)


def test_batch_jacobian_with_per_sample_data(device):
    """``args`` are held per-sample data: every strategy gives the Jacobian in ``x`` alone, and the
    stacked one refuses a function that is not sample-wise (a sum over the batch), naming why."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    a = torch.randn(6, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    idx = torch.tensor([0, 2, 1, 0, 1, 2], device=device)  # integer data are repeated, not made dual
    f = lambda z, w, i: torch.sin(z * w) + torch.linalg.cross(z, w, dim=-1) + z.gather(1, i[:, None])  # noqa: E731
    ref = torch.stack([torch.autograd.functional.jacobian(lambda z: f(z[None], w[None], i[None])[0], xi)
                       for xi, w, i in zip(x, a, idx)])
    for s in ("forward-mode", "forward-stacked", "reverse-mode", "reverse-stacked"):
        assert max_err(batch_jacobian(f, x, strategy=s, args=(a, idx)), ref) < 1e-14, s
    with pytest.raises(ValueError, match="forward-stacked.*sample-wise"):
        batch_jacobian(lambda z: z.sum(0, keepdim=True).expand(6, 3), x, strategy="forward-stacked")
    with pytest.raises(ValueError, match="reverse-stacked.*sample-wise"):
        batch_jacobian(lambda z: z.sum(0, keepdim=True).expand(6, 3), x, strategy="reverse-stacked")
    with pytest.raises(ValueError, match="strategy: expected one of"):
        batch_jacobian(f, x, strategy="central", args=(a, idx))


def _constants_everywhere(z, c, i):
    """Arithmetic of a dual ``z`` with Python numbers (int and float, either side), plain tensors
    (``c``, and one made inside), an integer tensor and a bool."""
    k = torch.full_like(c, 0.5)  # a constant the function makes itself: no tangent
    y = 2.0 * z + z * 3 - z / 4.0 + 1.5 / (z.square() + 1) - (1 - z) + (z - 2) + (3 + z)
    y = y + torch.mul(z, 0.25) + z.mul(2) + torch.add(z, 1.0) + z.sub(0.5) + torch.div(z, 3) + z.div(-2.0)
    y = y * c + c * z - k / (z.square() + 2) + torch.atan2(z, c.abs() + 1) + torch.maximum(z, c)
    y = y + torch.linalg.cross(z, c, dim=-1) + torch.linalg.cross(c, z, dim=-1) + z * i + (z > 0) * True
    return y


def test_stacked_forward_mode_meets_no_missing_tangent(device):
    """In ``forward-stacked``, an op between a dual tensor and a number or a plain tensor gets no
    zero tangent of torch's (an "efficient zero tensor", whose ops infer shapes through Python
    meta functions on torch 2.13: ~0.4 ms each), and the Jacobian is the one torch's forward mode
    gives without ``ZeroTangents``, and autograd's."""
    import torch.autograd.forward_ad as fwAD
    from torch.utils._python_dispatch import TorchDispatchMode

    from robojac.jacobian._dual import ZeroTangents

    class CountZeroTensors(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._efficientzerotensor.default:
                type(self).count += 1
            return func(*args, **(kwargs or {}))

    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    c = torch.randn(5, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    i = torch.arange(15, device=device).reshape(5, 3) % 4
    outs = {}
    for name, mode in (("plain", None), ("zero tangents", ZeroTangents)):
        CountZeroTensors.count = 0
        with fwAD.dual_level() as level:
            z = fwAD.make_dual(x, torch.ones_like(x))
            with CountZeroTensors():
                if mode is None:
                    y = _constants_everywhere(z, c, i)
                else:
                    with mode(level):
                        y = _constants_everywhere(z, c, i)
            primal, tangent = fwAD.unpack_dual(y)
            outs[name] = (primal.clone(), tangent.clone(), CountZeroTensors.count)
    (p0, t0, n0), (p1, t1, n1) = outs["plain"], outs["zero tangents"]
    assert n0 > 10 and n1 == 0, (n0, n1)
    assert max_err(p1, p0) < 1e-13 and max_err(t1, t0) < 1e-13
    def one(xi, ci, ii):
        return torch.autograd.functional.jacobian(lambda v: _constants_everywhere(v[None], ci[None], ii[None])[0], xi)

    ref = torch.stack([one(xi, ci, ii) for xi, ci, ii in zip(x, c, i)])
    J = batch_jacobian(_constants_everywhere, x, strategy="forward-stacked", args=(c, i))
    assert max_err(J, ref) < 1e-13
    with fwAD.dual_level() as level, ZeroTangents(level):
        z = fwAD.make_dual(x, torch.ones_like(x))
        y = torch.add(c, z, alpha=2.0)  # with a keyword argument
        assert max_err(fwAD.unpack_dual(y).tangent, torch.full_like(x, 2.0)) == 0
        w = c.clone()
        w.mul_(z)  # in place on a plain tensor: passed through, the tensor written takes the tangent
        assert max_err(fwAD.unpack_dual(w).tangent, c) == 0


def test_stacked_forward_mode_skips_its_mode_where_it_found_nothing(device):
    """A function whose pass gave ``ZeroTangents`` nothing to rewrite (every op between dual
    tensors) runs its later passes without the mode, at torch's own speed; one with a constant
    keeps it. The Jacobians are autograd's either way."""
    from torch.overrides import _get_current_function_mode_stack

    from robojac.jacobian._dual import ZeroTangents

    seen = []

    def under_mode():
        return any(isinstance(m, ZeroTangents) for m in _get_current_function_mode_stack())

    def products(x):  # dual times dual only
        seen.append(("products", under_mode()))
        return torch.cat((x[:, :1] * x[:, 1:], x.sin() * x), -1)

    def with_constant(x):
        seen.append(("with_constant", under_mode()))
        return torch.cat((x[:, :1] * x[:, 1:], 2.0 * x), -1)

    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    for func in (products, with_constant):
        ref = torch.stack([torch.autograd.functional.jacobian(lambda v: func(v[None])[0], xi) for xi in x])
        for _ in range(3):
            assert max_err(batch_jacobian(func, x, strategy="forward-stacked"), ref) < 1e-13
    # 3 passes each after autograd's 4 samples, which no mode sees
    assert [s for s in seen if s[1]] == [("products", True)] + [("with_constant", True)] * 3, seen
    seen.clear()
    for _ in range(3):  # a lambda with no closure, written inline: a new function each time, one code
        batch_jacobian(lambda v, seen=seen, mode=under_mode: seen.append(mode()) or v * v.cos(), x,
                       strategy="forward-stacked")
    assert seen == [True, False, False], seen
