"""GNSS coordinates to metres: WGS84 latitude, longitude and ellipsoidal height to Earth-centred
(ECEF) and local east-north-up (ENU) coordinates, and back.

A receiver reports ``[latitude, longitude, height]`` in degrees and metres; a pose graph, a
trajectory metric or a plot wants metres in a frame near the data.  ENU about an origin near the
drive is such a frame: its axes point east, north and up there, and a 10 km drive stays within
metres of flat.  All in plain torch (batched over leading dims, differentiable), computed in
float64 whatever the inputs' dtype (ECEF coordinates are ~6.4e6 m: float32 would hold them to
0.5 m) and returned in it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._config import check_instance

__all__ = ["ecef_to_geodetic", "enu_to_geodetic", "geodetic_to_ecef", "geodetic_to_enu"]

WGS84_A = 6378137.0  # semi-major axis (m)
WGS84_F = 1 / 298.257223563  # flattening
_E2 = WGS84_F * (2 - WGS84_F)  # first eccentricity squared
_ITERATIONS = 6  # the latitude's fixed point: 1e-15 rad after 4 at heights within 10,000 km of the surface


def _points(value, name: str, what: str) -> Tensor:
    check_instance(name, value, Tensor, f"{what} (..., 3) as a tensor")
    if value.shape[-1:] != (3,) or not value.is_floating_point():
        raise ValueError(f"{name}: expected {what} (..., 3) of a floating dtype, got shape {tuple(value.shape)}, "
                         f"dtype {value.dtype}")
    if value.device.type != "meta" and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return value


def _geodetic(value, name: str) -> Tensor:
    lla = _points(value, name, "[latitude (deg), longitude (deg), height (m)]")
    if lla.device.type != "meta" and bool((lla[..., 0].abs() > 90).any()):
        raise ValueError(f"{name}: latitudes must lie in [-90, 90] degrees, got {float(lla[..., 0].abs().max()):.6g}")
    return lla


def geodetic_to_ecef(lla: Tensor) -> Tensor:
    """ECEF ``[x, y, z]`` (m) of WGS84 ``[latitude (deg), longitude (deg), height (m)]`` ``(..., 3)``."""
    lla = _geodetic(lla, "lla")
    g = lla.double()
    lat, lon, h = torch.deg2rad(g[..., 0]), torch.deg2rad(g[..., 1]), g[..., 2]
    s, c = torch.sin(lat), torch.cos(lat)
    N = WGS84_A / torch.sqrt(1 - _E2 * s * s)  # the prime vertical's radius of curvature
    xyz = torch.stack(((N + h) * c * torch.cos(lon), (N + h) * c * torch.sin(lon), (N * (1 - _E2) + h) * s), -1)
    return xyz.to(lla.dtype)


def ecef_to_geodetic(xyz: Tensor) -> Tensor:
    """WGS84 ``[latitude (deg), longitude (deg), height (m)]`` of ECEF points ``(..., 3)`` (m).

    The latitude is the fixed point of ``phi = atan2(z + e^2 N(phi) sin(phi), p)``, ``p`` the
    distance from the axis, iterated from the spherical guess; the height
    ``p cos(phi) + z sin(phi) - a sqrt(1 - e^2 sin^2(phi))`` holds at the poles too."""
    xyz = _points(xyz, "xyz", "ECEF points")
    P = xyz.double()
    x, y, z = P[..., 0], P[..., 1], P[..., 2]
    p = torch.hypot(x, y)
    lat = torch.atan2(z, p * (1 - _E2))
    for _ in range(_ITERATIONS):
        s = torch.sin(lat)
        lat = torch.atan2(z + _E2 * WGS84_A / torch.sqrt(1 - _E2 * s * s) * s, p)
    s, c = torch.sin(lat), torch.cos(lat)
    h = p * c + z * s - WGS84_A * torch.sqrt(1 - _E2 * s * s)
    return torch.stack((torch.rad2deg(lat), torch.rad2deg(torch.atan2(y, x)), h), -1).to(xyz.dtype)


def _enu_rotation(origin: Tensor) -> Tensor:
    """``R (..., 3, 3)``, rows east, north and up at ``origin`` (float64 degrees and metres)."""
    lat, lon = torch.deg2rad(origin[..., 0]), torch.deg2rad(origin[..., 1])
    sl, cl, so, co = torch.sin(lat), torch.cos(lat), torch.sin(lon), torch.cos(lon)
    zero = torch.zeros_like(sl)
    return torch.stack((torch.stack((-so, co, zero), -1), torch.stack((-sl * co, -sl * so, cl), -1),
                        torch.stack((cl * co, cl * so, sl), -1)), -2)


def geodetic_to_enu(lla: Tensor, origin: Tensor) -> Tensor:
    """East-north-up metres ``(..., 3)`` of WGS84 points ``lla`` (``[latitude (deg), longitude
    (deg), height (m)]``, ``(..., 3)``) about ``origin`` (the same form, broadcasting): the
    offset from ``origin`` in ECEF, turned into its east, north and up axes."""
    lla, origin = _geodetic(lla, "lla"), _geodetic(origin, "origin")
    o = origin.double().to(lla.device)
    d = geodetic_to_ecef(lla.double()) - geodetic_to_ecef(o)
    return (_enu_rotation(o) @ d.unsqueeze(-1)).squeeze(-1).to(lla.dtype)


def enu_to_geodetic(enu: Tensor, origin: Tensor) -> Tensor:
    """WGS84 ``[latitude (deg), longitude (deg), height (m)]`` of east-north-up metres ``enu``
    ``(..., 3)`` about ``origin``: the inverse of :func:`geodetic_to_enu`."""
    enu, origin = _points(enu, "enu", "east-north-up metres"), _geodetic(origin, "origin")
    o = origin.double().to(enu.device)
    d = (_enu_rotation(o).mT @ enu.double().unsqueeze(-1)).squeeze(-1)
    return ecef_to_geodetic(geodetic_to_ecef(o) + d).to(enu.dtype)
