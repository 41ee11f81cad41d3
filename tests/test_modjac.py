"""robojac.jacobian.modjac: pypose/torch parity for tensors, tangent columns for Lie groups."""

import pypose as pp
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from robojac.jacobian import modjac, value_and_modjac

from helpers import BATCH_SHAPES, GROUPS, euclid_fd, manifold_fd, max_err, random_group

STRATEGIES = [dict(), dict(strategy="reverse-mode"), dict(strategy="reverse-mode", vectorize=True),
              dict(strategy="forward-mode", vectorize=True)]
STRATEGY_IDS = ["auto", "reverse", "reverse-vec", "forward-vec"]


def _torch_reference(model, x):
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = tuple(dict(model.named_parameters())[n] for n in names)
    return torch.autograd.functional.jacobian(lambda *ps: functional_call(model, dict(zip(names, ps)), (x,)), params)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 5), nn.Tanh())
        self.head = nn.Linear(5, 2)

    def forward(self, x, scale):
        h = self.body(x)
        return self.head(h) * scale, h.sum(-1)


@pytest.mark.parametrize("kw", STRATEGIES, ids=STRATEGY_IDS)
def test_plain_parameters_match_torch_and_pypose(kw, device):
    model = nn.Sequential(nn.Linear(3, 4, device=device), nn.Tanh(), nn.Linear(4, 2, device=device)).double()
    x = torch.randn(5, 3, dtype=torch.float64, device=device)
    ours = modjac(model, x, **kw)
    ref = _torch_reference(model, x)
    assert isinstance(ours, tuple) and len(ours) == 4
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and max_err(a, b) < 1e-14
    theirs = pp.optim.functional.modjac(model, x, **kw)
    for a, b in zip(ours, theirs):
        assert max_err(a, b) < 1e-14
    flat = modjac(model, x, flatten=True, **kw)
    assert flat.shape == (10, sum(p.numel() for p in model.parameters()))
    if kw.get("strategy") == "reverse-mode":  # pypose's own flatten returns a list in forward mode
        assert max_err(flat, pp.optim.functional.modjac(model, x, flatten=True, **kw)) < 1e-14


def test_several_outputs_and_inputs_nest_like_pypose(device):
    with device:
        model = TwoHeads().double()
    x, s = torch.randn(4, 3, dtype=torch.float64, device=device), torch.tensor(2.0, dtype=torch.float64, device=device)
    ours = modjac(model, (x, s))
    theirs = pp.optim.functional.modjac(model, (x, s))
    assert len(ours) == 2 and all(len(row) == 4 for row in ours)
    for row_a, row_b in zip(ours, theirs):
        for a, b in zip(row_a, row_b):
            assert a.shape == b.shape and max_err(a, b) < 1e-14
    flat = modjac(model, (x, s), flatten=True)
    assert max_err(flat, pp.optim.functional.modjac(model, (x, s), flatten=True)) < 1e-14


class Transform(nn.Module):
    """A pose acting on points, through pypose's operations only."""

    def __init__(self, X):
        super().__init__()
        self.X = pp.Parameter(X)

    def forward(self, p):
        return self.X.unsqueeze(-2).Act(p)


class RawReader(nn.Module):
    """Mixes pypose operations with raw reads of the stored numbers (pypose gets these wrong)."""

    def __init__(self, X, Y):
        super().__init__()
        self.X = pp.Parameter(X)
        self.register_buffer("Y", Y.tensor())

    def forward(self, p):
        X = self.X
        Y = pp.LieTensor(self.Y, ltype=X.ltype)
        a = (Y * X * Y).Log().tensor()
        b = X.tensor()[..., :3] * 2.0
        c = X.Inv().Act(p)
        return torch.cat((a, b, c), dim=-1)


