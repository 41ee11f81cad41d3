"""The cost of gradients through solver answers: forward without grad, forward with grad (what
attaching the implicit backward adds), and the backward, medians after a warm-up.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gradients.py [--repeat 3]

Cases: pose-graph optimization of sphere2500 and of manhattan (2D) (gradients to the
measurements), IK of 10,000 Panda targets in float32 and of one target at a time (a Panda
target; a TALOS target set of four frames) (gradients to the targets) and GICP of the bunny
pair, 3 mm voxels (gradients to the source points).  The goal (#17): a backward of at most
0.5x the forward.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, table  # noqa: E402

import robojac  # noqa: E402
from robojac import data, ik  # noqa: E402
from robojac.icp import ICPConfig, align, read_point_cloud, voxel_downsample  # noqa: E402
from robojac.posegraph import PGOConfig, PoseGraph, optimize, read_g2o  # noqa: E402


def timed(run, repeat):
    run(True)  # warm-up (torch imports parts of autograd on the first double backward)
    plain = statistics.median(run(False)[0] for _ in range(repeat))
    both = [run(True) for _ in range(repeat)]
    return plain, statistics.median(b[0] for b in both), statistics.median(b[1] for b in both)


def pgo_case(repeat, name="sphere2500"):
    g = read_g2o(data.path(f"posegraph/{name}.g2o"))

    def run(grad):
        Z = g.measurements.clone().requires_grad_(grad)
        G = PoseGraph(g.poses.detach().tensor(), g.edges, Z, g.information, vertex_ids=g.vertex_ids, dim=g.dim)
        t0 = time.perf_counter()
        r = optimize(G, PGOConfig(method="gn"))
        t1 = time.perf_counter()
        if grad:
            r.poses.tensor().sum().backward()
        return t1 - t0, time.perf_counter() - t1

    return [[f"PGO {name}{' (2D)' if g.dim == 2 else ''} (d poses / d measurements)", *timed(run, repeat)]]


def pgo_2d_case(repeat):
    return pgo_case(repeat, "manhattan")


def ik_case(repeat):
    panda = robojac.Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")
    q = panda.random_configuration(10000, generator=torch.Generator().manual_seed(0))
    X = panda.forward_kinematics(q, "panda_hand").tensor().float()

    def run(grad):
        T = X.clone().requires_grad_(grad)
        t0 = time.perf_counter()
        r = ik.solve(panda, T)
        t1 = time.perf_counter()
        if grad:
            r.q.sum().backward()
        return t1 - t0, time.perf_counter() - t1

    return [["IK, 10,000 Panda targets, float32 (d q / d targets)", *timed(run, repeat)]]


def lone_cases(repeat):
    """One target at a time (a latency): a Panda target, and a TALOS target set of four frames
    (its grippers and soles, as ``benchmarks/ik_frames.py``), each the median over 30 targets
    (``repeat`` does not apply) after a warm-up of 5."""
    panda = robojac.Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")
    talos = robojac.Chain.from_urdf(data.path("robots/talos_reduced.urdf"))
    frames = ["gripper_left_base_link", "gripper_right_base_link", "left_sole_link", "right_sole_link"]
    config = ik.IKConfig(position_tolerance=1e-3, orientation_tolerance=1e-2)
    gen = torch.Generator().manual_seed(1)
    rows = []
    for name, chain, pose in (
            ("IK, one Panda target, float64 (d q / d target)", panda, lambda X: X[0]),
            ("IK, one TALOS target set (4 frames), float64 (d q / d targets)", talos,
             lambda X: {f: X[k] for k, f in enumerate(frames)})):
        q = chain.random_configuration(35, generator=gen)
        X = chain.forward_kinematics_tensor(q, frames if chain is talos else ["panda_hand"])
        times = {False: [], True: []}
        for i in range(len(q)):
            for grad in (False, True):
                T = pose(X[i])
                T = {f: t.clone().requires_grad_(grad) for f, t in T.items()} if isinstance(T, dict) \
                    else T.clone().requires_grad_(grad)
                t0 = time.perf_counter()
                r = ik.solve(chain, T, config=config if chain is talos else None)
                t1 = time.perf_counter()
                if grad:
                    r.q.sum().backward()
                times[grad].append((t1 - t0, time.perf_counter() - t1))
        med = [statistics.median(t[j] for t in times[grad][5:]) for grad, j in ((False, 0), (True, 0), (True, 1))]
        rows.append([name, *med])
    return rows


def icp_case(repeat):
    folder = data.path("pointclouds/bunny")
    src = voxel_downsample(read_point_cloud(folder / "bun045.ply.gz"), 0.003)
    tgt = voxel_downsample(read_point_cloud(folder / "bun000.ply.gz"), 0.003)
    config = ICPConfig(method="gicp", max_correspondence_distance=0.05)

    def run(grad):
        S = src.clone().requires_grad_(grad)
        t0 = time.perf_counter()
        r = align(S, tgt, config=config)  # from the identity, as benchmarks/icp.py runs it
        t1 = time.perf_counter()
        if grad:
            r.T_target_source.tensor().sum().backward()
        return t1 - t0, time.perf_counter() - t1

    return [[f"GICP bunny 045->000, {len(src)}/{len(tgt)} points (d T / d source)", *timed(run, repeat)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# Gradients through answers; {describe_machine()}", flush=True)
    rows = []
    for case in (pgo_case, pgo_2d_case, ik_case, lone_cases, icp_case):
        for name, plain, fwd, bwd in case(args.repeat):  # each case: its rows
            unit, scale = ("ms", 1e3) if plain < 0.01 else ("s", 1.0)
            rows.append([name, *(f"{scale * t:.{1 if unit == 'ms' else 3}f} {unit}" for t in (plain, fwd, bwd)),
                         f"{bwd / plain:.2f}x"])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["case", "forward (no grad)", "forward (grad)", "backward", "backward / forward"], rows))


if __name__ == "__main__":
    main()
