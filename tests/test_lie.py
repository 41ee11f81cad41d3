"""robojac.lie: tangent maps, plain-tensor ops and conversions against pypose and differences."""

import inspect
import math
import threading

import pypose as pp
import pytest
import torch
from scipy.spatial.transform import Rotation

from robojac import lie
from robojac.lie import _ops as ops

from helpers import BATCH_SHAPES, GROUPS, left_perturb, max_err, random_group


@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("shape", BATCH_SHAPES, ids=str)
def test_tangent_maps_invert_each_other(group, shape, dtype, device):
    X = random_group(group, shape, dtype, device=device)
    P = lie.tangent_from_raw(X, group)
    M = lie.raw_from_tangent(X, group)
    dof = GROUPS[group][2]
    assert M.shape == X.shape[:-1] + (X.shape[-1], dof)
    eye = torch.eye(dof, dtype=dtype, device=device).expand(P.shape[:-2] + (dof, dof))
    assert max_err(P @ M, eye) < lie.tolerance(dtype) * 10


@pytest.mark.parametrize("group", list(GROUPS))
def test_raw_from_tangent_is_derivative_of_left_perturbation(group, device):
    X = random_group(group, (4,), device=device)
    M = lie.raw_from_tangent(X, group)
    dof = GROUPS[group][2]
    eps = 1e-6
    for k in range(dof):
        d = torch.zeros(4, dof, dtype=torch.float64, device=device)
        d[:, k] = eps
        fd = (left_perturb(X, d).tensor() - left_perturb(X, -d).tensor()) / (2 * eps)
        assert max_err(fd, M[..., k]) < 1e-8


@pytest.mark.parametrize("group", ["SO3", "SE3", "Sim3", "RxSO3"])
def test_tangent_from_raw_ignores_quaternion_length(group, device):
    X = random_group(group, (5,), device=device)
    raw = X.tensor()
    radial = torch.zeros_like(raw)
    q0 = {"SO3": 0, "SE3": 3, "Sim3": 3, "RxSO3": 0}[group]
    radial[..., q0 : q0 + 4] = raw[..., q0 : q0 + 4]  # d/ds of s * q: leaves the manifold
    P = lie.tangent_from_raw(X, group)
    assert max_err(P @ radial.unsqueeze(-1), torch.zeros(1, device=device)) < 1e-12


@pytest.mark.parametrize("shape", BATCH_SHAPES, ids=str)
def test_plain_ops_match_pypose(shape, dtype, device):
    X = pp.randn_SE3(*shape, sigma=2.0, dtype=dtype, device=device)
    Y = pp.randn_SE3(*shape, dtype=dtype, device=device)
    x = pp.randn_se3(*shape, sigma=2.0, dtype=dtype, device=device)
    p = torch.randn(shape + (3,), dtype=dtype, device=device)
    tol = lie.tolerance(dtype) * 100
    assert max_err(ops.se3_exp(x.tensor()), x.Exp().tensor()) < tol
    assert max_err(ops.se3_log(X.tensor()), X.Log().tensor()) < tol
    assert max_err(ops.se3_compose(X.tensor(), Y.tensor()), (X * Y).tensor()) < tol
    assert max_err(ops.se3_inverse(X.tensor()), X.Inv().tensor()) < tol
    assert max_err(ops.se3_act(X.tensor(), p), X.Act(p)) < tol
    assert max_err(ops.se3_to_matrix(X.tensor()), X.matrix()) < tol
    assert max_err(lie.se3_exp_matrix(x.tensor()), x.Exp().matrix()) < tol
    assert max_err((ops.se3_adjoint(X.tensor()) @ x.tensor().unsqueeze(-1)).squeeze(-1), X.Adj(x).tensor()) < tol * 10


