"""TUM and KITTI trajectory files (as evo writes them), EuRoC CSV files."""

from __future__ import annotations

import io
import pathlib
from dataclasses import dataclass

import numpy as np
import pypose as pp
import torch
from torch import Tensor

from .._files import as_path, read_text, write_text_atomic
from .. import lie
from ..lie import se3_tensor

__all__ = ["Trajectory", "TrajectoryError", "read_tum", "write_tum", "read_kitti", "write_kitti", "read_euroc"]


class TrajectoryError(ValueError):
    """A trajectory file or argument that cannot be used (names the file and line)."""


@dataclass(frozen=True)
class Trajectory:
    """Poses ``T_world_pose`` ``(N, 7)`` (float64, pypose order) and optional timestamps ``(N,)``."""

    poses: Tensor
    timestamps: Tensor | None = None

    def __post_init__(self):
        P = se3_tensor(self.poses, name="poses").double()
        if P.dim() != 2:
            raise TrajectoryError(f"poses: expected shape (N, 7), got {tuple(P.shape)}")
        object.__setattr__(self, "poses", P)
        if self.timestamps is not None:
            ts = torch.as_tensor(self.timestamps, dtype=torch.float64, device=P.device).reshape(-1)
            if ts.shape[0] != P.shape[0]:
                raise TrajectoryError(f"timestamps: expected {P.shape[0]} values (one per pose), got {ts.shape[0]}")
            if not bool(torch.isfinite(ts).all()):
                k = int((~torch.isfinite(ts)).nonzero()[0])
                raise TrajectoryError(f"timestamps: pose {k}'s is NaN or infinite")
            object.__setattr__(self, "timestamps", ts)

    def __len__(self) -> int:
        return self.poses.shape[0]

    @property
    def positions(self) -> Tensor:
        return self.poses[:, :3]

    @property
    def steps(self) -> Tensor:
        """``(N - 1,)``: the distance between each position and the next (m)."""
        return (self.poses[1:, :3] - self.poses[:-1, :3]).norm(dim=-1)

    @property
    def distances(self) -> Tensor:
        """``(N,)``: the distance travelled along the path from the first pose to each (m)."""
        return torch.cat((self.poses.new_zeros(1), self.steps.cumsum(0)))

    def se3(self) -> pp.LieTensor:
        return pp.SE3(self.poses)

    def matrices(self) -> Tensor:
        return lie.se3_to_matrix(self.poses)


def as_trajectory(value, name: str) -> Trajectory:
    """``value`` as a :class:`Trajectory`: one as it is, or poses ``(N, 7)`` (a tensor or an
    SE3 LieTensor) or ``(N, 4, 4)`` matrices without timestamps; anything else is refused,
    naming the argument."""
    if isinstance(value, Trajectory):
        return value
    if isinstance(value, Tensor):
        if value.dim() == 3 and value.shape[-2:] == (4, 4):
            return Trajectory(lie.matrix_to_SE3(value, name=name).tensor())
        if value.dim() != 2 or value.shape[-1] != 7:
            raise TrajectoryError(f"{name}: expected a Trajectory, poses (N, 7) or matrices (N, 4, 4), "
                                  f"got a tensor of shape {tuple(value.shape)}")
        return Trajectory(value)
    raise TypeError(f"{name}: expected a Trajectory, poses (N, 7) or matrices (N, 4, 4), got {type(value).__name__}")