@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("kw", STRATEGIES, ids=STRATEGY_IDS)
def test_lie_parameters_get_tangent_columns(group, shape, kw, device):
    X = random_group(group, shape, device=device)
    Y = random_group(group, shape, device=device)
    p = torch.randn(shape + (3,), dtype=torch.float64, device=device)
    model = RawReader(X.clone(), Y)
    (J,) = modjac(model, p, **kw)
    dof = GROUPS[group][2]
    out = model(p)
    assert J.shape == out.shape + X.shape[:-1] + (dof,)
    ref = manifold_fd(lambda Z: RawReader(Z, Y)(p), X)
    assert max_err(J, ref) < 1e-7


class AdjointTranspose(nn.Module):
    """pypose's ``X.AdjT(a)``, whose value is ``Ad(X^-1) a``, with ``a`` a parameter too."""

    def __init__(self, X, a):
        super().__init__()
        self.X, self.a = pp.Parameter(X), nn.Parameter(a)

    def forward(self):
        return self.X.AdjT(self.a).tensor()


@pytest.mark.parametrize("group", list(GROUPS))
def test_adjoint_transpose_differentiates_as_its_values(group, device):
    """pypose's backward of ``AdjT`` takes ``Ad(X)`` for ``Ad(X^-1)^T``, true only where the
    adjoint is orthogonal (SO3, RxSO3): in SE3 and Sim3 both columns were wrong."""
    X = random_group(group, (3,), device=device)
    a = torch.randn(3, GROUPS[group][2], dtype=torch.float64, device=device)
    J_X, J_a = modjac(AdjointTranspose(X.clone(), a.clone()))
    assert max_err(J_X, manifold_fd(lambda Z: AdjointTranspose(Z, a)(), X)) < 1e-7
    assert max_err(J_a, euclid_fd(lambda b: AdjointTranspose(X, b)(), a)) < 1e-7


class Composition(nn.Module):
    """A random model of pypose's operations on a group parameter ``X``: up to two of ``Y X``,
    ``X Y``, ``X^-1`` and ``Y X Y^-1``, then one or two outputs among ``Log``, ``Act``,
    ``matrix``, the stored numbers (all, or a slice times 3), ``Adj`` and ``AdjT`` of ``Log Y``,
    ``Log(X Y)``, ``translation``, ``rotation`` and ``Exp(Log X)``.  (pypose's ``Jinvp`` is left
    out: its closed form switches to its series only below the dtype's eps, so near zero its
    values, and any derivative of them, lose ~1e-5 to cancellation.)"""

    def __init__(self, X, Y, seed):
        super().__init__()
        self.X, self.seed = pp.Parameter(X), seed
        self.register_buffer("Y", Y.tensor())

    def forward(self, p):
        import random

        r = random.Random(self.seed)
        X, Y = self.X, pp.LieTensor(self.Y, ltype=self.X.ltype)
        steps = (lambda X: Y * X, lambda X: X * Y, lambda X: X.Inv(), lambda X: Y * X * Y.Inv())
        for _ in range(r.randrange(3)):
            X = r.choice(steps)(X)
        grouped = X.ltype in (pp.SE3_type, pp.Sim3_type)
        outputs = (lambda: X.Log().tensor(), lambda: X.Act(p), lambda: X.matrix().flatten(-2), lambda: X.tensor(),
                   lambda: X.tensor()[..., :2] * 3.0, lambda: X.Adj(Y.Log()).tensor(), lambda: X.AdjT(Y.Log()).tensor(),
                   lambda: (X * Y).Log().tensor(), lambda: X.translation() if grouped else X.Log().tensor(),
                   lambda: X.rotation().tensor(), lambda: X.Log().Exp().tensor())
        return torch.cat([r.choice(outputs)() for _ in range(r.randrange(1, 3))], -1)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(GROUPS)), st.sampled_from([(), (2,), (1, 3)]), st.integers(0, 2**32 - 1))