@pytest.mark.parametrize("left, right", [((), (5,)), ((5,), ()), ((2, 1), (4,)), ((4,), (3, 1, 4))], ids=str)
def test_two_operand_ops_broadcast_their_leading_dims_as_pypose(left, right, device):
    """One pose composed with a batch, a batch acting on one point, batches of different ranks:
    the leading dims broadcast, as pypose's do (``torch.linalg.cross`` alone refuses operands of
    different ranks, and it had raised from deep inside ``se3_compose``)."""
    X = pp.randn_SE3(*left, sigma=2.0, dtype=torch.float64, device=device)
    Y = pp.randn_SE3(*right, dtype=torch.float64, device=device)
    p = torch.randn(right + (3,), dtype=torch.float64, device=device)
    shape = torch.broadcast_shapes(left, right)
    qx, qy, t = X.tensor()[..., 3:], Y.tensor()[..., 3:], X.tensor()[..., :3]
    for got, expected in ((ops.se3_compose(X.tensor(), Y.tensor()), X * Y),
                          (ops.se3_act(X.tensor(), p), X.Act(p)),
                          (ops.quat_mul(qx, qy), pp.SO3(qx) * pp.SO3(qy)),
                          (ops.quat_rotate(qy, t), pp.SO3(qy).Act(t))):
        expected = expected.tensor() if isinstance(expected, pp.LieTensor) else expected
        assert got.shape[:-1] == shape and max_err(got, expected) < 1e-12


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-8, 1e-5, 0.999e-3, 1.001e-3, 0.3, 3.0])
def test_exp_matrix_at_every_angle(angle, device):
    """Rodrigues' matrix against the matrix exponential of the twist's 4x4 (torch's Pade
    approximant), on both sides of the series' switch (pypose's own loses digits there: 2e-12)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64, device="cpu"), dim=-1)
    rho = torch.randn(4, 3, generator=g, dtype=torch.float64, device="cpu")
    x = torch.cat((rho, angle * axis), -1).to(device)
    hat = torch.zeros(4, 4, 4, dtype=torch.float64, device=device)
    hat[:, :3, :3] = lie.skew(x[:, 3:])
    hat[:, :3, 3] = x[:, :3]
    assert max_err(lie.se3_exp_matrix(x), torch.linalg.matrix_exp(hat)) < 1e-14
    # its derivative too, against the matrix exponential's (a series-free form lost 7e-9 at 1e-8 rad)
    W = torch.randn(4, 4, 4, generator=g, dtype=torch.float64, device="cpu").to(device)
    grads = []
    for f in (lie.se3_exp_matrix, lambda v: torch.linalg.matrix_exp(
            torch.nn.functional.pad(torch.cat((lie.skew(v[:, 3:]), v[:, :3, None]), -1), (0, 0, 0, 1)))):
        xg = x.clone().requires_grad_()
        (f(xg) * W).sum().backward()
        grads.append(xg.grad)
    assert torch.isfinite(grads[0]).all() and max_err(grads[0], grads[1]) < 1e-12


def test_log_takes_either_quaternion_sign(device):
    X = pp.randn_SE3(50, sigma=2.0, dtype=torch.float64, device=device)
    flipped = torch.cat((X.tensor()[:, :3], -X.tensor()[:, 3:]), -1)
    assert max_err(ops.se3_log(flipped), X.Log().tensor()) < 1e-12


@pytest.mark.parametrize("n", [1, 256, 257, 3000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quat_to_matrix_both_ways_equal_pypose(n, dtype, device):
    """Small batches take the product path, large ones the element-wise one: both are pypose's."""
    X = pp.randn_SO3(n, dtype=dtype, device=device)
    assert max_err(ops.quat_to_matrix(X.tensor()), X.matrix()) < lie.tolerance(dtype) * 10


def test_matrix_to_quat_round_trip_including_half_turns(device):
    phis = torch.tensor(
        [[torch.pi, 0, 0], [0, torch.pi - 1e-9, 0], [0, 0, 0], [2.2, -2.2, 0.1], [0, 1e-12, 0]], dtype=torch.float64
    , device=device)
    R = pp.so3(phis).Exp().matrix()
    q = ops.matrix_to_quat(R)
    assert (q[:, 3] >= 0).all()
    assert max_err(ops.quat_to_matrix(q), R) < 1e-12
    T = pp.randn_SE3(20, dtype=torch.float64, device=device)
    assert max_err(lie.SE3_to_matrix(lie.matrix_to_SE3(T.matrix())), T.matrix()) < 1e-12


def test_matrix_to_quat_matches_pypose_on_every_branch(device):
    """Each of the four square-root branches (the largest of w^2, x^2, y^2, z^2) is taken, and the
    quaternion equals pypose's up to its sign."""
    X = pp.randn_SO3(2000, sigma=3.0, dtype=torch.float64, device=device)
    q_ref = X.tensor()
    q = ops.matrix_to_quat(X.matrix())
    branch = torch.stack((q_ref[:, 3], q_ref[:, 0], q_ref[:, 1], q_ref[:, 2]), -1).abs().argmax(-1)
    assert set(branch.tolist()) == {0, 1, 2, 3}
    sign = torch.where((q * q_ref).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(q.dtype)
    assert max_err(q, sign * q_ref) < 1e-12


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-8, 1e-5, 0.999e-3, 1.001e-3, 0.3, 0.4999, 0.5001, 3.0])
def test_small_angle_branches_have_correct_finite_gradients(angle, device):
    axis = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64, device=device)
    phi = (axis / axis.norm() * angle).requires_grad_()
    # Log(Exp(phi)) = phi, so its Jacobian is the identity, through both branches
    J = torch.autograd.functional.jacobian(lambda v: ops.so3_log(ops.so3_exp(v)), phi)
    assert max_err(J, torch.eye(3, dtype=torch.float64, device=device)) < 1e-9
    xi = torch.cat((torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64, device=device), phi.detach()))
    # Jl^-1 against differences of Log(Exp(e) Exp(xi))
    eps, cols = 1e-6, []
    for k in range(6):
        e = torch.zeros(6, dtype=torch.float64, device=device)
        e[k] = eps
        plus = ops.se3_log(ops.se3_compose(ops.se3_exp(e), ops.se3_exp(xi)))
        minus = ops.se3_log(ops.se3_compose(ops.se3_exp(-e), ops.se3_exp(xi)))
        cols.append((plus - minus) / (2 * eps))
    assert max_err(torch.stack(cols, -1), ops.se3_left_jacobian_inverse(xi)) < 1e-8
    grads = torch.autograd.functional.jacobian(ops.se3_left_jacobian_inverse, xi)
    assert torch.isfinite(grads).all()
    # the matrix-free transpose product, and its derivative (what the SE3 between factor's
    # curvature differentiates), on both branches
    w = torch.tensor([0.7, -0.2, 1.1, -0.4, 0.9, 0.3], dtype=torch.float64, device=device)
    assert max_err(ops.se3_left_jacobian_inverse_transpose_times(xi, w), ops.se3_left_jacobian_inverse(xi).mT @ w) < 1e-13
    D = torch.autograd.functional.jacobian(lambda x: ops.se3_left_jacobian_inverse_transpose_times(x, w), xi)
    D_ref = torch.autograd.functional.jacobian(lambda x: ops.se3_left_jacobian_inverse(x).mT @ w, xi)
    assert max_err(D, D_ref) < 1e-9


