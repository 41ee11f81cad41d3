"""Calibration: kinematic calibration on simulated truths, and hand-eye beside OpenCV.

Kinematic calibration (the issue's protocol): every joint origin of the URDF perturbed by
N(0, 1 mm) and N(0, 0.2 deg), every offset by N(0, 0.3 deg); 60 measured flange poses with
0.05 mm / 0.005 deg noise (or positions only, or with 5% gross 2 cm outliers and a Cauchy
kernel); accuracy on 500 held-out configurations; the median time of a whole
``calibrate_kinematics`` call.  FIGAROH (PyPI ``figaroh``) installs here, but its calibration
runs from its YAML configuration and CSV formats (its examples repository's templates); it is
not run side by side yet.

Hand-eye: 30 stations, 0.1 mm / 0.05 deg noise on the camera's target poses, 20 trials;
the median error of each method, robojac's and OpenCV's ``calibrateHandEye`` on the same data,
and the median time per call.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/calibration.py [--robots panda ur5 iiwa14] [--trials 20]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, median_time, table  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.calibration import CalibrationConfig, calibrate_kinematics, hand_eye  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402

ROBOTS = {"panda": ("panda.urdf", "panda_hand"), "ur5": ("ur5.urdf", "tool0"), "iiwa14": ("kuka_iiwa14.urdf", None)}


def perturbed(chain: Chain, g: torch.Generator) -> Chain:
    p = chain.with_parameters()
    K = len(p.origin_joints)
    d = torch.cat((torch.randn(K, 3, generator=g, dtype=torch.float64) * 1e-3,
                   torch.randn(K, 3, generator=g, dtype=torch.float64) * math.radians(0.2)), -1)
    with torch.no_grad():
        p.joint_origins.data.copy_(lie.se3_compose(lie.se3_exp(d), p.joint_origins.tensor()))
        p.joint_offsets.copy_(torch.randn(chain.dof, generator=g, dtype=torch.float64) * math.radians(0.3))
    return p.frozen()


def kinematic(names: list[str]) -> str:
    rows = []
    for name in names:
        file, tip = ROBOTS[name]
        c = Chain.from_urdf(data.path(f"robots/{file}"))
        c = c.subchain(tip=tip) if tip else c
        g = torch.Generator().manual_seed(10)
        truth = perturbed(c, g)
        q = c.random_configuration(60, generator=g)
        held = c.random_configuration(500, generator=g)
        T = truth(q)
        noise = torch.randn(60, 6, generator=g, dtype=torch.float64)
        poses = torch.cat((T[:, :3] + 5e-5 * noise[:, :3],
                           lie.quat_mul(lie.so3_exp(math.radians(0.005) * noise[:, 3:]), T[:, 3:])), -1)
        outliers = poses.clone()
        outliers[torch.randperm(60, generator=g)[:3], :3] += 0.02
        cov = torch.diag(torch.tensor([5e-5] * 3 + [math.radians(0.005)] * 3, dtype=torch.float64) ** 2)
        cases = [("poses", lambda: calibrate_kinematics(c, q, poses)),
                 ("positions only", lambda: calibrate_kinematics(c, q, poses[:, :3])),
                 ("5% outliers, Cauchy", lambda: calibrate_kinematics(
                     c, q, outliers, covariance=cov, config=CalibrationConfig(kernel=RobustKernel("cauchy", 3.0))))]
        Tt = truth(held)
        nominal = float((c(held)[:, :3] - Tt[:, :3]).norm(dim=-1).square().mean().sqrt()) * 1e3
        for case, run in cases:
            r = run()
            Tc = r.chain(held)
            mm = float((Tc[:, :3] - Tt[:, :3]).norm(dim=-1).square().mean().sqrt()) * 1e3
            deg = math.degrees(float(lie.so3_log(lie.quat_mul(Tc[:, 3:], lie.quat_conj(Tt[:, 3:]))).norm(dim=-1).max()))
            seconds = median_time(run, repeat=15)
            rows.append([f"{name} ({c.dof} joints)", case, f"{nominal:.2f} mm", f"{mm:.4f} mm",
                         "-" if case == "positions only" else f"{deg:.4f} deg", f"{len(r.identifiable)}",
                         str(r.converged), fmt_time(seconds)])
    return table(["robot", "data (60 measurements)", "nominal (RMS)", "calibrated (RMS)", "max rotation",
                  "identifiable", "converged", "time (median)"], rows)


def hand_eye_side_by_side(trials: int) -> str:
    try:
        import cv2
    except ImportError:
        return "OpenCV is not installed (pip install opencv-python-headless): hand-eye not compared"
    ours = {m: [] for m in ("tsai", "park", "daniilidis", "refined")}
    cv = {m: [] for m in ("TSAI", "PARK", "HORAUD", "ANDREFF", "DANIILIDIS")}
    t_ours, t_cv = {m: [] for m in ours}, {m: [] for m in cv}

    def err(Xe, X):
        d = lie.se3_compose(Xe, lie.se3_inverse(X))
        return float(d[:3].norm()) * 1e3, math.degrees(float(lie.so3_log(d[3:]).norm()))

    for trial in range(trials):
        g = torch.Generator().manual_seed(100 + trial)
        pose = lambda n, r, t: lie.se3_exp(torch.cat((torch.randn(n, 3, generator=g, dtype=torch.float64) * t,  # noqa: E731
                                                      torch.randn(n, 3, generator=g, dtype=torch.float64) * r), -1))
        X, Z = pose(1, 0.5, 0.1)[0], pose(1, 0.5, 0.5)[0]
        Tg = pose(30, 0.6, 0.3)
        Tc = lie.se3_compose(lie.se3_inverse(lie.se3_compose(Tg, X.expand(30, 7))), Z.expand(30, 7))
        noise = torch.randn(30, 6, generator=g, dtype=torch.float64)
        Tn = torch.cat((Tc[:, :3] + 1e-4 * noise[:, :3],
                        lie.quat_mul(lie.so3_exp(math.radians(0.05) * noise[:, 3:]), Tc[:, 3:])), -1)
        for m in ours:
            t0 = time.perf_counter()
            r = hand_eye(Tg, Tn, method=m)
            t_ours[m].append(time.perf_counter() - t0)
            ours[m].append(err(r.X, X))
        Mg, Mc = lie.se3_to_matrix(Tg).numpy(), lie.se3_to_matrix(Tn).numpy()
        args = ([M[:3, :3] for M in Mg], [M[:3, 3] for M in Mg], [M[:3, :3] for M in Mc], [M[:3, 3] for M in Mc])
        for m in cv:
            t0 = time.perf_counter()
            R, t = cv2.calibrateHandEye(*args, method=getattr(cv2, f"CALIB_HAND_EYE_{m}"))
            t_cv[m].append(time.perf_counter() - t0)
            M = np.eye(4)
            M[:3, :3], M[:3, 3] = R, t[:, 0]
            cv[m].append(err(lie.matrix_to_se3(torch.tensor(M)), X))
    med = lambda e, k: statistics.median(x[k] for x in e)  # noqa: E731
    rows = [[f"robojac {m}", f"{med(e, 0):.4f}", f"{med(e, 1):.5f}", fmt_time(statistics.median(t_ours[m]))]
            for m, e in ours.items()]
    rows += [[f"OpenCV {m.lower()}", f"{med(e, 0):.4f}", f"{med(e, 1):.5f}", fmt_time(statistics.median(t_cv[m]))]
             for m, e in cv.items()]
    return table(["method", "position error (mm, median)", "rotation error (deg, median)", "time (median)"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--robots", nargs="+", choices=sorted(ROBOTS), default=["panda", "ur5", "iiwa14"])
    p.add_argument("--trials", type=int, default=20, help="hand-eye trials")
    a = p.parse_args()
    print(describe_machine())
    print("\n## Kinematic calibration\n")
    print(kinematic(a.robots))
    print(f"\n## Hand-eye, 30 stations, 0.1 mm / 0.05 deg, {a.trials} trials\n")
    print(hand_eye_side_by_side(a.trials))


if __name__ == "__main__":
    main()
