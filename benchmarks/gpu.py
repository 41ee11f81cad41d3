"""robojac's GPU modes, timed on the GPU against the same calls on this machine's CPU.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gpu.py [--device cuda] [--quick]

Twelve cases, each checked against the CPU's answer (a GPU figure for a wrong answer means nothing):
forward kinematics of the Panda at batch 1,000,000; TALOS' centre of mass and its Jacobian at
batch 100,000; the Panda's skeleton capsules' signed distances to each other and to a ball, a
box and the floor at batch 100,000; 256 Panda trajectories over a wall (``motion.trajopt``, one
batch); 128 TALOS reaches balanced over its soles (``ik.solve_balanced``, one batch); IK of
10,000 Panda targets (the torch engine);
IK of 1,000 sets of TALOS's hands and feet (several frames at once);
100 ICP pairs of 800 points in one batched call (the padded brute-force search); pose graphs with
the batched multifrontal Cholesky; example 27's Sim3 graph (KITTI 00 seen by a monocular
odometry) the same way; every pose's covariance of sphere2500 (the selected inverse of that
factor).  Needs no peer and no Open3D (the CPU references use the same
brute-force paths).  Prints one table; ``scripts/gpu_check.sh`` runs it after the CUDA suite.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from _util import describe_machine, table  # noqa: E402
from helpers import TALOS_FEET, TALOS_HANDS, talos_standing  # noqa: E402  (the balance tests' scene)

import robojac  # noqa: E402
from robojac import collision, data, ik, motion  # noqa: E402
from robojac.icp import ICPConfig, align, read_point_cloud, read_stanford_conf, voxel_downsample  # noqa: E402
from robojac.posegraph import PGOConfig, PoseGraph, covariances, optimize, read_g2o  # noqa: E402


def timed(fn, device, repeat=5):
    """Median wall time of ``fn()`` (synchronized on a GPU) after one warm-up; returns (seconds, last result)."""
    out = fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def fk(device, n):
    panda = robojac.Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")
    q = panda.random_configuration(n, generator=torch.Generator().manual_seed(0)).float()
    gpu_chain, q_gpu = panda.to(device), q.to(device)
    t_gpu, X = timed(lambda: gpu_chain.forward_kinematics(q_gpu, frame="panda_hand"), device)
    t_cpu, X_cpu = timed(lambda: panda.cpu().forward_kinematics(q, frame="panda_hand"), torch.device("cpu"), repeat=3)
    err = float((X.tensor().cpu() - X_cpu.tensor())[:, :3].abs().max())
    return [f"FK, Panda hand, batch {n:,} (float32)", f"{t_cpu * 1e3:.1f} ms", f"{t_gpu * 1e3:.2f} ms",
            f"{t_cpu / t_gpu:.1f}x",
            f"{n / t_gpu / 1e6:.1f} M configs/s on the GPU; max position difference from the CPU {err:.1e} m"]


def center_of_mass(device, n):
    talos = robojac.Chain.from_urdf(data.path("robots/talos_reduced.urdf"))
    q = talos.random_configuration(n, generator=torch.Generator().manual_seed(0)).float()
    gpu_chain, q_gpu = talos.to(device), q.to(device)
    t_gpu, (c, J) = timed(lambda: gpu_chain.center_of_mass_and_jacobian(q_gpu), device)
    t_cpu, (c_cpu, J_cpu) = timed(lambda: talos.cpu().center_of_mass_and_jacobian(q), torch.device("cpu"), repeat=3)
    err = max(float((c.cpu() - c_cpu).abs().max()), float((J.cpu() - J_cpu).abs().max()))
    return [f"centre of mass and its Jacobian, TALOS, batch {n:,} (float32)", f"{t_cpu * 1e3:.1f} ms",
            f"{t_gpu * 1e3:.2f} ms", f"{t_cpu / t_gpu:.1f}x",
            f"{n / t_gpu / 1e6:.2f} M configs/s on the GPU; max difference from the CPU {err:.1e}"]


def collision_distances(device, n):
    panda = robojac.Chain.from_urdf(data.path("robots/panda.urdf"))
    model = collision.RobotCollision.from_skeleton(panda, 0.05)
    world = collision.Obstacles([collision.Sphere(0.12, (0.45, 0.0, 0.50)),
                                 collision.Box((0.20, 0.40, 0.10), (0.65, 0.0, 0.10, 0.0, 0.0, 0.0, 1.0)),
                                 collision.HalfSpace((0.0, 0.0, 1.0), 0.0)])
    q = panda.random_configuration(n, generator=torch.Generator().manual_seed(0)).float()

    def run(m, w, x):
        return torch.cat((m.self_distances(x), m.distances(x, w).flatten(-2)), -1)

    t_cpu, d_cpu = timed(lambda: run(model, world, q), torch.device("cpu"), repeat=3)
    gpu_model, gpu_world, q_gpu = model.to(device), world.to(device), q.to(device)
    t_gpu, d = timed(lambda: run(gpu_model, gpu_world, q_gpu), device)
    err = float((d.cpu() - d_cpu).abs().max())
    return [f"collision distances, Panda capsules, batch {n:,} (float32, {d.shape[-1]} each)", f"{t_cpu * 1e3:.1f} ms",
            f"{t_gpu * 1e3:.2f} ms", f"{t_cpu / t_gpu:.1f}x",
            f"{n / t_gpu / 1e6:.2f} M configs/s on the GPU; max difference from the CPU {err:.1e} m"]


def trajectories(device, n):
    """``motion.trajopt`` of ``n`` trajectories at once (float32, 16 waypoints, the wall of
    example 32, one start each) from configurations on one side to the other."""
    panda = robojac.Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand_tcp")
    model = collision.RobotCollision.from_skeleton(panda, 0.05)
    world = collision.Obstacles([collision.Box((0.2, 0.05, 0.25), (0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 1.0)),
                                 collision.HalfSpace((0.0, 0.0, 1.0), 0.0)])
    task = ik.CollisionTask(model, world, margin=0.02)
    ready = torch.tensor([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4], dtype=torch.float64)
    X = panda.forward_kinematics_tensor(ready, ["panda_hand_tcp"])[0].expand(2, n, 7).clone()
    X[0, :, :3] = torch.tensor([0.5, -0.3, 0.25], dtype=torch.float64)
    X[1, :, :3] = torch.tensor([0.5, 0.3, 0.25], dtype=torch.float64)
    X[:, :, 0] += torch.linspace(-0.1, 0.1, n, dtype=torch.float64)
    cfg = ik.IKConfig(frame="panda_hand_tcp")
    ends = ik.solve(panda, X, q0=ready, avoid=task, config=cfg).q.float()  # (2, n, 7)
    conf = motion.TrajOptConfig(steps=16, starts=1)

    def run(chain, t, a, b):
        return motion.trajopt(chain, a, end=b, avoid=t, config=conf)

    t_cpu, r_cpu = timed(lambda: run(panda, task, ends[0], ends[1]), torch.device("cpu"), repeat=1)
    gpu_chain = panda.to(device)
    gpu_task = ik.CollisionTask(model.to(device), world.to(device), margin=0.02)
    a, b = ends[0].to(device), ends[1].to(device)
    t_gpu, r = timed(lambda: run(gpu_chain, gpu_task, a, b), device, repeat=3)
    panda.cpu()
    model.cpu()
    world.cpu()
    return [f"trajopt, {n} Panda trajectories over a wall (float32, 16 waypoints, 1 start)", f"{t_cpu:.2f} s",
            f"{t_gpu:.2f} s", f"{t_cpu / t_gpu:.1f}x",
            f"{int(r.converged.sum())}/{n} feasible on the GPU ({int(r_cpu.converged.sum())} on the CPU); closest "
            f"{float(r.clearance.min()) * 100:+.2f} cm; waypoints within {float((r.q.cpu() - r_cpu.q).abs().max()):.0e} "
            "rad of the CPU's"]


def balanced(device, n):
    """``ik.solve_balanced`` of ``n`` TALOS reaches at once (float64): soles and hands at their
    targets, the centre of mass 3 cm inside the soles' polygon, nearest standing (example 30)."""
    talos = robojac.Chain.from_urdf(data.path("robots/talos_reduced.urdf")).with_floating_base()
    feet, hands = TALOS_FEET, TALOS_HANDS
    stand, X, polygon = talos_standing(talos)  # the tests' scene: soles on the ground, their polygon
    T = X.expand(n, 4, 7).clone()
    T[:, 2:, 0] += torch.linspace(0.1, 0.6, n, dtype=torch.float64)[:, None]
    goals = {f: T[:, k] if k < 2 else T[:, k, :3] for k, f in enumerate(feet + hands)}

    def run(chain, g, p, s):
        return ik.solve_balanced(chain, g, p, posture=s)

    t_cpu, r_cpu = timed(lambda: run(talos, goals, polygon, stand), torch.device("cpu"), repeat=1)
    gpu_chain = talos.to(device)
    on = ({f: t.to(device) for f, t in goals.items()}, polygon.to(device), stand.to(device))
    t_gpu, r = timed(lambda: run(gpu_chain, *on), device, repeat=1)
    talos.cpu()
    return [f"solve_balanced, {n} TALOS reaches (float64; frames, support polygon, posture)", f"{t_cpu:.2f} s",
            f"{t_gpu:.2f} s", f"{t_cpu / t_gpu:.1f}x",
            f"{int(r.converged.sum())}/{n} converged on the GPU ({int(r_cpu.converged.sum())} on the CPU); answers "
            f"within {float((r.q.cpu() - r_cpu.q).abs().max()):.0e} rad of the CPU's"]