def _read_matrix(path, columns: int, what: str, *, at_least: bool = False) -> tuple[np.ndarray, list[int]]:
    """The file's numbers, a row per pose, and each pose's line number (for errors).  With
    ``at_least``, a line may hold more than ``columns`` numbers, as many as the first line."""
    path = as_path(path, f"{what} file")
    rows, lines = [], []
    for lineno, line in enumerate(read_text(path, f"{what} file").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        tokens = text.replace(",", " ").split()
        if at_least and rows and len(tokens) != len(rows[0]):
            raise TrajectoryError(f"{path}:{lineno}: {len(tokens)} numbers, where line {lines[0]} has {len(rows[0])}")
        if (len(tokens) < columns) if at_least else (len(tokens) != columns):
            need = f"at least {columns}" if at_least else f"{columns}"
            raise TrajectoryError(f"{path}:{lineno}: a {what} line needs {need} numbers, got {len(tokens)}")
        try:
            rows.append([float(t) for t in tokens])
            lines.append(lineno)
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            raise TrajectoryError(f"{path}:{lineno}: {bad!r} is not a number") from None
    if not rows:
        raise TrajectoryError(f"{path}: no poses found")
    mat = np.array(rows)
    if not np.isfinite(mat).all():
        k = int(np.nonzero(~np.isfinite(mat).all(1))[0][0])
        raise TrajectoryError(f"{path}:{lines[k]}: pose {k} has NaN or infinite values")
    return mat, lines


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def _save(path, mat: np.ndarray) -> pathlib.Path:
    buf = io.StringIO()
    np.savetxt(buf, mat, delimiter=" ")  # what evo writes, byte for byte
    return write_text_atomic(path, buf.getvalue())


def read_tum(path) -> Trajectory:
    """A TUM trajectory file (``timestamp tx ty tz qx qy qz qw`` per line, ``#`` comments)."""
    mat, lines = _read_matrix(path, 8, "TUM")
    return _stamped(path, lines, mat[:, 0], mat[:, 1:4], mat[:, 4:8])


def read_euroc(path) -> Trajectory:
    """A EuRoC MAV ground-truth or estimate CSV, as evo reads it.

    Each line: ``timestamp`` in nanoseconds, ``p_x p_y p_z``, ``q_w q_x q_y q_z`` (w first), and
    optionally more columns (the ground truth's velocities and biases, ignored); ``#`` starts a
    comment (the header).  Timestamps come back in seconds, quaternions in pypose's order."""
    mat, lines = _read_matrix(path, 8, "EuRoC", at_least=True)
    return _stamped(path, lines, mat[:, 0] / 1e9, mat[:, 1:4], mat[:, [5, 6, 7, 4]])


def _stamped(path, lines: list[int], stamps: np.ndarray, xyz: np.ndarray, q: np.ndarray) -> Trajectory:
    """The trajectory of positions and ``[x, y, z, w]`` quaternions read from ``path``; a
    quaternion far from unit length is refused, naming its line."""
    norms = np.linalg.norm(q, axis=1)
    if (np.abs(norms - 1) > 1e-3).any():
        k = int(np.argmax(np.abs(norms - 1)))
        raise TrajectoryError(f"{path}:{lines[k]}: pose {k} has a quaternion of length {norms[k]:.6g}, not a rotation")
    poses = np.concatenate((xyz, q / norms[:, None]), 1)
    return Trajectory(torch.from_numpy(poses), torch.from_numpy(np.ascontiguousarray(stamps)))


def write_tum(traj: Trajectory, path) -> pathlib.Path:
    """Write ``traj`` as evo does (timestamps required; atomic)."""
    traj = as_trajectory(traj, "traj")
    if traj.timestamps is None:
        raise TrajectoryError("write_tum: the trajectory has no timestamps (TUM files need them); use write_kitti")
    mat = np.column_stack((traj.timestamps.detach().cpu().numpy(), traj.poses.detach().cpu().numpy()))
    return _save(path, mat)


def read_kitti(path, *, calibration=None) -> Trajectory:
    """A KITTI pose file (12 numbers per line: the top 3x4 of each matrix, row-major).

    KITTI's odometry poses are of camera 0.  ``calibration`` (a file whose line ``Tr: ...``
    holds the 3x4 Velodyne-to-camera transform, as KITTI's ``calib.txt``) brings them into the
    LiDAR's frame: ``Tr^-1 P Tr``."""
    mat, lines = _read_matrix(path, 12, "KITTI")
    T = _rigid([f"{path}:{n}" for n in lines], mat.reshape(-1, 3, 4))
    if calibration is not None:
        Tr = _read_tr(calibration)
        T = np.linalg.inv(Tr) @ T @ Tr
    return Trajectory(lie.matrix_to_se3(torch.from_numpy(T)))


def _rigid(where: list[str], T: np.ndarray) -> np.ndarray:
    """``(N, 4, 4)`` from ``(N, 3, 4)`` rows, refusing one that is not a rigid transform (named by
    its ``where``: file and line)."""
    R = T[:, :, :3]
    err = np.abs(R @ np.transpose(R, (0, 2, 1)) - np.eye(3)).max(axis=(1, 2))
    if (err > 1e-3).any():
        k = int(np.argmax(err))
        raise TrajectoryError(f"{where[k]}: pose {k} is not a rigid transform (|R R^T - I| = {err[k]:.2e})")
    out = np.tile(np.eye(4), (len(T), 1, 1))
    out[:, :3] = T
    return out


def _read_tr(path) -> np.ndarray:
    """The 4x4 ``Tr`` (Velodyne -> camera 0) of a KITTI calibration file: its ``Tr:`` line (or
    a file of just 12 numbers)."""
    path = as_path(path, "KITTI calibration file")
    for lineno, line in enumerate(read_text(path, "KITTI calibration file").splitlines(), start=1):
        tokens = line.split()
        if not tokens or (tokens[0].endswith(":") and tokens[0] != "Tr:"):
            continue
        values = tokens[1:] if tokens[0] == "Tr:" else tokens
        if len(values) != 12 or not all(_is_float(v) for v in values):
            raise TrajectoryError(f"{path}:{lineno}: expected 'Tr:' and 12 numbers (a 3x4 matrix), got {line.strip()!r}")
        return _rigid([f"{path}:{lineno}"], np.array([float(v) for v in values]).reshape(1, 3, 4))[0]
    raise TrajectoryError(f"{path}: no 'Tr:' line (the Velodyne-to-camera transform of KITTI's calib.txt)")


def write_kitti(traj: Trajectory, path) -> pathlib.Path:
    """Write ``traj`` as evo does (12 numbers per line; atomic); poses ``(N, 7)`` do too."""
    traj = as_trajectory(traj, "traj")
    mat = traj.matrices().detach().cpu().numpy()[:, :3, :].reshape(-1, 12)  # a differentiable trajectory too
    return _save(path, mat)