def _se3_left_jacobian_by_its_series(xi):
    """``Jl(xi) = sum_k ad(xi)^k / (k + 1)!`` in float64, as the top-right block of the matrix
    exponential of ``[[ad(xi), I], [0, 0]]``: from the definition, with no closed form."""
    def hat(v):
        z = torch.zeros_like(v[..., 0])
        rows = (z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0], -v[..., 1], v[..., 0], z)
        return torch.stack(rows, -1).unflatten(-1, (3, 3))
    P, R = hat(xi[..., 3:]), hat(xi[..., :3])
    M = torch.zeros(xi.shape[:-1] + (12, 12), dtype=torch.float64, device=xi.device)
    M[..., :3, :3], M[..., :3, 3:6], M[..., 3:6, 3:6] = P, R, P
    M[..., :6, 6:] = torch.eye(6, dtype=torch.float64, device=xi.device)
    return torch.linalg.matrix_exp(M)[..., :6, 6:]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_se3_jacobian_inverse_and_log_are_exact_to_rounding_at_every_angle(dtype, device):
    """Angles from the series' switch to within 1e-9 of a half turn: ``Jl^-1`` within a few
    roundings of the inverse of ``Jl``'s series, and ``Log(Exp(xi))`` back to ``xi``.  Barfoot's
    coefficients as written lose digits to cancellation there: ``t^2 + 2 cos t - 2`` just above
    the switch (9.8e-5 relative in float32 on these inputs), ``1 + cos t`` near a half turn (1.2e-4)."""
    gen = torch.Generator().manual_seed(3)
    near_pi = math.pi - torch.logspace(-9, -1, 40, dtype=torch.float64, device="cpu")
    angles = torch.cat((torch.logspace(-4, math.log10(3.0), 160, dtype=torch.float64, device="cpu"), near_pi))
    axis = torch.randn(angles.shape[0], 3, generator=gen, dtype=torch.float64, device="cpu")
    phi = axis / axis.norm(dim=-1, keepdim=True) * angles[:, None]
    xi = torch.cat((torch.randn(angles.shape[0], 3, generator=gen, dtype=torch.float64, device="cpu"), phi), -1)
    xi = xi.to(dtype).to(torch.float64)  # the same input in both precisions
    reference = torch.linalg.inv(_se3_left_jacobian_by_its_series(xi.to(device)))
    ours = ops.se3_left_jacobian_inverse(xi.to(dtype=dtype, device=device)).double()
    rounding = torch.finfo(dtype).eps
    error = ((ours - reference).flatten(1).norm(dim=-1) / reference.flatten(1).norm(dim=-1)).max()
    assert error < 20 * rounding, f"Jl^-1 off by {float(error):.2e} relative"
    xi = xi[xi[:, 3:].norm(dim=-1) < math.pi - 64 * rounding]  # past a half turn Log answers the other way round
    back = ops.se3_log(ops.se3_exp(xi.to(dtype=dtype, device=device))).double()
    error = ((back - xi.to(device)).norm(dim=-1) / xi.to(device).norm(dim=-1)).max()
    assert error < 20 * rounding, f"Log(Exp(xi)) off by {float(error):.2e} relative"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_se2_exp_log_and_jacobian_are_exact_to_rounding_at_every_angle(dtype, device):
    """``Exp`` against the matrix exponential of the twist ``[[0, -w, vx], [w, 0, vy], [0, 0, 0]]``
    and ``Jr^-1`` against the inverse of ``Jr = sum_k (-ad)^k / (k + 1)!`` (float64), and ``Log``
    back, at angles from zero to a half turn.  Written ``(1 - cos t) / t``, ``Exp`` was 3.6e-13 off
    just above the switch in float64 on these inputs; ``Jr^-1``'s last column, written with
    ``1 - cos t`` and ``t - sin t``, 3.7e-9 there in float64 and 2.7e-4 in float32."""
    gen = torch.Generator().manual_seed(4)
    angles = torch.logspace(-5, math.log10(3.1), 199, dtype=torch.float64, device="cpu")
    angles = torch.cat((torch.zeros(1, dtype=torch.float64, device="cpu"), angles))
    angles = angles * torch.where(torch.rand(200, generator=gen, device="cpu") < 0.5, -1.0, 1.0).double()
    v = torch.randn(200, 2, generator=gen, dtype=torch.float64, device="cpu")
    xi = torch.cat((v, angles[:, None]), -1).to(dtype).double()
    W = torch.zeros(200, 3, 3, dtype=torch.float64, device="cpu")
    W[:, 0, 1], W[:, 1, 0], W[:, :2, 2] = -xi[:, 2], xi[:, 2], xi[:, :2]
    reference = torch.linalg.matrix_exp(W)[:, :2, 2].to(device)
    M = torch.zeros(200, 6, 6, dtype=torch.float64, device="cpu")
    M[:, :3, :3], M[:, :3, 3:] = -W, torch.eye(3, dtype=torch.float64, device="cpu")
    M[:, 0, 2], M[:, 1, 2] = -xi[:, 1], xi[:, 0]  # -ad(xi): ad's last column is (vy, -vx), not W's
    Jr_inverse = torch.linalg.inv(torch.linalg.matrix_exp(M)[:, :3, 3:]).to(device)
    ours = lie.se2_right_jacobian_inverse(xi.to(dtype=dtype, device=device)).double()
    rounding = torch.finfo(dtype).eps
    error = ((ours - Jr_inverse).flatten(1).norm(dim=-1) / Jr_inverse.flatten(1).norm(dim=-1)).max()
    assert error < 20 * rounding, f"Jr^-1 off by {float(error):.2e} relative"
    theta = torch.zeros(3, dtype=dtype, device=device).requires_grad_()  # both branches' gradients finite at 0
    value = lie.se2_right_jacobian_inverse(theta).sum() + lie.se2_exp(theta).sum()
    assert torch.autograd.grad(value, theta)[0].isfinite().all()
    ours = lie.se2_exp(xi.to(dtype=dtype, device=device)).double()
    error = ((ours[:, :2] - reference).norm(dim=-1) / reference.norm(dim=-1)).max()
    assert error < 20 * rounding, f"Exp off by {float(error):.2e} relative"
    assert max_err(ours[:, 2], xi[:, 2].to(device)) < 2 * rounding
    back = lie.se2_log(lie.se2_exp(xi.to(dtype=dtype, device=device))).double()
    error = ((back - xi.to(device)).norm(dim=-1) / xi.to(device).norm(dim=-1)).max()
    assert error < 20 * rounding, f"Log(Exp(xi)) off by {float(error):.2e} relative"


