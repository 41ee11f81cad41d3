"""Hand-eye calibration of a camera on a wrist, from simulated checkerboard poses.

A camera is mounted on a robot's flange (``X = T_gripper_camera``, unknown).  The robot moves
it to 30 stations around a checkerboard lying on the table, each looking at the board from a
different side; at each the camera estimates the board's pose (``T_camera_target``, noise
0.1 mm and 0.05 deg) and the robot reports its flange pose (``T_base_gripper``).  Three of the
detections are wrong (the board misdetected by 2 cm).  ``hand_eye`` solves ``AX = XB`` with the
three closed forms users know and with the robust refinement; where OpenCV is installed, its
``calibrateHandEye`` runs on the same data beside them.

    python examples/14_hand_eye.py --out out/hand_eye
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robojac import lie  # noqa: E402
from robojac.calibration import HandEyeConfig, hand_eye  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402
from robojac.viz import plot_hand_eye_methods  # noqa: E402


def look_at(eye: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Camera poses ``T_base_camera`` at ``eye (N, 3)`` whose optical axis (z) points at ``target``,
    turned about that axis at random."""
    z = target - eye
    z = z / z.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype).expand_as(z)
    x = torch.linalg.cross(up, z, dim=-1)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x, dim=-1)
    R = torch.stack((x, y, z), -1)
    spin = lie.so3_exp(z * (torch.rand(len(eye), 1, generator=g, dtype=eye.dtype) - 0.5) * 2.0)
    return torch.cat((eye, lie.quat_mul(spin, lie.matrix_to_quat(R))), -1)


def error(Xe: torch.Tensor, X: torch.Tensor) -> tuple[float, float]:
    d = lie.se3_compose(Xe, lie.se3_inverse(X))
    return float(d[:3].norm()) * 1e3, math.degrees(float(lie.so3_log(d[3:]).norm()))


def main(out: pathlib.Path, stations: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    # the truth: a camera 8 cm off the flange, looking forward and a little down
    X = torch.cat((torch.tensor([0.03, -0.02, 0.08], dtype=torch.float64),
                   lie.so3_exp(torch.tensor([0.1, -0.2, 1.2], dtype=torch.float64))))
    T_base_target = torch.tensor([0.55, 0.05, 0.0, 0, 0, 0, 1], dtype=torch.float64)  # the board on the table
    # stations on a hemisphere 40-60 cm above the board, camera aimed at the board's centre
    az = torch.rand(stations, generator=g, dtype=torch.float64) * 2 * math.pi
    el = math.radians(35) + torch.rand(stations, generator=g, dtype=torch.float64) * math.radians(45)
    r = 0.4 + 0.2 * torch.rand(stations, generator=g, dtype=torch.float64)
    centre = T_base_target[:3] + torch.tensor([0.1, 0.075, 0.0], dtype=torch.float64)
    eye = centre + r[:, None] * torch.stack((el.cos() * az.cos(), el.cos() * az.sin(), el.sin()), -1)
    T_base_camera = look_at(eye, centre.expand_as(eye), g)
    T_base_gripper = lie.se3_compose(T_base_camera, lie.se3_inverse(X).expand(stations, 7))
    T_camera_target = lie.se3_compose(lie.se3_inverse(T_base_camera), T_base_target.expand(stations, 7))
    # what the camera measures: 0.1 mm and 0.05 deg of noise, and three misdetections
    noise = torch.randn(stations, 6, generator=g, dtype=torch.float64)
    seen = torch.cat((T_camera_target[:, :3] + 1e-4 * noise[:, :3],
                      lie.quat_mul(lie.so3_exp(math.radians(0.05) * noise[:, 3:]), T_camera_target[:, 3:])), -1)
    seen[[3, 12, 20], :3] += 0.02

    errors = {}
    for method in ("tsai", "park", "daniilidis"):
        errors[f"robojac {method}"] = error(hand_eye(T_base_gripper, seen, method=method).X, X)
    robust = HandEyeConfig(sigma_position=1e-4, sigma_rotation=math.radians(0.05), kernel=RobustKernel("cauchy", 3.0))
    refined = hand_eye(T_base_gripper, seen, config=robust)
    errors["robojac refined (Cauchy)"] = error(refined.X, X)
    try:
        import cv2

        Mg, Mc = lie.se3_to_matrix(T_base_gripper).numpy(), lie.se3_to_matrix(seen).numpy()
        for name in ("TSAI", "PARK", "HORAUD", "ANDREFF", "DANIILIDIS"):
            R, t = cv2.calibrateHandEye([M[:3, :3] for M in Mg], [M[:3, 3] for M in Mg], [M[:3, :3] for M in Mc],
                                        [M[:3, 3] for M in Mc], method=getattr(cv2, f"CALIB_HAND_EYE_{name}"))
            M = np.eye(4)
            M[:3, :3], M[:3, 3] = R, t[:, 0]
            errors[f"OpenCV {name.lower()}"] = error(lie.matrix_to_se3(torch.tensor(M)), X)
    except ImportError:
        print("  (OpenCV is not installed: its methods are left out)")
    for name, (mm, deg) in errors.items():
        print(f"  {name:26s} {mm:8.3f} mm {deg:8.4f} deg")
    print(f"  refined: {refined.reason[0]} after {int(refined.iterations)} iterations; stations set aside: "
          f"{torch.nonzero(refined.weights < 0.1).flatten().tolist()} (misdetected: [3, 12, 20])")

    fig = plt.figure(figsize=(13, 4.2))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    P = T_base_camera[:, :3].numpy()
    ax.scatter(*P.T, color="#3b5b92", s=12, label="camera at each station")
    axis = lie.quat_rotate(T_base_camera[:, 3:], torch.tensor([0, 0, 0.08], dtype=torch.float64).expand(stations, 3))
    for p, a in zip(P, axis.numpy()):
        ax.plot(*np.stack((p, p + a)).T, color="#3b5b92", lw=0.8)
    corners = T_base_target[:3].numpy() + np.array([[0, 0, 0], [0.2, 0, 0], [0.2, 0.15, 0], [0, 0.15, 0], [0, 0, 0]])
    ax.plot(*corners.T, color="#e07a5f", lw=2, label="checkerboard")
    bad = P[[3, 12, 20]]
    ax.scatter(*bad.T, color="#c0392b", marker="x", s=40, label="misdetected")
    ax.set_title("stations around the board")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_box_aspect((1, 1, 0.6))
    plot_hand_eye_methods(errors, fig.add_subplot(1, 2, 2))
    fig.tight_layout()
    fig.savefig(out / "hand_eye.png", dpi=90)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/hand_eye"))
    p.add_argument("--stations", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    main(a.out, a.stations, a.seed)
