"""Point clouds as tensors: reading, checking, voxel downsampling, normals and covariances."""

from __future__ import annotations

import logging
import math
import numbers
import pathlib
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .._files import as_path, read_bytes, read_text
from .._precision import spacing
from ..lie import require_values
from ._pcd import PCDError, read_pcd, read_xyz
from ._neighbors import NearestNeighbors, points_shaped
from ._ply import PLYError, read_ply

__all__ = ["PCDError", "PLYError", "as_points", "check_resolution", "read_point_cloud", "voxel_downsample",
           "estimate_covariances", "knn_covariances", "knn_covariances_many", "normals_from_covariances",
           "spatial_order"]


def as_points(cloud, name: str = "points", *, dtype=None, device=None) -> Tensor:
    """An ``(N, 3)`` float tensor from a tensor, array or Open3D point cloud (checked)."""
    if hasattr(cloud, "points") and not isinstance(cloud, (Tensor, np.ndarray)):
        cloud = np.asarray(cloud.points)
    if isinstance(cloud, np.ndarray):
        cloud = torch.from_numpy(np.ascontiguousarray(cloud))
    if not isinstance(cloud, Tensor):
        raise TypeError(f"{name}: expected an (N, 3) tensor, array or Open3D point cloud, got {type(cloud).__name__}")
    require_values(cloud, name)
    if cloud.dim() != 2 or cloud.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3), got {tuple(cloud.shape)}")
    if cloud.shape[0] == 0:
        raise ValueError(f"{name}: the point cloud is empty")
    if not cloud.is_floating_point():
        cloud = cloud.double()
    if not torch.isfinite(cloud).all():
        bad = int((~torch.isfinite(cloud).all(-1)).sum())
        raise ValueError(f"{name}: {bad} of {cloud.shape[0]} points have NaN or infinite coordinates (a depth "
                         f"camera's organized cloud marks its invalid pixels so); keep the finite ones: "
                         f"points[torch.isfinite(points).all(-1)]")
    return cloud.to(dtype=dtype or cloud.dtype, device=device or cloud.device)


log = logging.getLogger(__name__)

# A cloud whose dtype rounds its coordinates by more than this share of its extent (the diagonal of
# its box) is registered no finer than that rounding: float32 keeps 7 digits, so map coordinates
# (4,000 km out) are rounded to 0.25 m.  GICP on the LiDAR pair (0.25 m voxels, 73 m across) moved
# by 0.10 m and 0.69 deg there (share 3.4e-3; float64 the same 4,000 km out: 2e-11 m), by 5 mm at
# 100 km (1.1e-4); the bunny pair (3 mm voxels, 0.25 m across) by 0.57 mm and 0.06 deg 10 km out
# (4e-3), 0.07 mm and 0.016 deg 1 km out (2.5e-4: what float32 moves it at the origin).  A scan in
# the sensor's frame, or a city in local metres (10 km: 1 mm of a 160 m scan), passes.
COARSE = 1e-3


def check_resolution(clouds: Sequence[Tensor], names: Sequence[str]) -> None:
    """Log a warning, once for the worst, where a cloud's dtype holds its coordinates more coarsely
    than :data:`COARSE` of the cloud's extent (float64 clouds are not looked at).  One
    synchronization on a GPU for all the clouds."""
    looked = [(c.detach(), n) for c, n in zip(clouds, names)
              if c.dtype != torch.float64 and c.device.type != "meta" and c.shape[0] > 1]
    if not looked:
        return
    rows = []
    for c, _ in looked:
        lo, hi = c.amin(0).double(), c.amax(0).double()
        far = torch.maximum(lo.abs(), hi.abs()).max()
        rows.append(torch.stack((spacing(far, c.dtype), (hi - lo).norm(), far)))
    step, extent, far = torch.stack(rows).cpu().unbind(-1)
    share = torch.where(extent > 0, step / extent.clamp_min(1e-300), torch.zeros_like(step))
    k = int(share.argmax())
    if share[k] > COARSE:
        c, name = looked[k]
        log.warning("%s: coordinates up to %.4g from the origin are held in %s to %.2g, %.1e of the cloud's extent "
                    "(%.4g): a registration is no finer than that. Use float64 (read_point_cloud's default), or "
                    "subtract one point near the clouds from all of them before rounding to %s",
                    name, float(far[k]), c.dtype, float(step[k]), float(share[k]), float(extent[k]), c.dtype)