def test_right_jacobian_inverse_against_differences(device):
    X = pp.randn_SE3(10, sigma=2.0, dtype=torch.float64, device=device).tensor()
    xi = ops.se3_log(X)
    eps, cols = 1e-6, []
    for k in range(6):
        d = torch.zeros(10, 6, dtype=torch.float64, device=device)
        d[:, k] = eps
        plus = ops.se3_log(ops.se3_compose(X, ops.se3_exp(d)))
        minus = ops.se3_log(ops.se3_compose(X, ops.se3_exp(-d)))
        cols.append((plus - minus) / (2 * eps))
    assert max_err(torch.stack(cols, -1), ops.se3_right_jacobian_inverse(xi)) < 1e-8


def test_sim3_left_jacobian_against_differences(device):
    x = torch.randn(7, dtype=torch.float64, device=device) * 0.7
    eps, cols = 1e-6, []
    X = pp.sim3(x).Exp()
    for k in range(7):
        e = torch.zeros(7, dtype=torch.float64, device=device)
        e[k] = eps
        plus = (pp.sim3(x + e).Exp() * X.Inv()).Log().tensor()
        minus = (pp.sim3(x - e).Exp() * X.Inv()).Log().tensor()
        cols.append((plus - minus) / (2 * eps))
    assert max_err(torch.stack(cols, -1), lie.sim3_left_jacobian(x)) < 1e-8


def test_quaternion_order_helpers(device):
    q = torch.tensor([0.1, 0.2, 0.3, 0.9], device=device)
    assert torch.equal(lie.xyzw_to_wxyz(q), torch.tensor([0.9, 0.1, 0.2, 0.3], device=device))
    assert torch.equal(lie.wxyz_to_xyzw(lie.xyzw_to_wxyz(q)), q)
    for convert in (lie.xyzw_to_wxyz, lie.wxyz_to_xyzw):  # three numbers had come back reordered
        with pytest.raises(ValueError, match=r"q: expected quaternions of shape \(\.\.\., 4\), got shape \(3,\)"):
            convert(q[:3])