def ik_batch(device, n):
    panda = robojac.Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")
    q = panda.random_configuration(n, generator=torch.Generator().manual_seed(2026))
    targets = panda.forward_kinematics(q, frame="panda_hand").float()
    cfg = ik.IKConfig(engine="torch")
    gpu_chain, t_gpu_targets = panda.to(device), targets.to(device)
    t_gpu, res = timed(lambda: ik.solve(gpu_chain, t_gpu_targets, config=cfg), device, repeat=3)
    t_cpu, res_cpu = timed(lambda: ik.solve(panda.cpu(), targets, config=cfg), torch.device("cpu"), repeat=1)
    # independent re-check in float64 on the CPU: FK of the returned q against the target
    X = panda.cpu().forward_kinematics(res.q.cpu().double(), frame="panda_hand")
    pos = (X.translation() - targets.double().translation()).norm(dim=-1)
    ok = int(((pos < cfg.position_tolerance * 1.001) & res.converged.cpu()).sum())
    return [f"IK, {n:,} Panda targets (float32, torch engine)", f"{t_cpu * 1e3:.0f} ms ({n / t_cpu:,.0f}/s)",
            f"{t_gpu * 1e3:.0f} ms ({n / t_gpu:,.0f}/s)", f"{t_cpu / t_gpu:.1f}x",
            f"{int(res.converged.sum())}/{n} solved on the GPU ({int(res_cpu.converged.sum())} on the CPU); "
            f"{ok} re-checked in float64"]


