"""Multiway registration: the 10 Stanford bunny scans merged into one model from their raw frames.

Each scan comes in the scanner's own frame, with no initial guess.  Every pair is registered
globally (FPFH, a batched RANSAC in torch, GICP); the pairs that overlap become a pose graph,
weighted by each alignment's information matrix; a robust optimization (DCS) places the scans,
the pairs are refined from there, and a last optimization finishes.  The answer is checked
scan by scan against Stanford's own registration (``bun.conf``), and the merged model is
written as a PLY coloured by scan.

    python examples/16_multiway_bunny.py --out out/multiway
"""

import argparse
import math
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.icp import multiway_registration, read_point_cloud, read_stanford_conf  # noqa: E402
from robojac.viz import plot_multiway  # noqa: E402

NAMES = ["bun000", "bun045", "bun090", "bun180", "bun270", "bun315", "chin", "ear_back", "top2", "top3"]


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clouds = [read_point_cloud(data.path(f"pointclouds/bunny/{n}.ply.gz")) for n in NAMES]
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    print(f"{len(clouds)} scans, {sum(len(c) for c in clouds):,} points, each in its scanner frame")
    t0 = time.perf_counter()
    result = multiway_registration(clouds)
    took = time.perf_counter() - t0
    print(f"{len(result.pairs)} pairs tried, {len(result.kept)} kept, {len(result.pruned)} pruned; "
          f"converged={result.converged} ({result.reason}), {took:.1f} s")
    print("scan        error against bun.conf (relative to bun000)")
    for k, n in enumerate(NAMES):
        truth = lie.matrix_to_se3(torch.linalg.inv(conf["bun000.ply"]) @ conf[n + ".ply"])
        d = lie.se3_compose(result.poses[k], lie.se3_inverse(truth))
        print(f"  {n:9s} {float(d[:3].norm()) * 1e3:6.3f} mm {math.degrees(float(lie.so3_log(d[3:]).norm())):7.3f} deg")
    result.write_merged(out / "bunny_merged.ply", clouds, voxel_size=0.001)
    fig = plot_multiway(clouds, result, labels=NAMES, vertical_axis="y")
    fig.savefig(out / "multiway.png", dpi=80)
    plt.close("all")
    print(f"  merged model and picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/multiway"))
    main(p.parse_args().out)