def test_matrix_to_SE3_refuses_what_is_not_a_rigid_transform(device):
    """The edge conversion checks what it converts (it had turned a reflection, or a 4x4 with a
    last row of [0.5, 0, 0, 1], into a pose without a word), and keeps its gradient."""
    T = pp.randn_SE3(3, dtype=torch.float64, device=device).matrix()
    reflected, skewed = T.clone(), T.clone()
    reflected[1, :3, 0] *= -1
    skewed[2, 3, 0] = 0.5
    with pytest.raises(ValueError, match="T: the 3x3 block is not a rotation"):
        lie.matrix_to_SE3(reflected)
    with pytest.raises(ValueError, match=r"T_world_cam: the last row of a 4x4 transform must be \[0, 0, 0, 1\]"):
        lie.matrix_to_SE3(skewed, name="T_world_cam")
    with pytest.raises(ValueError, match=r"T: expected homogeneous matrices of shape \(\.\.\., 4, 4\)"):
        lie.matrix_to_SE3(T[:, :3, :3])
    assert max_err(lie.matrix_to_SE3(T[:, :3, :]).tensor(), lie.matrix_to_SE3(T).tensor()) == 0
    M = T.clone().requires_grad_()
    lie.matrix_to_SE3(M).tensor()[:, :3].sum().backward()  # the translation column, one to one
    assert torch.equal(M.grad[:, :3, 3], torch.ones(3, 3, dtype=torch.float64, device=device))


def test_as_SE3_accepts_poses_and_matrices(device):
    X = pp.randn_SE3(2, 3, dtype=torch.float64, device=device)
    assert max_err(lie.as_SE3(X).tensor(), X.tensor()) == 0
    assert max_err(lie.as_SE3(X.tensor()).tensor(), X.tensor()) == 0
    back = lie.as_SE3(X.matrix())
    assert max_err(back.matrix(), X.matrix()) < 1e-12
    tracked = X.tensor().clone().requires_grad_()  # checked on a detached view, the graph kept
    assert lie.as_SE3(tracked).requires_grad


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(3, 6), r"shape \(\.\.\., 7\)"),
        (torch.tensor([0.0, 0, 0, 0, 0, 0, 2.0]), "unit length"),
        (torch.tensor([float("nan"), 0, 0, 0, 0, 0, 1.0]), "NaN"),
        (torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0])), "not a rigid transform"),
        (2 * torch.eye(4), "not a rigid transform"),
        (torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.5, 0, 0, 1]]), "last row"),
        (torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0], dtype=torch.float16)).expand(2, 4, 4), "not a rigid"),
        ("pose", "expected a tensor"),
    ],
)
def test_as_SE3_refuses_bad_input(bad, match, device):
    with pytest.raises((ValueError, TypeError), match=match):
        lie.as_SE3(bad, name="target")


def test_raw_autograd_leaves_pypose_unchanged_outside(device):
    X = pp.randn_SE3(dtype=torch.float64, device=device).requires_grad_()
    p = torch.randn(3, dtype=torch.float64, device=device)
    (g_before,) = torch.autograd.grad(X.Act(p).sum(), X)
    with lie.raw_autograd():
        assert lie.raw_autograd_enabled()
        (g_raw,) = torch.autograd.grad(X.Act(p).sum(), X)
    assert not lie.raw_autograd_enabled()
    (g_after,) = torch.autograd.grad(X.Act(p).sum(), X)
    assert torch.equal(g_before, g_after)
    assert g_before[..., 6] == 0  # pypose's padded tangent form
    # the raw-mode gradient is the true derivative of the stored numbers: check by differences
    eps = 1e-6
    fd = torch.stack([
        (pp.SE3(X.detach().tensor() + eps * e).Act(p).sum() - pp.SE3(X.detach().tensor() - eps * e).Act(p).sum()) / (2 * eps)
        for e in torch.eye(7, dtype=torch.float64, device=device)[:3]
    ])
    assert max_err(g_raw[:3], fd) < 1e-8


def test_raw_autograd_is_per_thread(device):
    seen = []

    def other():
        seen.append(lie.raw_autograd_enabled())

    with lie.raw_autograd():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [False]


