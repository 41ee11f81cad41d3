"""Calibration: kinematic calibration on simulated truths, and hand-eye beside OpenCV.

Kinematic calibration (the issue's protocol): every joint origin of the URDF perturbed by
N(0, 1 mm) and N(0, 0.2 deg), every offset by N(0, 0.3 deg); 60 measured flange poses with
0.05 mm / 0.005 deg noise (or positions only, or with 5% gross 2 cm outliers and a Cauchy
kernel); accuracy on 500 held-out configurations; the median time of a whole
``calibrate_kinematics`` call.  FIGAROH (PyPI ``figaroh``, where it is installed) calibrates the
same 60 poses in the same run: its ``full_params`` model, from a unified YAML configuration and
its CSV format written here, its structural QR selection of base parameters, scipy's
Levenberg-Marquardt; the time covers its ``initialize`` and ``solve``.

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
from robojac.calibration import (  # noqa: E402
    CalibrationConfig, calibrate_kinematics, hand_eye, perturbed_chain, simulate_poses,
)
from robojac.kinematics import Chain  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402

ROBOTS = {"panda": ("panda.urdf", "panda_hand"), "ur5": ("ur5.urdf", "tool0"), "iiwa14": ("kuka_iiwa14.urdf", None)}


def _scenario(c: Chain, seed: int):
    """``(truth, q (60,), held-out q (500,), measured poses, generator)`` of the protocol."""
    g = torch.Generator().manual_seed(seed)
    truth = perturbed_chain(c, generator=g)
    q = c.random_configuration(60, generator=g)
    held = c.random_configuration(500, generator=g)
    return truth, q, held, simulate_poses(truth, q, generator=g), g


def kinematic(names: list[str]) -> str:
    rows = []
    for name in names:
        file, tip = ROBOTS[name]
        c = Chain.from_urdf(data.path(f"robots/{file}"))
        c = c.subchain(tip=tip) if tip else c
        truth, q, held, poses, g = _scenario(c, 10)
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


def _figaroh_run(urdf: str, tip: str, joint_names: list[str], q, poses, held, folder: pathlib.Path):
    """FIGAROH on the same poses: ``(seconds, held-out poses (N, 4, 4))``."""
    import contextlib
    import io
    import logging
    import warnings

    import pinocchio as pin
    from figaroh.calibration.base_calibration import BaseCalibration
    from figaroh.calibration.calibration_tools import calc_updated_fkm

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    model = pin.buildModelFromUrdf(urdf)

    class Robot:  # what FIGAROH reads
        pass

    robot = Robot()
    robot.model, robot.data, robot.q0 = model, model.createData(), pin.neutral(model)
    M = lie.se3_to_matrix(poses).numpy()
    rpy = np.array([pin.rpy.matrixToRpy(m[:3, :3]) for m in M])
    cols = {n: q[:, j].numpy() for j, n in enumerate(joint_names)}
    cols.update({"x1": M[:, 0, 3], "y1": M[:, 1, 3], "z1": M[:, 2, 3],
                 "phix1": rpy[:, 0], "phiy1": rpy[:, 1], "phiz1": rpy[:, 2]})
    header = list(cols)
    lines = [",".join(header)] + [",".join(repr(float(cols[h][i])) for h in header) for i in range(len(q))]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    (folder / "config.yaml").write_text(f"""meta: {{schema_version: "2.0"}}
robot: {{name: {model.name}}}
tasks:
  calibration:
    enabled: true
    type: calibration
    kinematics: {{base_frame: universe, tool_frame: {tip}}}
    measurements:
      markers: [{{measurable_dof: [true, true, true, true, true, true]}}]
      poses: {{base_pose: null, tool_pose: null}}
    parameters: {{calibration_level: full_params}}
    data: {{source_file: {folder / "data.csv"}, number_of_samples: {len(q)}}}
""")

    class Calibration(BaseCalibration):
        def cost_function(self, var):
            est = calc_updated_fkm(self.model, self.data, var, self.q_measured, self.calib_config)
            return self.apply_measurement_weighting(
                self._compute_logmap_residuals(self.PEE_measured, est, position_frame="world"))

    def run():
        cal = Calibration(robot, str(folder / "config.yaml"))
        # FIGAROH 1.0.2's unified configuration does not set these two; both frames are unknown
        # here, as robojac estimates the first and last origins too
        cal.calib_config["known_baseframe"] = False
        cal.calib_config["known_tipframe"] = False
        with contextlib.redirect_stdout(io.StringIO()):
            cal.initialize()
            result = cal.solve(enable_logging=False)
        return cal, result

    seconds = median_time(run, repeat=3, warmup=1)
    cal, result = run()
    qh = np.zeros((len(held), model.nq))
    qh[:, cal.calib_config["config_idx"]] = held.numpy()
    cfg = dict(cal.calib_config, NbSample=len(held))
    P = calc_updated_fkm(model, cal.data, result.x, qh, cfg).reshape(6, len(held))
    out = np.tile(np.eye(4), (len(held), 1, 1))
    out[:, :3, 3] = P[:3].T
    out[:, :3, :3] = [pin.rpy.rpyToMatrix(P[3:, i]) for i in range(len(held))]
    return seconds, out


def figaroh_side_by_side(names: list[str]) -> str:
    try:
        import figaroh  # noqa: F401
    except ImportError:
        return "FIGAROH is not installed (pip install figaroh): not compared"
    import tempfile

    rows = []
    for name in names:
        file, tip = ROBOTS[name]
        urdf = str(data.path(f"robots/{file}"))
        c = Chain.from_urdf(urdf)
        c = c.subchain(tip=tip) if tip else c
        tip = tip or c.tip
        truth, q, held, poses, _ = _scenario(c, 20)
        Tt = lie.se3_to_matrix(truth(held)).numpy()

        def errors(M):
            mm = float(np.sqrt((np.linalg.norm(M[:, :3, 3] - Tt[:, :3, 3], axis=1) ** 2).mean())) * 1e3
            R = np.einsum("nji,njk->nik", M[:, :3, :3], Tt[:, :3, :3])
            deg = math.degrees(float(np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1)).max()))
            return f"{mm:.4f} mm", f"{deg:.4f} deg"

        ours = calibrate_kinematics(c, q, poses)
        t_ours = median_time(lambda: calibrate_kinematics(c, q, poses), repeat=15)
        with tempfile.TemporaryDirectory() as folder:
            t_fig, M_fig = _figaroh_run(urdf, tip, c.joint_names, q, poses, held, pathlib.Path(folder))
        rows.append([name, "robojac", *errors(lie.se3_to_matrix(ours.chain(held)).numpy()), fmt_time(t_ours), ""])
        rows.append([name, "FIGAROH", *errors(M_fig), fmt_time(t_fig), f"{t_fig / t_ours:.1f}x robojac"])
    return table(["robot", "library", "held-out position (RMS)", "held-out rotation (max)", "time (median)", ""], rows)


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
    print("\n## Kinematic calibration beside FIGAROH (60 poses, same data, same run)\n")
    print(figaroh_side_by_side(a.robots))
    print(f"\n## Hand-eye, 30 stations, 0.1 mm / 0.05 deg, {a.trials} trials\n")
    print(hand_eye_side_by_side(a.trials))


if __name__ == "__main__":
    main()
