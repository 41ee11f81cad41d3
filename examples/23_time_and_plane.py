"""Comparing an estimate with its reference when their clocks and rates differ, evo's way.

The reference is the optimum of KITTI 00's pose graph, stamped at 10 Hz (a ground vehicle, 3.7
km at about 8 m/s). The estimate is what a 3D odometry on another computer might give: 7 Hz, its
clock 0.08 s behind the reference's, a vertical drift of a few metres and some roll and pitch
wobble, and 5 cm of noise. Each step below undoes one of these, as ``evo_ape`` does with the
same options (the tests hold robojac's numbers to evo's own command line):

1. ``associate`` pairs the nearest poses in time, within 0.1 s (``--t_max_diff 0.1``): the
   clocks disagree by 0.08 s, 0.65 m of travel at this speed (3.7 km in 454 s).
2. ``offset=0.08`` (``--t_offset 0.08``): the estimate's clock corrected.
3. ``method="interpolation"`` (``--sync_method interpolation``): the reference resampled at the
   estimate's times instead of the nearest 10 Hz pose (up to 0.05 s away).
4. ``project_to_plane="xy"`` (``--project_to_plane xy``): the vertical drift and the roll and
   pitch taken out, the error of a ground vehicle in its plane of travel.

The same on the command line::

    robojac ape tum reference.tum estimate.tum -a --t_max_diff 0.1 --t_offset 0.08 \\
        --sync_method interpolation --project_to_plane xy

The picture: the two trajectories from above; each step's position error along the drive (an
RMS over 5 s); the RMSE of each step.

    python examples/23_time_and_plane.py --out out/time_and_plane
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402

from robojac import data  # noqa: E402
from robojac.posegraph import optimize, read_g2o  # noqa: E402
from robojac.trajectory import Trajectory, associate, ate, interpolate, write_tum  # noqa: E402

LAG = 0.08  # s: the estimate's clock behind the reference's


def simulated_estimate(reference: Trajectory, generator: torch.Generator) -> Trajectory:
    """The reference's path at 7 Hz, stamped LAG late, with a vertical drift, roll and pitch
    wobble and position noise."""
    t = torch.arange(float(reference.timestamps[0]), float(reference.timestamps[-1]), 1 / 7, dtype=torch.float64)
    truth = interpolate(reference, t).poses
    n = len(t)
    kw = dict(dtype=torch.float64, generator=generator)
    z = torch.cumsum(0.02 * torch.randn(n, **kw), 0)  # a random walk: metres of vertical drift
    wobble = torch.zeros(n, 3, dtype=torch.float64)
    wobble[:, :2] = 0.03 * torch.sin(torch.arange(n, dtype=torch.float64)[:, None] / 15 + torch.tensor([0.0, 1.0]))
    P = truth.clone()
    P[:, :3] += 0.05 * torch.randn(n, 3, **kw)
    P[:, 2] += z
    P[:, 3:] = (pp.so3(wobble).Exp() @ pp.SO3(truth[:, 3:])).tensor()
    return Trajectory(P, t - LAG)


def main(path: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    graph = read_g2o(path)
    poses = optimize(graph).poses.detach()
    reference = Trajectory(poses, torch.arange(len(poses), dtype=torch.float64) * 0.1)
    estimate = simulated_estimate(reference, torch.Generator().manual_seed(0))
    write_tum(reference, out / "reference.tum")  # for the command line above
    write_tum(estimate, out / "estimate.tum")

    steps = {
        "nearest in time": dict(max_difference=0.1),
        f"+ clock offset {LAG} s": dict(max_difference=0.1, offset=LAG),
        "+ interpolation": dict(max_difference=0.1, offset=LAG, method="interpolation"),
        "+ projected to xy": dict(max_difference=0.1, offset=LAG, method="interpolation"),
    }
    results = {}
    for k, (name, how) in enumerate(steps.items()):
        ref, est = associate(reference, estimate, **how)
        results[name] = (ref, ate(ref, est, project_to_plane="xy" if k == 3 else None))
        print(f"{name:24s} {len(ref):5d} pairs, APE RMSE {results[name][1]['rmse']:.3f} m")

    fig = plt.figure(figsize=(15, 5))
    ax = fig.add_subplot(1, 3, 1)
    ax.plot(*reference.positions[:, :2].T.numpy(), color="0.3", lw=1.5, label="reference (10 Hz)")
    ax.plot(*estimate.positions[:, :2].T.numpy(), color="tab:orange", lw=0.8, label="estimate (7 Hz)")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title("KITTI 00 from above")
    ax.legend(loc="lower right", fontsize=8)
    ax = fig.add_subplot(1, 3, 2)
    colors = ("tab:red", "tab:orange", "tab:blue", "tab:green")
    window = np.ones(35) / 35  # 5 s of the estimate's poses
    for (name, (ref, res)), color in zip(results.items(), colors):
        rms = np.sqrt(np.convolve(res.errors.numpy() ** 2, window, mode="valid"))
        ax.plot(ref.timestamps.numpy()[17:-17], rms, lw=1.0, color=color, label=name)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("position error after alignment, RMS over 5 s (m)")
    ax.set_title("each step's error along the drive")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 3, 3)
    rmse = [res["rmse"] for _, res in results.values()]
    bars = ax.bar(range(len(rmse)), rmse, color=colors)
    ax.bar_label(bars, fmt="%.2f m")
    ax.set_xticks(range(len(rmse)), ["nearest\nin time", "clock\noffset", "interpolated", "in the\nxy plane"])
    ax.set_ylabel("APE RMSE (m)")
    ax.set_title("what each option of evo_ape takes out")
    fig.tight_layout()
    fig.savefig(out / "time_and_plane.png", dpi=110)
    print(f"wrote {out / 'time_and_plane.png'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", type=pathlib.Path, default=data.path("posegraph/kitti_00.g2o"))
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/time_and_plane"))
    args = ap.parse_args()
    main(args.graph, args.out)