@example("SE3", (), 4)  # AdjT's backward as pypose wrote it: wrong in SE3 and Sim3
@example("Sim3", (2,), 8)
def test_random_compositions_of_pypose_operations_match_differences(group, shape, seed):
    """modjac of any composition of pypose's operations equals central differences on the
    manifold (a fuzz of such models found AdjT's wrong backward, above: 7 of the first 100 were
    off; of 600 since, the two that fail go through Jinvp, which this model leaves out)."""
    gen = torch.Generator().manual_seed(seed)
    _, algebra, dof = GROUPS[group]
    X, Y = (pp.LieTensor(torch.randn(shape + (dof,), generator=gen, dtype=torch.float64), ltype=algebra).Exp()
            for _ in range(2))
    p = torch.randn(shape + (3,), generator=gen, dtype=torch.float64)
    (J,) = modjac(Composition(X.clone(), Y, seed), p)
    assert max_err(J, manifold_fd(lambda Z: Composition(Z, Y, seed)(p), X)) < 1e-6


@pytest.mark.parametrize("group", ["SO3", "SE3"])
def test_equals_pypose_meaningful_columns_when_model_uses_pypose_operations(group, device):
    X = random_group(group, (2,), device=device)
    model = Transform(X.clone())
    p = torch.randn(2, 4, 3, dtype=torch.float64, device=device)
    (ours,) = modjac(model, p)
    (theirs,) = pp.optim.functional.modjac(model, p)
    dof = GROUPS[group][2]
    assert theirs.shape[-1] == dof + 1 and ours.shape[-1] == dof
    assert max_err(theirs[..., dof], torch.zeros(1, device=device)) == 0  # pypose's always-zero column
    assert max_err(ours, theirs[..., :dof]) < 1e-12


def test_translation_slice_is_right_where_pypose_is_not(device):
    X = pp.randn_SE3(dtype=torch.float64, device=device)

    class Slice(nn.Module):
        def __init__(self, X):
            super().__init__()
            self.X = pp.Parameter(X)

        def forward(self):
            return self.X.translation()

    (ours,) = modjac(Slice(X.clone()))
    ref = manifold_fd(lambda Z: Z.translation(), X)  # [I, -[t]x]
    assert max_err(ours, ref) < 1e-8
    (theirs,) = pp.optim.functional.modjac(Slice(X.clone()))
    assert max_err(theirs[..., :6], ref) > 0.1  # the bug robojac exists to fix


def test_frozen_parameters_and_wrt_choose_columns(device):
    with device:
        model = TwoHeads().double()
    model.body[0].weight.requires_grad_(False)
    x, s = torch.randn(4, 3, dtype=torch.float64, device=device), torch.tensor(1.0, dtype=torch.float64, device=device)
    J = modjac(model, (x, s))
    assert len(J[0]) == 3  # the frozen weight has no columns
    J = modjac(model, (x, s), wrt=["head.bias", model.body[0].weight])
    assert len(J[0]) == 2 and J[0][0].shape == (4, 2, 2) and J[0][1].shape == (4, 2, 5, 3)
    ref = euclid_fd(lambda b: functional_call(model, {"head.bias": b}, (x, s))[0], model.head.bias.detach())
    assert max_err(J[0][0], ref) < 1e-8


def test_lie_algebra_parameters_keep_their_coordinates(device):
    class Twist(nn.Module):
        def __init__(self):
            super().__init__()
            self.x = pp.Parameter(pp.randn_se3(2, dtype=torch.float64, device=device))

        def forward(self, p):
            return self.x.Exp().Act(p)

    model = Twist()
    p = torch.randn(2, 3, dtype=torch.float64, device=device)
    (J,) = modjac(model, p, vectorize=True, strategy="forward-mode")
    ref = euclid_fd(lambda v: pp.se3(v).Exp().Act(p), model.x.detach().tensor())
    assert J.shape == (2, 3, 2, 6) and max_err(J, ref) < 1e-8


def test_float32_agrees_with_float64(device):
    X = pp.randn_SE3(3, dtype=torch.float64, device=device)
    p = torch.randn(3, 5, 3, dtype=torch.float64, device=device)
    (J64,) = modjac(Transform(X.clone()), p)
    (J32,) = modjac(Transform(X.float().clone()), p.float())
    assert J32.dtype == torch.float32 and max_err(J32.double(), J64) < 1e-4