@pytest.mark.parametrize("form", ["quaternion", "matrix"])
def test_pose_arguments_are_normalized_within_rounding_and_refused_beyond(form, dtype, device):
    """One rule in every dtype: a rotation off by what rounding can do is normalized, one off by
    more is refused (float32 once took a quaternion 10% off unit length as it was, and IK then
    reported 7e-4 rad for a 0.033 rad error)."""
    X = pp.randn_SE3(5, dtype=torch.float64, device=device)
    tol = lie.unit_tolerance(dtype)
    for scale, ok in ((1 + 0.4 * tol, True), (1.1, False), (1 + 3 * tol, False)):
        if form == "quaternion":
            arg = X.tensor().clone()
            arg[:, 3:] *= scale
        else:
            arg = X.matrix().clone()
            arg[:, :3, :3] *= math.sqrt(scale)  # R^T R - I = scale - 1
        arg = arg.to(dtype)
        if not ok:
            with pytest.raises(ValueError, match=rf"target: .*tolerance {tol:.0e}"):
                lie.se3_tensor(arg, name="target")
            continue
        out = lie.se3_tensor(arg, name="target")
        assert out.dtype == dtype and out.device == device
        assert max_err(out[:, 3:].double().norm(dim=-1), torch.ones(5, dtype=torch.float64, device=device)) < 4 * torch.finfo(dtype).eps
        q_ref = X.tensor()[:, 3:] * torch.where(X.tensor()[:, 6:] < 0, -1.0, 1.0)  # the matrix path picks w >= 0
        q_out = out[:, 3:].double() * torch.where(out[:, 6:] < 0, -1.0, 1.0)
        assert max_err(q_out, q_ref) < 10 * tol


# every plain-tensor operation robojac.lie exports, with the trailing shape of each operand, as
# its docstring states them (written out here, not read from the library's own declarations)
_OPERAND_SHAPES = {
    "quat_mul": ((4,), (4,)), "quat_conj": ((4,),), "quat_rotate": ((4,), (3,)), "quat_to_matrix": ((4,),),
    "matrix_to_quat": ((3, 3),), "so3_exp": ((3,),), "so3_log": ((4,),), "so3_left_jacobian": ((3,),),
    "so3_left_jacobian_inverse": ((3,),), "se3_exp": ((6,),), "se3_exp_matrix": ((6,),), "se3_log": ((7,),),
    "se3_compose": ((7,), (7,)), "se3_inverse": ((7,),), "se3_act": ((7,), (3,)), "se3_to_matrix": ((7,),),
    "matrix_to_se3": ((4, 4),), "se3_adjoint": ((7,),), "se3_ad": ((6,),), "se3_left_jacobian_inverse": ((6,),),
    "se3_left_jacobian_inverse_transpose_times": ((6,), (6,)), "se3_right_jacobian_inverse": ((6,),),
    "quat_product_matrix": ((4,),), "quat_rotation_form": ((3,),), "skew": ((3,),),
    "sim3_left_jacobian": ((7,),), "sim3_left_jacobian_inverse": ((7,),), "sim3_exp": ((7,),), "sim3_log": ((8,),),
    "sim3_compose": ((8,), (8,)), "sim3_inverse": ((8,),), "sim3_adjoint": ((8,),), "sim3_ad": ((7,),),
    "se2_compose": ((3,), (3,)), "se2_inverse": ((3,),), "se2_exp": ((3,),),
    "se2_log": ((3,),), "se2_ad": ((3,),), "se2_adjoint": ((3,),), "se2_right_jacobian_inverse": ((3,),),
    "se2_to_se3": ((3,),), "se3_to_se2": ((7,),),
}
# the rest of lie's names: conversions and maps with their own checks (tested above), and helpers
_NOT_PLAIN_OPS = {
    "GroupSpec", "SE3_to_matrix", "as_SE3", "cross_rows", "group_spec", "is_lie_group", "matrix_to_SE3", "raw_autograd",
    "raw_autograd_enabled", "raw_from_tangent", "require_values", "retract_first_order", "se3_tensor",
    "tangent_from_raw", "tolerance", "unit_tolerance", "wrap_angle", "wrap_lie", "wxyz_to_xyzw", "xyzw_to_wxyz",
}


def _operand(tail, batch, dtype, device):
    x = torch.randn(batch + tail, dtype=dtype, device=device)
    if tail == (7,):
        x[..., 3:] = torch.nn.functional.normalize(x[..., 3:], dim=-1)
    if tail == (4,):
        x = torch.nn.functional.normalize(x, dim=-1)
    if tail == (8,):  # a similarity: a unit quaternion, a positive scale
        x = torch.cat((x[..., :3], torch.nn.functional.normalize(x[..., 3:7], dim=-1), x[..., 7:].exp()), -1)
    if tail == (3, 3) or tail == (4, 4):
        x = pp.randn_SE3(*batch, dtype=dtype, device=device).matrix()[..., : tail[0], : tail[1]]
    return x


def test_every_plain_op_is_listed_here():
    assert set(lie.__all__) == set(_OPERAND_SHAPES) | _NOT_PLAIN_OPS