def ik_frames(device, n):
    talos = robojac.Chain.from_urdf(data.path("robots/talos_reduced.urdf"))
    frames = ["gripper_left_base_link", "gripper_right_base_link", "left_sole_link", "right_sole_link"]
    X = talos.forward_kinematics_tensor(talos.random_configuration(n, generator=torch.Generator().manual_seed(2026)),
                                        frames).float()
    targets = {f: X[:, k] for k, f in enumerate(frames)}
    cfg = ik.IKConfig(position_tolerance=1e-3, orientation_tolerance=1e-2)
    gpu_chain, on_gpu = talos.to(device), {f: t.to(device) for f, t in targets.items()}
    t_gpu, res = timed(lambda: ik.solve(gpu_chain, on_gpu, config=cfg), device, repeat=1)
    t_cpu, res_cpu = timed(lambda: ik.solve(talos.cpu(), targets, config=cfg), torch.device("cpu"), repeat=1)
    # independent re-check in float64 on the CPU: each frame's FK of the returned q against its target
    Y = talos.cpu().forward_kinematics_tensor(res.q.cpu().double(), frames)
    pos = (Y[..., :3] - X.double()[..., :3]).norm(dim=-1).amax(-1)
    ok = int(((pos < cfg.position_tolerance * 1.001) & res.converged.cpu()).sum())
    return [f"IK, {n:,} TALOS target sets (both hands and feet, float32)", f"{t_cpu * 1e3:.0f} ms ({n / t_cpu:,.0f}/s)",
            f"{t_gpu * 1e3:.0f} ms ({n / t_gpu:,.0f}/s)", f"{t_cpu / t_gpu:.1f}x",
            f"{int(res.converged.sum())}/{n} solved on the GPU ({int(res_cpu.converged.sum())} on the CPU); "
            f"{ok} re-checked in float64"]


def icp_batch(device, pairs):
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    T_gt = torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"]
    src = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun045.ply")), 0.003)
    tgt = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun000.ply")), 0.003)
    g = torch.Generator().manual_seed(1)
    S = [src[torch.randperm(len(src), generator=g)[:800]] for _ in range(pairs)]
    T = [tgt[torch.randperm(len(tgt), generator=g)[:800]] for _ in range(pairs)]
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.02, rotation_tolerance=math.radians(0.1),
                    translation_tolerance=1e-3, neighbors_backend="brute")
    S_gpu, T_gpu = [s.to(device) for s in S], [t.to(device) for t in T]
    t_gpu, res = timed(lambda: align(S_gpu, T_gpu, init=T_gt.to(device), config=cfg), device)
    t_cpu, ref = timed(lambda: align(S, T, init=T_gt, config=cfg), torch.device("cpu"), repeat=1)
    E = torch.linalg.inv(ref.matrix()) @ res.matrix().cpu()
    angle = torch.acos(((E[:, 0, 0] + E[:, 1, 1] + E[:, 2, 2] - 1) / 2).clamp(-1, 1)).max()
    return [f"ICP, {pairs} GICP pairs of 800 points, one call", f"{t_cpu * 1e3:.0f} ms", f"{t_gpu * 1e3:.0f} ms",
            f"{t_cpu / t_gpu:.1f}x", f"{int(res.converged.sum())}/{pairs} converged; "
            f"{math.degrees(float(angle)):.1e} deg from the CPU's answers (brute force on both)"]