def test_create_graph_makes_the_jacobian_differentiable(device):
    X = pp.randn_SE3(dtype=torch.float64, device=device)
    p = torch.randn(3, dtype=torch.float64, requires_grad=True, device=device)
    (J,) = modjac(Transform(X.clone()), p, create_graph=True)
    (g,) = torch.autograd.grad((J**2).sum(), p)
    ref = euclid_fd(lambda q: (modjac(Transform(X.clone()), q)[0] ** 2).sum(), p.detach())
    assert max_err(g, ref) < 1e-7


def test_bad_input_is_refused_with_what_was_expected(device):
    model = nn.Linear(2, 2, device=device)
    x = torch.randn(2, device=device)
    with pytest.raises(TypeError, match="nn.Module"):
        modjac(lambda x: x, x)
    with pytest.raises(ValueError, match="has no parameters"):
        modjac(nn.ReLU(), x)
    frozen = nn.Linear(2, 2, device=device).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter that requires grad"):
        modjac(frozen, x)
    with pytest.raises(ValueError, match=r"'bogus' names no parameter.*\['bias', 'weight'\]"):
        modjac(model, x, wrt=["bogus"])
    with pytest.raises(ValueError, match="wrt: names nothing"):
        modjac(model, x, wrt=[])
    with pytest.raises(TypeError, match=r"input\[1\]: expected a Tensor"):
        modjac(model, (x, "two"))
    with pytest.raises(TypeError, match="input: expected None"):
        modjac(model, 3.0)
    with pytest.raises(ValueError, match=r"strategy: expected one of \('reverse-mode', 'forward-mode'\)"):
        modjac(model, x, strategy="sideways")
    with pytest.raises(ValueError, match="requires vectorize=True"):
        modjac(model, x, strategy="forward-mode")
    with pytest.raises(FloatingPointError, match="NaN"):
        modjac(model, torch.tensor([float("nan"), 1.0], device=device))


@pytest.mark.parametrize("kw", STRATEGIES, ids=STRATEGY_IDS)
def test_jacobian_holds_no_graph_unless_asked(kw, device):
    model = nn.Sequential(nn.Linear(3, 2, device=device), nn.Tanh())  # a Jacobian that depends on the weights
    assert not any(j.requires_grad for j in modjac(model, torch.randn(3, device=device), **kw))
    if kw.get("strategy") == "forward-mode":
        with pytest.raises(ValueError, match='create_graph=True needs strategy="reverse-mode"'):
            modjac(model, torch.randn(3, device=device), create_graph=True, **kw)
    else:
        assert all(j.requires_grad for j in modjac(model, torch.randn(3, device=device), create_graph=True, **kw))