def read_point_cloud(path, *, dtype=torch.float64) -> Tensor:
    """Points ``(N, 3)`` of a PLY (``.ply`` or ``.ply.gz``), PCD, XYZ (``.xyz``, ``.xyzn``,
    ``.xyzrgb``, ``.txt``) or KITTI Velodyne (``.bin`` or ``.bin.gz``, :func:`read_kitti_bin`) file.

    These are read by robojac and checked against what they declare: a truncated or corrupt file
    raises :class:`PLYError` or :class:`PCDError` (``ValueError`` for XYZ) naming the file and,
    for text, the line, instead of coming back padded with zeros or uninitialized memory, or
    with unreadable lines skipped (as Open3D's readers do).  Other formats Open3D reads go
    through it; a file it cannot read raises ``ValueError``.
    """
    path = as_path(path, "point-cloud file")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating-point torch dtype, got {dtype!r}")
    name = path.name.lower()
    if name.endswith((".ply", ".ply.gz")):
        return torch.from_numpy(read_ply(path)).to(dtype)
    if name.endswith(".pcd"):
        return torch.from_numpy(read_pcd(path)).to(dtype)
    if name.endswith((".xyz", ".xyzn", ".xyzrgb", ".txt")):
        return torch.from_numpy(read_xyz(path)).to(dtype)
    if name.endswith((".bin", ".bin.gz")):
        return read_kitti_bin(path, dtype=dtype)
    if name.endswith(".gz"):
        raise ValueError(f"{path}: only PLY files can be read gzip-compressed (.ply.gz); decompress it first")
    import open3d as o3d

    if not path.exists():
        raise FileNotFoundError(f"point cloud file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a point cloud file, got a folder")
    pcd = o3d.io.read_point_cloud(str(path))
    pts = np.asarray(pcd.points)
    if len(pts) == 0:
        raise ValueError(f"{path}: no points could be read (is it a point cloud file Open3D supports?)")
    return torch.from_numpy(pts.copy()).to(dtype)


def read_kitti_bin(path, *, dtype=torch.float64, reflectance: bool = False) -> Tensor:
    """Points ``(N, 3)`` (``(N, 4)`` with ``reflectance``) of a KITTI Velodyne scan: float32
    ``x, y, z, reflectance`` records of 16 bytes (``.bin``, or ``.bin.gz``).  A file whose size
    is not a whole number of records is refused, naming the file and its size."""
    path = as_path(path, "KITTI .bin scan")
    raw = read_bytes(path, "KITTI .bin scan")
    if len(raw) % 16:
        raise ValueError(f"{path}: {len(raw)} bytes is not a whole number of 16-byte KITTI records "
                         f"(x, y, z, reflectance as float32); the file is truncated or not a KITTI scan")
    a = np.frombuffer(raw, dtype="<f4").reshape(-1, 4)
    if not np.isfinite(a).all():
        bad = int(np.nonzero(~np.isfinite(a).all(1))[0][0])
        raise ValueError(f"{path}: record {bad} is not finite")
    t = torch.from_numpy(a.copy()).to(dtype)
    return t if reflectance else t[:, :3].contiguous()


def read_scans(folder, *, format: str = "auto", dtype=torch.float64) -> tuple[list[Tensor], list[pathlib.Path]]:
    """``(clouds, files)``: every scan in ``folder``, in file-name order (KITTI's zero-padded
    numbers sort in time).  ``format``: ``"kitti"`` (``.bin``/``.bin.gz``), ``"ply"`` (``.ply``,
    ``.ply.gz``, ``.pcd``), or ``"auto"`` (whichever the folder holds)."""
    folder = as_path(folder, "folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: expected a folder of scans")
    kinds = {"kitti": (".bin", ".bin.gz"), "ply": (".ply", ".ply.gz", ".pcd")}
    if format not in ("auto", *kinds):
        raise ValueError(f"format: expected 'auto', 'kitti' or 'ply', got {format!r}")
    chosen = [k for k in kinds if format in ("auto", k)]
    files = {k: sorted(f for f in folder.iterdir() if f.name.endswith(kinds[k])) for k in chosen}
    found = [k for k in chosen if files[k]]
    if not found:
        raise ValueError(f"{folder}: no scans ({', '.join(e for k in chosen for e in kinds[k])})")
    if len(found) > 1:
        raise ValueError(f"{folder}: holds both KITTI and PLY/PCD scans; pass format='kitti' or 'ply'")
    paths = files[found[0]]
    reader = read_kitti_bin if found[0] == "kitti" else read_point_cloud
    return [reader(f, dtype=dtype) for f in paths], paths