@pytest.mark.parametrize("name", sorted(_OPERAND_SHAPES))
def test_plain_ops_refuse_wrong_operands_naming_the_operation_and_argument(name, device):
    """A wrong last axis, a non-tensor, an integer tensor, two dtypes, batch dims that do not
    broadcast: each raises before any arithmetic, naming the operation and the argument (a wrong
    last axis came back as torch's ``linalg.cross`` error, and ``so3_exp`` of a ``(10, 4)`` array
    returned a ``(10, 5)`` result)."""
    op, tails = getattr(lie, name), _OPERAND_SHAPES[name]
    args = [_operand(t, (5,), torch.float64, device) for t in tails]
    params = list(inspect.signature(op).parameters)
    assert torch.equal(op(*args), op(**dict(zip(params, args))))  # well-formed, by position or by name
    for i, tail in enumerate(tails):
        arg, shape = params[i], ", ".join(map(str, tail))
        for bad_tail in (tail[:-1] + (tail[-1] + 1,), tail[:-1] + (tail[-1] - 1,)):
            bad = list(args)
            bad[i] = torch.zeros((5,) + bad_tail, dtype=torch.float64, device=device)
            with pytest.raises(ValueError, match=rf"^{name}: {arg}: expected .*\(\.\.\., {shape}\).*got shape"):
                op(*bad)
        bad = list(args)
        bad[i] = args[i].tolist()
        with pytest.raises(TypeError, match=rf"^{name}: {arg}: expected a tensor"):
            op(*bad)
        bad[i] = args[i].round().long()
        with pytest.raises(TypeError, match=rf"^{name}: {arg}: expected a floating-point tensor"):
            op(*bad)
    if len(tails) == 2:
        with pytest.raises(ValueError, match=rf"^{name}: {params[0]} is torch.float64 .* {params[1]} is torch.float32"):
            op(args[0], args[1].float())
        with pytest.raises(ValueError, match=rf"^{name}: the leading \(batch\) dims of {params[0]} \(5,.*\(4,"):
            op(args[0], _operand(tails[1], (4,), torch.float64, device))


@pytest.mark.parametrize("name", ["se3_act", "se3_compose", "se3_log", "se3_inverse", "se3_to_matrix", "so3_log"])
def test_plain_ops_take_a_lietensor_as_its_stored_numbers(name, device):
    """A pypose user passes LieTensors: the result equals the plain tensors' (it raised from
    inside torch before, with pypose's 'Tensor Shape Invalid' warnings)."""
    tails = _OPERAND_SHAPES[name]
    X = pp.randn_SE3(5, dtype=torch.float64, device=device)
    lt = X if tails[0] == (7,) else pp.SO3(X.tensor()[..., 3:])
    rest = [_operand(t, (5,), torch.float64, device) for t in tails[1:]]
    op = getattr(lie, name)
    got = op(lt, *rest)
    assert type(got) is torch.Tensor and torch.equal(got, op(lt.tensor(), *rest))


