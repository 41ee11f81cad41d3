"""WGS84 geodetic <-> ECEF <-> local ENU, against PROJ (pyproj) and against closed forms no code
here computes: the ellipsoid's axes, the meridian's radius of curvature, round trips."""

import math

import numpy as np
import pytest
import torch

from robojac.trajectory import ecef_to_geodetic, enu_to_geodetic, geodetic_to_ecef, geodetic_to_enu

from helpers import BATCH_SHAPES, max_err

KW = dict(dtype=torch.float64, device="cpu")
A, F = 6378137.0, 1 / 298.257223563
B = A * (1 - F)
KARLSRUHE = torch.tensor([49.0, 8.4, 110.0], **KW)


def _world(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lat = torch.rand(n, generator=g, **KW) * 179.8 - 89.9
    lon = torch.rand(n, generator=g, **KW) * 360 - 180
    h = torch.rand(n, generator=g, **KW) * 9500 - 500
    return torch.stack((lat, lon, h), -1)


def test_ecef_and_enu_equal_projs():
    """1,000 points over the globe, from 500 m below the ellipsoid to 9 km above: ECEF as PROJ's
    EPSG:4979 -> EPSG:4978, ENU as its ``cart`` + ``topocentric`` pipeline about Karlsruhe, both to
    1e-8 m (measured: 1.4e-9 and 3.7e-9 m); the way back to 1e-12 degrees and 1e-8 m."""
    pyproj = pytest.importorskip("pyproj")
    lla = _world(1000)
    t = pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
    ref = torch.tensor(np.array(t.transform(lla[:, 1].numpy(), lla[:, 0].numpy(), lla[:, 2].numpy())).T, **KW)
    xyz = geodetic_to_ecef(lla)
    assert max_err(xyz, ref) < 1e-8
    back = ecef_to_geodetic(xyz)
    assert max_err(back[:, :2], lla[:, :2]) < 1e-12 and max_err(back[:, 2], lla[:, 2]) < 1e-8
    lat0, lon0, h0 = KARLSRUHE.tolist()
    pipe = pyproj.Transformer.from_pipeline(
        "+proj=pipeline +step +proj=axisswap +order=2,1 +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=cart +ellps=WGS84 +step +proj=topocentric +ellps=WGS84 +lat_0={lat0} +lon_0={lon0} +h_0={h0}")
    ref = torch.tensor(np.array(pipe.transform(lla[:, 0].numpy(), lla[:, 1].numpy(), lla[:, 2].numpy())).T, **KW)
    enu = geodetic_to_enu(lla, KARLSRUHE)
    assert max_err(enu, ref) < 1e-8
    assert max_err(enu_to_geodetic(enu, KARLSRUHE)[:, :2], lla[:, :2]) < 1e-10


def test_the_ellipsoid_s_own_points_and_the_meridian_s_curvature():
    """The equator at the prime meridian is ``(a, 0, 0)``, 90 degrees east ``(0, a + h, 0)``, the
    north pole ``(0, 0, b)`` (and back, to the pole's height); 1 mm north of Karlsruhe along the
    meridian is ``(M + h) dphi`` north, ``M = a (1 - e^2) / (1 - e^2 sin^2 phi)^1.5`` (at the
    origin's height ``h``: 1.7e-5 more than ``M`` alone), and nothing east or up; a point 100 m
    above the origin is 100 m up."""
    pts = torch.tensor([[0.0, 0, 0], [0, 90, 250], [90, 0, 0], [-90, 45, 12]], **KW)
    xyz = geodetic_to_ecef(pts)
    assert max_err(xyz, torch.tensor([[A, 0, 0], [0, A + 250, 0], [0, 0, B], [0, 0, -B - 12]], **KW)) < 1e-8
    back = ecef_to_geodetic(xyz)
    assert max_err(back[:, 0], pts[:, 0]) < 1e-12 and max_err(back[:, 2], pts[:, 2]) < 1e-8
    e2 = F * (2 - F)
    phi = math.radians(49.0)
    M = A * (1 - e2) / (1 - e2 * math.sin(phi) ** 2) ** 1.5
    dphi = 1e-3 / (M + 110.0)  # radians for 1 mm at 110 m up
    north = torch.tensor([49.0 + math.degrees(dphi), 8.4, 110.0], **KW)
    enu = geodetic_to_enu(north, KARLSRUHE)
    assert max_err(enu, torch.tensor([0, 1e-3, 0], **KW)) < 1e-9  # ECEF differences round to ~1e-9 m
    up = geodetic_to_enu(KARLSRUHE + torch.tensor([0, 0, 100.0], **KW), KARLSRUHE)
    assert max_err(up, torch.tensor([0, 0, 100.0], **KW)) < 1e-8
    assert max_err(geodetic_to_enu(KARLSRUHE, KARLSRUHE), torch.zeros(3, **KW)) == 0.0


@pytest.mark.parametrize("shape", BATCH_SHAPES)
def test_batch_shapes_devices_dtypes_and_gradients(shape, device):
    """Leading dims broadcast with the origin's; the device and dtype are the input's (float32 in,
    float32 out, computed in float64); the functions are differentiable (gradcheck)."""
    n = max(1, math.prod(shape))
    lla = _world(n, seed=3).reshape(shape + (3,)).to(device)
    enu = geodetic_to_enu(lla, KARLSRUHE.to(device))
    assert enu.shape == shape + (3,) and enu.device == lla.device
    assert max_err(enu_to_geodetic(enu, KARLSRUHE.to(device))[..., :2], lla[..., :2]) < 1e-10
    assert geodetic_to_enu(lla.float(), KARLSRUHE.to(device)).dtype == torch.float32
    small = (lla.reshape(-1, 3)[:2] * torch.tensor([0.5, 0.5, 0.01], **KW).to(device)).requires_grad_()
    # outputs of ~1e6 m round to ~1e-9 m: steps of 1e-3 (degrees, metres), not gradcheck's 1e-6
    assert torch.autograd.gradcheck(lambda x: geodetic_to_enu(x, KARLSRUHE.to(device)), (small,), eps=1e-3,
                                    atol=1e-6, rtol=1e-5)
    xyz = geodetic_to_ecef(small.detach()).requires_grad_()  # ~6e6 m: steps of 1 mm, not float64's 1e-6 m
    assert torch.autograd.gradcheck(ecef_to_geodetic, (xyz,), eps=1e-3, atol=1e-6, rtol=1e-5)  # heights: 1e-9 m / 2 mm


def test_bad_coordinates_are_refused_by_name():
    with pytest.raises(ValueError, match=r"lla: latitudes must lie in \[-90, 90\] degrees, got 91"):
        geodetic_to_ecef(torch.tensor([91.0, 0, 0], **KW))
    with pytest.raises(ValueError, match=r"origin: expected \[latitude \(deg\), longitude \(deg\), height \(m\)\] "
                                         r"\(\.\.\., 3\) of a floating dtype, got shape \(2,\)"):
        geodetic_to_enu(KARLSRUHE, torch.tensor([49.0, 8.4], **KW))
    with pytest.raises(ValueError, match="enu: contains NaN"):
        enu_to_geodetic(torch.tensor([float("nan"), 0, 0], **KW), KARLSRUHE)
    with pytest.raises(TypeError, match=r"xyz: expected ECEF points \(\.\.\., 3\) as a tensor, got list"):
        ecef_to_geodetic([A, 0, 0])