def voxel_downsample(points: Tensor, voxel_size: float) -> Tensor:
    """The centroid of the points in each occupied voxel of edge ``voxel_size`` (any device).

    ``0`` keeps the points as they are.  Voxels are found by :func:`voxel_ids`.  LiDAR odometry
    gets the same centroids from ``_voxelmap.nested_voxels``, in the one sort that also groups
    them in voxels three times larger (a second sort cost ~1.4 ms a KITTI scan).
    """
    points_shaped(points)
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, numbers.Real):
        raise TypeError(f"voxel_size: expected a number (0: no downsampling), got {type(voxel_size).__name__}")
    voxel_size = float(voxel_size)
    if not math.isfinite(voxel_size) or voxel_size < 0:
        raise ValueError(f"voxel_size: expected a finite size >= 0 (0: no downsampling), got {voxel_size}")
    if voxel_size == 0 or points.shape[0] == 0:
        return points
    inverse = voxel_ids(points, voxel_size)
    n = int(inverse.max()) + 1
    sums = points.new_zeros(n, 3).index_add_(0, inverse, points)
    counts = torch.bincount(inverse, minlength=n).to(points.dtype)
    return sums / counts[:, None]


def voxel_ids(points: Tensor, voxel_size: float) -> Tensor:
    """``(N,)`` the index of each point's voxel (edge ``voxel_size``, the grid anchored at the
    origin) among the occupied ones, numbered in the order of their keys (:func:`voxel_keys`)."""
    keys = voxel_keys(points, voxel_size)
    return torch.unique(keys, dim=0 if keys.dim() == 2 else None, return_inverse=True)[1]