def pgo(device, name):
    optimum = json.loads(data.path("posegraph/gtsam_optima.json").read_text())[name]["gtsam_optimum_cost"]
    graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
    cfg = PGOConfig(method="gn", linear_solver="multifrontal")
    on_gpu = read_g2o(data.path(f"posegraph/{name}.g2o")).to(device)
    t_gpu, res = timed(lambda: optimize(on_gpu, cfg), device, repeat=3)
    t_cpu, res_cpu = timed(lambda: optimize(graph, PGOConfig(method="gn")), torch.device("cpu"), repeat=3)
    return [f"PGO {name}, GN, multifrontal", f"{t_cpu:.3f} s (LDL^T)", f"{t_gpu:.3f} s", f"{t_cpu / t_gpu:.2f}x",
            f"cost {res.cost:.8g} (GTSAM {optimum:.8g}, rel. {abs(res.cost - optimum) / optimum:.0e}); "
            f"converged={res.converged}"]


def pgo_sim3(device):
    from posegraph_sim3 import load_scenario

    s = load_scenario(0)
    graph = PoseGraph(s["odometry"], s["edges"], s["measurements"], s["information"], similarity=True)
    on_gpu = PoseGraph(s["odometry"], s["edges"], s["measurements"], s["information"], similarity=True).to(device)
    t_gpu, res = timed(lambda: optimize(on_gpu, PGOConfig(linear_solver="multifrontal")), device, repeat=3)
    t_cpu, ref = timed(lambda: optimize(graph), torch.device("cpu"), repeat=3)
    gap = float((res.poses.tensor().cpu()[:, :3] - ref.poses.tensor()[:, :3]).norm(dim=-1).max())
    return [f"PGO Sim3, example 27 ({graph.num_poses} keyframes), LM, multifrontal", f"{t_cpu:.3f} s (LDL^T)",
            f"{t_gpu:.3f} s", f"{t_cpu / t_gpu:.2f}x", f"cost {res.cost:.9g} (CPU {ref.cost:.9g}), positions within "
            f"{gap:.0e} m; converged={res.converged}"]


def pgo_covariances(device, name):
    graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
    poses = optimize(graph).poses
    on_gpu = read_g2o(data.path(f"posegraph/{name}.g2o")).to(device)
    t_gpu, C_gpu = timed(lambda: covariances(on_gpu, poses.to(device)), device, repeat=3)
    t_cpu, C_cpu = timed(lambda: covariances(graph, poses), torch.device("cpu"), repeat=3)
    scale = C_cpu.flatten(1).abs().amax(1)[1:]
    diff = float(((C_gpu.cpu() - C_cpu).flatten(1).abs().amax(1)[1:] / scale).max())
    return [f"PGO covariances {name}, every pose", f"{t_cpu:.3f} s", f"{t_gpu:.3f} s", f"{t_cpu / t_gpu:.2f}x",
            f"largest difference from the CPU's {diff:.0e} of a block"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: CUDA is not available on this machine")
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (as the device)"
    print(f"# robojac GPU modes on {gpu_name}; {describe_machine()}", flush=True)
    cases = [
        lambda: fk(device, 10_000 if args.quick else 1_000_000),
        lambda: center_of_mass(device, 10_000 if args.quick else 100_000),
        lambda: collision_distances(device, 10_000 if args.quick else 100_000),
        lambda: trajectories(device, 8 if args.quick else 256),
        lambda: balanced(device, 4 if args.quick else 128),
        lambda: ik_batch(device, 500 if args.quick else 10_000),
        lambda: ik_frames(device, 50 if args.quick else 1_000),
        lambda: icp_batch(device, 10 if args.quick else 100),
        lambda: pgo(device, "intel" if args.quick else "sphere2500"),
        lambda: pgo(device, "manhattan" if args.quick else "parking-garage"),
        lambda: pgo_sim3(device),
        lambda: pgo_covariances(device, "intel" if args.quick else "sphere2500"),
    ]
    rows = []
    for case in cases:
        try:
            rows.append(case())
        except Exception as exc:  # noqa: BLE001 -- one failing case must not hide the others' figures
            failure = f"FAILED: {type(exc).__name__}: {exc}"[:200]
            rows.append([getattr(case, "__name__", "case"), "-", "-", "-", failure])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["case", "CPU (this machine)", f"{device.type}", "speed-up", "check"], rows))


if __name__ == "__main__":
    main()