def test_the_automatic_strategy_picks_by_size_and_falls_back_where_vmap_cannot_run(device, monkeypatch):
    """``strategy="auto"``: forward mode when the columns are no more than the outputs, reverse
    mode when fewer outputs, both vectorized, and pypose's row-by-row reverse mode for
    ``strict``, ``vectorize=False``, a graph asked of forward mode's sizes (reverse then), and a
    model vmap cannot batch; every answer equal to the row-by-row one."""
    import robojac.jacobian._modjac as mj

    calls = []
    real = torch.autograd.functional.jacobian

    def spy(*args, **kw):
        calls.append((kw["strategy"], kw["vectorize"]))
        return real(*args, **kw)

    monkeypatch.setattr(torch.autograd.functional, "jacobian", spy)

    class Camera(nn.Module):  # 6 columns
        def __init__(self):
            super().__init__()
            self.T = pp.Parameter(pp.randn_SE3(dtype=torch.float64, device=device))

        def forward(self, p):
            return self.T.Act(p)

    class Square(torch.autograd.Function):  # a user's op with a backward and no forward mode (no jvp)
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    class NoForwardMode(Camera):
        def forward(self, p):
            return Square.apply(self.T.Act(p))

    cam, item = Camera(), NoForwardMode()
    many = torch.randn(50, 3, dtype=torch.float64, device=device)
    one = torch.randn(1, 3, dtype=torch.float64, device=device)
    wide = nn.Linear(40, 1, device=device).double()  # 41 columns, 1 output
    x = torch.randn(1, 40, dtype=torch.float64, device=device)
    cases = [
        (cam, many, dict(), [("forward-mode", True)]),
        (cam, one, dict(), [("reverse-mode", True)]),  # 3 outputs, 6 columns
        (wide, x, dict(), [("reverse-mode", True)]),
        (cam, many, dict(create_graph=True), [("reverse-mode", True)]),
        (cam, many, dict(strict=True), [("reverse-mode", False)]),
        (cam, many, dict(vectorize=False), [("reverse-mode", False)]),
        (item, many, dict(), [("forward-mode", True), ("reverse-mode", False)]),
    ]
    for model, inp, kw, expected in cases:
        calls.clear()
        J = modjac(model, inp, **kw)
        assert calls == expected, (type(model).__name__, kw, calls)
        ref = modjac(model, inp, strategy="reverse-mode")
        assert all(max_err(a, b) < 1e-13 for a, b in zip(J, ref))
    calls.clear()
    monkeypatch.setattr(mj, "VECTORIZE_MAX", 100)  # 150 outputs of 6 columns: forward; of 201 columns: by rows
    modjac(cam, torch.randn(50, 3, dtype=torch.float64, device=device))
    modjac(nn.Linear(200, 1, device=device).double(), torch.randn(150, 200, dtype=torch.float64, device=device))
    assert calls[0] == ("forward-mode", True) and calls[-1] == ("reverse-mode", False), calls


@pytest.mark.parametrize("kw", STRATEGIES, ids=STRATEGY_IDS)
def test_value_and_modjac_is_the_models_output_and_modjacs_jacobian_from_its_own_runs(kw, device):
    """The value is the model's output where ``at`` puts the parameters (the model itself
    unchanged), detached, and the Jacobian modjac's; in reverse mode (torch's, and the automatic
    strategy, which sizes the output by one run) no run of the model is added for it."""
    X, Y = (random_group("SE3", (4,), torch.float64, device) for _ in range(2))
    p = torch.randn(4, 3, dtype=torch.float64, device=device)
    model = RawReader(X, Y)
    runs = []
    model.register_forward_hook(lambda *args: runs.append(1))
    at = {"X": random_group("SE3", (4,), torch.float64, device)}
    value, J = value_and_modjac(model, p, at=at, **kw)
    with_value = len(runs)
    runs.clear()
    ref = modjac(model, p, at=at, **kw)
    assert with_value == len(runs) + (kw.get("strategy") == "forward-mode")
    shifted = RawReader(at["X"], Y)
    with torch.no_grad():
        expected = shifted(p)
    assert max_err(value, expected) < 1e-14 and max_err(value, model(p)) > 1e-3 and not value.requires_grad
    assert all(max_err(a, b) == 0 for a, b in zip(J, ref))
    assert max_err(J[0], modjac(shifted, p, **kw)[0]) < 1e-12


def test_value_and_modjac_returns_nan_derivatives_where_asked_and_several_outputs(device):
    """``allow_nan=True`` gives sqrt's NaN derivative at 0 with the finite value (modjac raises);
    several outputs come back as a tuple, as the model gives them."""
    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.0, 4.0], dtype=torch.float64, device=device))

        def forward(self):
            return self.w.sqrt(), self.w.sum(-1, keepdim=True)

    with pytest.raises(FloatingPointError, match="NaN"):
        value_and_modjac(Root(), strategy="reverse-mode")
    (root, total), ((J_root,), (J_total,)) = value_and_modjac(Root(), strategy="reverse-mode", allow_nan=True)
    assert root.tolist() == [0.0, 2.0] and total.tolist() == [4.0]
    assert J_root[1, 1] == 0.25 and not torch.isfinite(J_root[0, 0]) and J_total.tolist() == [[1.0, 1.0]]
    with pytest.raises(TypeError, match="value_and_modjac: unexpected keyword 'stratgy'; expected modjac's"):
        value_and_modjac(Root(), stratgy="reverse-mode")