def voxel_keys(points: Tensor, voxel_size: float) -> Tensor:
    """Each point's voxel as one integer ``(N,)``, ordered as the voxels' ``(x, y, z)`` indices,
    when the cloud's extent in voxels allows packing them; beyond 2^62 voxels (a tiny voxel over
    a huge extent, where a packed key would overflow and merge distant points) the rows of
    indices ``(N, 3)`` instead: slower to sort, never wrong."""
    keys = torch.floor(points.detach() / voxel_size)
    lo, hi = torch.aminmax(keys, dim=0)
    if not float(torch.maximum(lo.abs(), hi.abs()).max()) < 2.0**62:  # NaN fails this too
        raise ValueError(f"voxel_size: {voxel_size} is too small for coordinates this large (over 2^62 voxels "
                         "from the origin)")
    keys = (keys - lo).long()
    span = (hi - lo).long() + 1
    if float(span.double().prod()) < 2.0**62:
        return (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
    return keys


_SPREAD: dict = {}  # (dtype, device) -> the 10-bit Morton spreading table


def _spread_table(dtype, device) -> Tensor:
    """``(1024,)``: each 10-bit integer with two zero bits put after each of its bits (exact in
    any float type with 30 bits of mantissa or more)."""
    key = (dtype, str(device))
    if key not in _SPREAD:
        x = torch.arange(1024, dtype=torch.long, device="cpu")
        out = torch.zeros_like(x)
        for b in range(10):
            out |= ((x >> b) & 1) << (3 * b)
        _SPREAD[key] = out.to(dtype=dtype, device=device)
    return _SPREAD[key]


def spatial_order(points: Tensor) -> Tensor:
    """``(N,)`` a permutation that puts ``points (N, 3)`` in Morton (Z-curve) order over a
    1024^3 grid of a cube about the first point that holds them all: points near each other in
    space come near each other in memory.

    Order changes no answer of a nearest-neighbour search, but a KD-tree answers queries that
    come in this order faster (each one walks the branches the last one left in cache): on the
    bunny's 3k points, Open3D's 10-neighbour covariances took 1.67 ms instead of 2.02 ms and
    its 1-nearest queries 0.47 ms instead of 0.53 ms, against the file's order.  The order
    itself costs 65-110 us there.
    """
    points_shaped(points)
    if points.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    p = points.detach().double()  # the 30-bit keys are exact in float64 (float32 would merge cells)
    d = p - p[0]
    m = float(d.abs().max())
    g = d.mul_(511.5 / m if m > 0 else 0.0).add_(511.5).long().clamp_(0, 1023)
    t = _spread_table(d.dtype, d.device).index_select(0, g.reshape(-1)).view(-1, 3)
    return torch.argsort((t @ t.new_tensor([1.0, 2.0, 4.0])).long())  # integer keys sort faster


def estimate_covariances(points: Tensor, neighbors: Tensor) -> Tensor:
    """Covariances ``(N, 3, 3)`` of each point's neighbourhood ``neighbors (N, k)`` (indices)."""
    from ._soa import covariances

    points = as_points(points, "points")
    if not isinstance(neighbors, Tensor) or neighbors.is_floating_point() or neighbors.is_complex() \
            or neighbors.dtype == torch.bool:
        got = f"dtype {neighbors.dtype}" if isinstance(neighbors, Tensor) else type(neighbors).__name__
        raise TypeError(f"neighbors: expected an integer tensor (N, k) of point indices, got {got}")
    require_values(neighbors, "neighbors")
    N = points.shape[0]
    if neighbors.dim() != 2 or neighbors.shape[0] != N or neighbors.shape[1] < 1:
        raise ValueError(f"neighbors: expected shape ({N}, k) with k >= 1 (one row per point), got {tuple(neighbors.shape)}")
    if bool(((neighbors < 0) | (neighbors >= N)).any()):
        raise ValueError(f"neighbors: indices must lie in [0, {N}), got {int(neighbors.min())}..{int(neighbors.max())}")
    return covariances(points.T.contiguous(), neighbors.to(points.device)).permute(2, 0, 1)


def knn_covariances(points: Tensor, k: int, *, with_normals: bool = False, ordered: bool = False):
    """Covariances ``(3, 3, N)`` (structure of arrays) of each point's ``k`` nearest neighbours,
    the point itself included, normalized by ``k``; with ``with_normals``, also the unit normals
    ``(3, N)`` (smallest-eigenvalue eigenvectors, sign arbitrary).  ``ordered``: the points are
    already in :func:`spatial_order` (else the CPU search takes them in it, and the answers come
    back in the points' order).

    On the CPU Open3D's estimator does the search and the sums in C++ (the same numbers as a
    KD-tree query plus :func:`estimate_covariances`, to 1e-11, and 1.7x faster), and its normal
    estimator reuses those covariances (no second neighbour search; the same normals as
    :func:`normals_from_covariances` up to sign); on other devices the batched path of
    :func:`knn_covariances_many` (a brute-force search and torch), which the CPU runs too when asked.
    Without Open3D (a dependency, but a bare GPU image may lack it), the CPU takes a KD-tree
    query and :func:`estimate_covariances`' sums: the same numbers, except where the ``k``-th
    neighbour ties with the next (382 of the bunny's 40,097 points).
    """
    if points.device.type != "cpu":
        return knn_covariances_many([points], k, with_normals=with_normals, batched=True)[0]
    k = min(k, points.shape[0])
    points = points - points.mean(0)  # covariances do not see a shift; far from the origin they lose digits without it
    try:
        import open3d as o3d
    except ImportError:  # a dependency, but not on every image (bunny 045: 72 -> 75-86 ms; equal but at ties)
        from ._soa import covariances, normals

        _, neighbors = NearestNeighbors(points, backend="kdtree").query(points, k)
        C = covariances(points.T.contiguous(), neighbors.reshape(points.shape[0], -1))
        return (C, normals(C)) if with_normals else C

    back = None
    if not ordered:  # the search runs faster over points in space-filling order
        order = spatial_order(points)
        back = torch.empty_like(order)
        back[order] = torch.arange(order.shape[0], device=order.device)
        points = points[order]
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.detach().double().numpy()))
    search = o3d.geometry.KDTreeSearchParamKNN(k)
    pcd.estimate_covariances(search)
    C = torch.from_numpy(np.asarray(pcd.covariances)).to(points.dtype)
    C = (C if back is None else C[back]).permute(1, 2, 0)
    if not with_normals:
        return C
    pcd.estimate_normals(search, fast_normal_computation=True)  # from the covariances just set
    n = torch.from_numpy(np.asarray(pcd.normals)).to(points.dtype)
    return C, (n if back is None else n[back]).T