def _sim3_tangents(scale_phi: float, scale_sigma: float, n: int = 64) -> torch.Tensor:
    """``n`` sim3 tangents: translations of ~3, angles below pi times ``scale_phi``, log-scales ~``scale_sigma``."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(n, 7, dtype=torch.float64, generator=g, device="cpu")
    axis = torch.nn.functional.normalize(x[:, 3:6], dim=-1)
    x[:, 3:6] = axis * 3.0 * torch.rand(n, 1, dtype=torch.float64, generator=g, device="cpu") * scale_phi
    x[:, 6] *= scale_sigma
    x[:, :3] *= 3.0
    return x


def _sim3_translation_by_quadrature(x: torch.Tensor) -> torch.Tensor:
    """``W(phi, sigma) rho`` with ``W = int_0^1 exp(u sigma) Exp(u phi) du`` by 40-point
    Gauss-Legendre quadrature (exact to rounding for these tangents), from Rodrigues' rotation in
    numpy: no matrix exponential and no series of robojac's or pypose's."""
    import numpy as np

    u, w = np.polynomial.legendre.leggauss(40)
    u, w = 0.5 * (u + 1), 0.5 * w
    out = []
    for rho, phi, sigma in zip(x[:, :3].numpy(), x[:, 3:6].numpy(), x[:, 6].numpy()):
        th = np.linalg.norm(phi)
        K = np.array([[0, -phi[2], phi[1]], [phi[2], 0, -phi[0]], [-phi[1], phi[0], 0]]) / max(th, 1e-300)
        W = sum(wk * np.exp(uk * sigma) * (np.eye(3) + np.sin(uk * th) * K + (1 - np.cos(uk * th)) * K @ K)
                for uk, wk in zip(u, w))
        out.append(W @ rho)
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize("scale_phi,scale_sigma", [(1, 1), (1e-9, 1), (1, 1e-9), (1e-9, 1e-9), (1e-4, 1e-4), (0, 0)])
def test_sim3_exp_is_exact_at_its_singular_limits(scale_phi, scale_sigma):
    """``lie.sim3_exp``'s translation equals ``W rho`` by quadrature to 1e-13 everywhere, its
    rotation is scipy's of ``phi`` and its scale ``exp(sigma)``, and ``sim3_log`` inverts it.  pypose's
    ``sim3.Exp`` is off by up to 2e-5 where ``sigma ~ 1e-9`` and ``phi ~ 1``."""
    x = _sim3_tangents(scale_phi, scale_sigma)
    X = lie.sim3_exp(x)
    assert max_err(X[:, :3], _sim3_translation_by_quadrature(x)) < 1e-13
    q_ref = torch.from_numpy(Rotation.from_rotvec(x[:, 3:6].numpy()).as_quat())  # scipy's, [qx, qy, qz, qw]
    q = X[:, 3:7] * torch.sign((X[:, 3:7] * q_ref).sum(-1, keepdim=True))
    assert max_err(q, q_ref) < 1e-15 and max_err(X[:, 7], x[:, 6].exp()) == 0
    assert max_err(lie.sim3_log(X), x) < 1e-12
    if (scale_phi, scale_sigma) == (1, 1e-9):  # the reference tells the two apart
        assert max_err(pp.sim3(x).Exp().tensor()[:, :3], _sim3_translation_by_quadrature(x)) > 1e-7


def test_sim3_group_operations_agree_with_pypose_and_the_adjoint_conjugates(device):
    """``sim3_compose``/``sim3_inverse`` equal pypose's ``*``/``Inv``; ``Exp(Ad(X) d) = X Exp(d) X^-1``;
    ``Jl(x)^-1 Jl(x) = I`` and ``Log(Exp(d) Exp(x)) = x + Jl(x)^-1 d`` to first order (central
    differences)."""
    x = _sim3_tangents(0.5, 0.5, 8).to(device)
    X, Y = lie.sim3_exp(x), lie.sim3_exp(x.flip(0))
    assert max_err(lie.sim3_compose(X, Y), (pp.Sim3(X) * pp.Sim3(Y)).tensor()) < 1e-12
    assert max_err(lie.sim3_inverse(X), pp.Sim3(X).Inv().tensor()) < 1e-12
    d = 0.1 * x.flip(0)
    conj = lie.sim3_compose(lie.sim3_compose(X, lie.sim3_exp(d)), lie.sim3_inverse(X))
    assert max_err(lie.sim3_exp((lie.sim3_adjoint(X) @ d.unsqueeze(-1)).squeeze(-1)), conj) < 1e-12
    Jinv = lie.sim3_left_jacobian_inverse(x)
    assert max_err(Jinv @ lie.sim3_left_jacobian(x), torch.eye(7, dtype=torch.float64, device=device)) < 1e-12
    h = 1e-6
    for k in range(7):
        e = torch.zeros(7, dtype=torch.float64, device=device)
        e[k] = h
        fd = (lie.sim3_log(lie.sim3_compose(lie.sim3_exp(e).expand_as(X), X))
              - lie.sim3_log(lie.sim3_compose(lie.sim3_exp(-e).expand_as(X), X))) / (2 * h)
        assert max_err(fd, Jinv[..., k]) < 1e-7


@pytest.mark.parametrize("scale_phi,scale_sigma", [(1, 1), (1e-9, 1), (1, 1e-9), (1e-9, 1e-9), (0, 0), (1, 3)])
def test_sim3_left_jacobian_equals_the_matrix_exponential(scale_phi, scale_sigma):
    """``Jl(x) = int_0^1 exp(u ad(x)) du`` is the top-right block of ``expm([[ad, I], [0, 0]])``
    (torch's Pade exponential of pypose's ``sim3_adj``): ``sim3_left_jacobian`` and its inverse
    equal it within 1e-12 (translations of ~5, where entries reach ~10), singular limits
    included, and ``sim3_ad`` is pypose's."""
    from pypose.lietensor import operation as pp_ops

    x = _sim3_tangents(scale_phi, scale_sigma)
    ad = pp_ops.sim3_adj(x)
    assert max_err(lie.sim3_ad(x), ad) == 0
    eye = torch.eye(7, dtype=torch.float64).expand(ad.shape)
    big = torch.cat((torch.cat((ad, eye), -1), torch.zeros(x.shape[0], 7, 14, dtype=torch.float64)), -2)
    Jl = torch.linalg.matrix_exp(big)[..., :7, 7:]
    assert max_err(lie.sim3_left_jacobian(x), Jl) < 1e-12
    assert max_err(lie.sim3_left_jacobian_inverse(x) @ Jl, eye) < 1e-12


def test_sim3_exp_has_finite_second_derivatives_at_zero():
    """The implicit backward differentiates the retraction twice at a zero step: ``sim3_exp``'s
    Hessian there is finite and equals central differences of its gradient (a square root of
    ``|phi|^2`` in its coefficients had made it NaN and the gradients through a Sim3 solve zero)."""
    w = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def f(x):
        return (lie.sim3_exp(x) * w).sum()

    zero = torch.zeros(7, dtype=torch.float64)
    H = torch.autograd.functional.hessian(f, zero)
    assert bool(torch.isfinite(H).all())
    h = 1e-5
    for k in range(7):
        e = torch.zeros(7, dtype=torch.float64)
        e[k] = h
        g_plus = torch.autograd.functional.jacobian(f, e)
        g_minus = torch.autograd.functional.jacobian(f, -e)
        assert max_err((g_plus - g_minus) / (2 * h), H[k]) < 1e-8
