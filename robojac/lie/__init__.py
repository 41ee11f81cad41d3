"""Small helpers around pypose's Lie groups: tangent maps, conversions, plain-tensor ops.

Conventions used everywhere in robojac: poses are ``[tx, ty, tz, qx, qy, qz, qw]`` (pypose's
order), perturbations are on the left, ``X' = Exp(d) * X``, and tangents are ``[rho, phi]``.
"""

from ._convert import (
    SE3_to_matrix,
    as_SE3,
    matrix_to_SE3,
    se3_tensor,
    tolerance,
    wrap_lie,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)
from ._ops import (
    matrix_to_quat,
    matrix_to_se3,
    quat_conj,
    quat_mul,
    quat_rotate,
    quat_to_matrix,
    se3_act,
    se3_adjoint,
    se3_compose,
    se3_exp,
    se3_inverse,
    se3_left_jacobian_inverse,
    se3_log,
    se3_right_jacobian_inverse,
    se3_to_matrix,
    so3_exp,
    so3_left_jacobian,
    so3_left_jacobian_inverse,
    so3_log,
)
from ._raw_autograd import raw_autograd, raw_autograd_enabled, sim3_left_jacobian
from ._tangent import GroupSpec, group_spec, is_lie_group, raw_from_tangent, retract_first_order, skew, tangent_from_raw

__all__ = [
    "GroupSpec",
    "SE3_to_matrix",
    "as_SE3",
    "group_spec",
    "is_lie_group",
    "matrix_to_SE3",
    "matrix_to_quat",
    "matrix_to_se3",
    "quat_conj",
    "quat_mul",
    "quat_rotate",
    "quat_to_matrix",
    "raw_autograd",
    "raw_autograd_enabled",
    "raw_from_tangent",
    "retract_first_order",
    "se3_act",
    "se3_adjoint",
    "se3_compose",
    "se3_exp",
    "se3_inverse",
    "se3_left_jacobian_inverse",
    "se3_log",
    "se3_right_jacobian_inverse",
    "se3_tensor",
    "se3_to_matrix",
    "sim3_left_jacobian",
    "skew",
    "so3_exp",
    "so3_left_jacobian",
    "so3_left_jacobian_inverse",
    "so3_log",
    "tangent_from_raw",
    "tolerance",
    "wrap_lie",
    "wxyz_to_xyzw",
    "xyzw_to_wxyz",
]