def knn_covariances_many(clouds: list[Tensor], k: int, *, with_normals: bool = False,
                         batched: bool | None = None, ordered: bool = False) -> list:
    """:func:`knn_covariances` of each cloud of a list.

    ``batched`` (default: off the CPU) pads the clouds and finds every cloud's neighbours in one
    brute-force search (:class:`~robojac.icp.PaddedNeighbors`), then sums them in one pass: on a GPU
    a few dozen kernels for the whole list instead of a few dozen per cloud.  A cloud of fewer
    than ``k`` points takes its own search, over all its points.  Without ``batched`` each cloud
    goes through Open3D's estimator (faster on the CPU than any brute force)."""
    if batched is None:
        batched = clouds[0].device.type != "cpu"
    if not batched:
        return [knn_covariances(c, k, with_normals=with_normals, ordered=ordered) for c in clouds]
    big = [i for i, c in enumerate(clouds) if c.shape[0] >= k]
    groups = ([big] if big else []) + [[i] for i, c in enumerate(clouds) if c.shape[0] < k]
    out = [None] * len(clouds)
    for group in groups:
        found = _padded_covariances([clouds[i] for i in group], min(k, clouds[group[0]].shape[0]), with_normals)
        for i, f in zip(group, found):
            out[i] = f
    return out


def _padded_covariances(clouds: list[Tensor], k: int, with_normals: bool) -> list:
    """:func:`knn_covariances_many`'s batched path for clouds of at least ``k`` points each."""
    from ._neighbors import PaddedNeighbors
    from ._soa import covariances, normals

    ref = clouds[0]
    if k == 0:  # empty clouds: nothing to search
        C = ref.new_zeros(3, 3, 0)
        return [(C, ref.new_zeros(3, 0)) if with_normals else C for _ in clouds]
    index = PaddedNeighbors(clouds)
    P = index.points  # (C, M, 3), each cloud about its centre (covariances do not see the shift)
    C_, M = P.shape[:2]
    which = torch.arange(C_, device=P.device)
    _, nb = index.query(P, which, k, centered=True)  # (C, M, k); padding rows are dropped below
    nb = nb.reshape(C_, M, k) + (which * M)[:, None, None]
    cov = covariances(P.reshape(-1, 3).T.contiguous(), nb.reshape(-1, k))  # (3, 3, C * M)
    if k < 3:  # fewer than 3 neighbours span no plane: the identity, as Open3D's estimator has it
        cov = torch.eye(3, dtype=cov.dtype, device="cpu").to(cov.device)[..., None].expand_as(cov).contiguous()
    nrm = normals(cov) if with_normals else None
    out = []
    for b, c in enumerate(clouds):
        part = slice(b * M, b * M + c.shape[0])
        out.append((cov[..., part], nrm[:, part]) if with_normals else cov[..., part])
    return out


def normals_from_covariances(cov: Tensor) -> Tensor:
    """Unit normals ``(N, 3)``: eigenvectors of the smallest eigenvalue of each ``(N, 3, 3)``
    covariance, in closed form (many times faster than a batched ``eigh`` on the CPU)."""
    from ._soa import normals

    if not isinstance(cov, Tensor) or not cov.is_floating_point():
        got = f"dtype {cov.dtype}" if isinstance(cov, Tensor) else type(cov).__name__
        raise TypeError(f"cov: expected a floating-point tensor (N, 3, 3) of covariances, got {got}")
    require_values(cov, "cov")
    if cov.dim() != 3 or cov.shape[1:] != (3, 3):
        raise ValueError(f"cov: expected shape (N, 3, 3), got {tuple(cov.shape)}")
    if not bool(torch.isfinite(cov).all()):
        raise ValueError("cov: contains NaN or infinite entries")
    return normals(cov.permute(1, 2, 0)).T


def read_stanford_conf(path) -> dict[str, Tensor]:
    """Scan poses ``T_world_scan`` (4x4) from a Stanford 3D Scanning Repository ``.conf`` file.

    Lines ``bmesh FILE tx ty tz qx qy qz qw`` give, in that repository's convention,
    ``world point = R(q)^T p + t`` (checked on the bunny: with ``R(q)`` instead, bun045 lands
    29 mm off bun000).  Errors name the line.
    """
    from scipy.spatial.transform import Rotation

    path = as_path(path, "Stanford .conf file")
    out = {}
    for lineno, line in enumerate(read_text(path, "Stanford .conf file").splitlines(), start=1):
        tok = line.split()
        if not tok or tok[0] != "bmesh":
            continue
        if len(tok) != 9:
            raise ValueError(f"{path}:{lineno}: a bmesh line needs a file name and 7 numbers, got {len(tok) - 1} values")
        try:
            t, q = np.array([float(v) for v in tok[2:5]]), np.array([float(v) for v in tok[5:9]])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected numbers after the file name") from None
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(q).as_matrix().T
        T[:3, 3] = t
        out[tok[1]] = torch.from_numpy(T)
    return out
