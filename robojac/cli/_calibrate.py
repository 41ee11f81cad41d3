"""``robojac calibrate``: a robot's joint origins and offsets from measured poses or positions."""

from __future__ import annotations

import csv
import math
import pathlib
import sys
import time

from .._files import read_text, save_figure_atomic
from ._bar import load_chain, progress, robot_arguments
from ._numbers import real


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="kinematic calibration of a URDF or MJCF robot from measured poses or positions",
                       description="Estimate a robot's joint origins and offsets from measurements of one frame, "
                                   "report what the data identify, and write the calibrated URDF.")
    robot_arguments(p, "the measured frame (e.g. panda_hand)", "the frame measurements are in (default: the description's root)")
    p.add_argument("--data", required=True, type=pathlib.Path,
                   help="CSV with a header: one column per joint (by name, radians or metres), then x,y,z "
                        "(positions, metres) or x,y,z,qx,qy,qz,qw (poses); an optional column 'weight'")
    p.add_argument("--out", type=pathlib.Path, help="write the calibrated URDF here")
    p.add_argument("--sigma-position", type=real(positive=True), default=5e-5,
                   help="measurement noise, metres (default 5e-5)")
    p.add_argument("--sigma-rotation", type=real(positive=True), default=1e-4,
                   help="measurement noise, radians (default 1e-4)")
    p.add_argument("--kernel", choices=("none", "huber", "cauchy", "geman_mcclure", "tukey", "dcs"), default="none",
                   help="robust kernel on each measurement's whitened error, to set outliers aside (default: none)")
    p.add_argument("--kernel-scale", type=real(positive=True), default=3.0,
                   help="robust kernel scale, in sigmas (default 3)")
    p.add_argument("--plot", type=pathlib.Path, help="draw the errors per measurement and the identifiability spectrum")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or parameter table")


def read_measurements(path: pathlib.Path, joint_names: list[str]):
    """``(q (M, dof), measurements (M, 3 | 7), weight (M,) | None)`` from a CSV file; errors
    name the file and line."""
    import torch

    text = read_text(path, "measurement CSV")
    rows = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise ValueError(f"{path}: no header and no measurements")
    (hline, header), body = rows[0], rows[1:]
    cols = [c.strip() for c in next(csv.reader([header]))]
    missing = [j for j in joint_names if j not in cols]
    if missing:
        raise ValueError(f"{path}:{hline}: the header names no column for joints {missing}")
    pose = all(c in cols for c in ("x", "y", "z", "qx", "qy", "qz", "qw"))
    if not all(c in cols for c in ("x", "y", "z")):
        raise ValueError(f"{path}:{hline}: expected columns x,y,z (positions) or x,y,z,qx,qy,qz,qw (poses)")
    meas_cols = ["x", "y", "z"] + (["qx", "qy", "qz", "qw"] if pose else [])
    at = {c: i for i, c in enumerate(cols)}
    q, m, w = [], [], []
    for n, line in body:
        vals = next(csv.reader([line]))
        if len(vals) != len(cols):
            raise ValueError(f"{path}:{n}: expected {len(cols)} values (as the header), got {len(vals)}")
        try:
            nums = [float(v) for v in vals]
        except ValueError:
            raise ValueError(f"{path}:{n}: not a number in {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in nums):
            raise ValueError(f"{path}:{n}: NaN or infinite value")
        q.append([nums[at[j]] for j in joint_names])
        m.append([nums[at[c]] for c in meas_cols])
        if "weight" in at:
            if nums[at["weight"]] < 0:
                raise ValueError(f"{path}:{n}: weight {nums[at['weight']]:g} is negative; expected a weight >= 0")
            w.append(nums[at["weight"]])
    if not q:
        raise ValueError(f"{path}: a header but no measurements")
    f64 = dict(dtype=torch.float64, device="cpu")
    return torch.tensor(q, **f64), torch.tensor(m, **f64), (torch.tensor(w, **f64) if w else None)


def _units(name: str, value: float, sign: str = "+") -> str:
    if name.endswith((".x", ".y", ".z")):
        return f"{value * 1e3:{sign}10.4f} mm "
    return f"{math.degrees(value):{sign}10.5f} deg"


def run(args) -> int:
    try:
        return _run(args)
    finally:
        if not args.quiet:
            sys.stderr.write("\n")  # end the progress line, finished or not


def _run(args) -> int:
    import torch

    from ..calibration import CalibrationConfig, calibrate_kinematics
    from ..optim import RobustKernel

    t0 = time.perf_counter()
    steps, done = 4, 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if not args.quiet:
            progress(done, steps, t0, f"steps ({what})".ljust(28), rate=False)

    chain = load_chain(args.urdf, args.root, args.tip)
    step("read the robot")
    q, meas, weight = read_measurements(args.data, chain.joint_names)
    step("read the measurements")
    m = meas.shape[1]
    sig = [args.sigma_position] * 3 + ([args.sigma_rotation] * 3 if m == 7 else [])
    cov = torch.diag(torch.tensor(sig, dtype=torch.float64, device="cpu") ** 2)
    cfg = CalibrationConfig(kernel=RobustKernel(args.kernel, args.kernel_scale))
    result = calibrate_kinematics(chain, q, meas, covariance=cov, weight=weight, config=cfg)
    step("calibrated")
    if args.out:
        result.chain.to_urdf(args.out)
    step("wrote the URDF" if args.out else "done")

    kind = "poses" if m == 7 else "positions"
    print(f"{chain.name}: {len(q)} measured {kind} of {args.tip!r}; {len(result.parameter_names)} parameters, "
          f"{len(result.identifiable)} identifiable, {len(result.unidentifiable)} held at nominal")
    print(f"{'':24s}{'RMS position':>16s}{'RMS rotation':>16s}")
    for label, e in (("nominal", result.before), ("calibrated", result.after)):
        rot = "" if e.rms_rotation is None else f"{math.degrees(e.rms_rotation):12.5f} deg"
        print(f"{label:24s}{e.rms_position * 1e3:13.4f} mm{rot:>16s}")
    aside = torch.nonzero(result.weights < 0.1).flatten().tolist()
    if aside:
        print(f"set aside by the {args.kernel} kernel: measurements {aside}")
    if not args.quiet:
        print(f"\n{'parameter (identifiable)':36s}{'estimate':>16s}{'std':>18s}")
        for name in result.identifiable:  # chain order
            i = result.parameter_names.index(name)
            print(f"{name:36s}{_units(name, float(result.estimate[i])):>16s}"
                  f"{_units(name, float(result.std[i]), ' '):>18s}")
    print(f"{result.reason} after {result.iterations} iterations, {time.perf_counter() - t0:.2f} s")
    if args.out:
        print(f"wrote {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .. import viz

        fig = viz.plot_calibration_summary(result)
        save_figure_atomic(fig, args.plot, dpi=100)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return 0 if result.converged else 1
