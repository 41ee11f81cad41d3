"""A/B: this working tree against an earlier revision, in alternating processes.

"Nothing gets slower" is checked this way: the revision is checked out into a temporary git
worktree, and each round runs the case once with it and once with this tree, in alternating
order, each in a fresh process (the same cache, load and thread settings for both), then the
medians over the rounds are compared.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ab.py --against HEAD~1 --case posegraph [--rounds 3]

Cases: ``posegraph`` (``posegraph.optimize``, GN and LM from the chordal start, on the
repository's graphs: time, iterations, cost, reason), ``ik`` (10,000 Panda targets in
float32, and a lone target's latency) and ``calibration`` (the Panda's kinematic calibration
from 60 poses or positions, and a refined hand-eye calibration), ``odometry`` (the 10 KITTI
scans: time per scan, ATE), ``icp`` (GICP on the bunny and LiDAR pairs of
``benchmarks/icp.py``, from the identity: time, iterations, answer) and ``jacobian``
(automatic Jacobians: ``batch_jacobian(strategy="forward-stacked")`` of ``lie.se3_log``,
``se3_exp``, ``se3_act`` and ``quat_mul`` at 8 poses, and the 10 small SE(3) problems of
``benchmarks/side_by_side_theseus.py`` solved by the engine), ``covariances`` (every pose's
marginal covariance at the optimum, on the graphs of ``benchmarks/covariances.py``),
``kinematics`` (the Panda's forward kinematics and Jacobian at 1, 1,000 and 100,000
configurations, float32 and float64, as ``benchmarks/kinematics.py``), ``trajectory`` (KITTI
00's odometry chain against its optimum, as ``benchmarks/trajectory_errors.py`` and
``benchmarks/kitti_metric.py``: the aligned APE, RPE over 1 frame and over 100 m for all
pairs, and the KITTI odometry error) and ``multifrontal`` (``posegraph`` by Gauss-Newton with
``linear_solver="multifrontal"``, the sparse factor a GPU solve uses, on the CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
GRAPHS = ["parking-garage", "sphere2500", "intel", "manhattan", "kitti_00", "MIT", "smallGrid3D", "ais2klinik"]


def _timed(run, calls: int) -> tuple[float, object]:
    """``(median seconds, last result)`` of ``calls`` calls of ``run()`` after one warm-up call."""
    r = run()
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = run()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), r


def case_posegraph(calls: int, *, linear_solver: str = "auto", methods=("gn", "lm")) -> dict:
    from robojac import data
    from robojac.posegraph import PGOConfig, optimize, read_g2o

    out = {}
    for name in GRAPHS:
        g = read_g2o(data.path(f"posegraph/{name}.g2o.gz"))
        for method in methods:
            cfg = PGOConfig(method=method, linear_solver=linear_solver)
            t, r = _timed(lambda: optimize(g, cfg), calls)
            out[f"{name} {method}"] = [t, f"{r.iterations} it, {r.cost:.10g}, {r.reason}"]
    return out


def case_multifrontal(calls: int) -> dict:
    """Gauss-Newton on the multifrontal factor, the sparse solver off the CPU, here on the CPU."""
    return case_posegraph(calls, linear_solver="multifrontal", methods=("gn",))


def case_ik(calls: int) -> dict:
    import torch

    from robojac import Chain, data, ik

    panda = Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")
    X = panda.forward_kinematics(panda.random_configuration(10000, generator=torch.Generator().manual_seed(0)),
                                 "panda_hand")
    for k in range(3):
        ik.solve(panda, X[k])
    ts = []
    for k in range(400):
        t0 = time.perf_counter()
        ik.solve(panda, X[k])
        ts.append(time.perf_counter() - t0)
    out = {"lone target": [statistics.median(ts), ""]}
    Xf = X.float()
    t, r = _timed(lambda: ik.solve(panda, Xf), calls)
    out["10,000 targets, float32"] = [t, f"success {float(r.converged.float().mean()):.4f}"]
    return out


def case_calibration(calls: int) -> dict:
    import torch

    from robojac import Chain, data, lie
    from robojac.calibration import calibrate_kinematics, hand_eye, perturbed_chain, simulate_poses

    c = Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")
    g = torch.Generator().manual_seed(10)
    truth = perturbed_chain(c, generator=g)
    q = c.random_configuration(60, generator=g)
    poses = simulate_poses(truth, q, generator=g)
    X, Z = lie.se3_exp(0.3 * torch.randn(2, 6, generator=g, dtype=torch.float64))
    Tg = lie.se3_exp(0.5 * torch.randn(30, 6, generator=g, dtype=torch.float64))
    Tc = lie.se3_compose(lie.se3_inverse(lie.se3_compose(Tg, X.expand(30, 7))), Z.expand(30, 7))
    out = {}
    for name, run in (("Panda, 60 poses", lambda: calibrate_kinematics(c, q, poses)),
                      ("Panda, 60 positions", lambda: calibrate_kinematics(c, q, poses[:, :3])),
                      ("hand-eye, refined", lambda: hand_eye(Tg, Tc, method="refined"))):
        t, r = _timed(run, calls)
        out[name] = [t, f"converged {bool(r.converged)}"]
    return out


def case_odometry(calls: int) -> dict:
    import numpy as np
    import torch

    from robojac import data
    from robojac.icp import lidar_odometry, read_scans
    from robojac.trajectory import Trajectory, ate, read_kitti

    folder = data.path("pointclouds/kitti00")
    scans, _ = read_scans(folder)
    times = torch.tensor(np.loadtxt(folder / "times.txt"), dtype=torch.float64)
    ref = Trajectory(read_kitti(folder / "semantickitti_poses_first10.txt",
                                calibration=folder / "Tr_velo_to_cam0.txt").poses, times)
    lidar_odometry(scans, timestamps=times)
    seconds = []
    for _ in range(calls):  # every scan after the first, of every run
        r = lidar_odometry(scans, timestamps=times)
        seconds += r.seconds[1:].tolist()
    return {"KITTI 00, per scan": [statistics.median(seconds), f"ATE {ate(ref, r.trajectory).stats['rmse'] * 100:.2f} cm"]}


def case_icp(calls: int) -> dict:
    import numpy as np

    from robojac import data
    from robojac.icp import ICPConfig, align, read_point_cloud, voxel_downsample

    folder = data.path("pointclouds")
    pairs = {"bunny 045->000 (3 mm)": ("bunny/bun045.ply.gz", "bunny/bun000.ply.gz", 0.003, 0.05),
             "LiDAR pair (0.25 m)": ("lidar_small_gicp/source.ply.gz", "lidar_small_gicp/target.ply.gz", 0.25, 1.0)}
    out = {}
    for name, (a, b, voxel, dist) in pairs.items():
        src = voxel_downsample(read_point_cloud(folder / a), voxel)
        tgt = voxel_downsample(read_point_cloud(folder / b), voxel)
        cfg = ICPConfig(method="gicp", max_correspondence_distance=dist, num_neighbors=10,
                        rotation_tolerance=math.radians(0.1), translation_tolerance=1e-3)  # as benchmarks/icp.py
        t, r = _timed(lambda: align(src, tgt, config=cfg), calls)
        T = r.T_target_source.tensor()
        out[name] = [t, f"{int(r.iterations)} it, t = {np.round(T[:3].numpy(), 5).tolist()}"]
    return out


def case_covariances(calls: int) -> dict:
    from robojac import data
    from robojac.posegraph import covariances, optimize, read_g2o

    out = {}
    for name in ("intel", "MIT", "manhattan", "smallGrid3D", "parking-garage", "sphere2500"):  # benchmarks/covariances.py's
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        poses = optimize(graph).poses
        t, C = _timed(lambda: covariances(graph, poses), calls)
        out[name] = [t, f"trace sum {float(C.diagonal(dim1=-2, dim2=-1).sum()):.9g}"]
    return out


def case_jacobian(calls: int) -> dict:
    import torch

    from robojac import lie, optim
    from robojac.jacobian import batch_jacobian

    g = torch.Generator().manual_seed(0)
    X = lie.se3_exp(0.5 * torch.randn(8, 6, generator=g, dtype=torch.float64))
    xi, p = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    T = lie.se3_exp(0.3 * torch.randn(10, 6, generator=g, dtype=torch.float64))  # side_by_side_theseus.small_case's
    P = torch.randn(10, 10, 3, generator=g, dtype=torch.float64)
    Q = lie.se3_act(T[:, None], P) + 0.01 * torch.randn(10, 10, 3, generator=g, dtype=torch.float64)

    def small():
        V = optim.Variable("SE3", lie.se3_exp(torch.zeros(10, 1, 6, dtype=torch.float64)), name="T_q_p")
        f = optim.Factor(lambda X, p, q: (lie.se3_act(X[:, :, None, :], p) - q).flatten(2), [V],
                         data=(P[:, None], Q[:, None]))
        term = optim.TerminationConfig(relative_tolerance=1e-8, max_iterations=20)
        return optim.solve([V], [f], optim.SolverConfig(optim.TrustRegionConfig(method="gn"), term))

    cases = {"stacked Jacobian of se3_log, 8 poses": lambda: batch_jacobian(lie.se3_log, X, strategy="forward-stacked"),
             "stacked Jacobian of se3_exp, 8 tangents": lambda: batch_jacobian(lie.se3_exp, xi,
                                                                               strategy="forward-stacked"),
             "stacked Jacobian of se3_act, 8 poses": lambda: batch_jacobian(lie.se3_act, X, strategy="forward-stacked",
                                                                            args=(p,)),
             "stacked Jacobian of quat_mul, 8 pairs": lambda: batch_jacobian(
                 lambda a, b: lie.quat_mul(a[..., 3:], b[..., 3:]), X, strategy="forward-stacked", args=(X.flip(0),)),
             "10 small SE(3) problems, solve": small}
    out = {}
    for name, run in cases.items():
        t, r = _timed(run, calls)
        answer = (f"norm {float(r.norm()):.9g}" if isinstance(r, torch.Tensor)
                  else f"{int(r.iterations.sum())} it, cost {float(r.cost.sum()):.9g}")
        out[name] = [t, answer]
    return out


def case_kinematics(calls: int) -> dict:
    import torch

    from robojac import Chain, data

    panda = Chain.from_urdf(data.path("robots/panda.urdf"), tip="panda_hand")  # benchmarks/kinematics.py's
    out = {}
    for dtype in (torch.float32, torch.float64):
        for B in (1, 1000, 100000):
            q = panda.random_configuration(B, generator=torch.Generator().manual_seed(0)).to(dtype)
            for what, run in (("FK", lambda: panda.forward_kinematics(q)), ("Jacobian", lambda: panda.jacobian(q))):
                t, r = _timed(run, calls * (1 if B == 100000 else 20))
                answer = r if isinstance(r, torch.Tensor) else r["panda_hand"].tensor()
                norm = float(answer.double().norm())
                out[f"{what}, {B:,} configurations, {str(dtype)[6:]}"] = [t, f"norm {norm:.7g}"]
    return out


def case_center_of_mass(calls: int) -> dict:
    import torch

    from robojac import Chain, data

    out = {}
    for robot in ("talos_reduced", "panda"):  # benchmarks/center_of_mass.py's
        chain = Chain.from_urdf(data.path(f"robots/{robot}.urdf"))
        for dtype in (torch.float32, torch.float64):
            for B in (1000, 100000):
                q = chain.random_configuration(B, generator=torch.Generator().manual_seed(0)).to(dtype)
                t, (c, J) = _timed(lambda: chain.center_of_mass_and_jacobian(q), calls * (1 if B == 100000 else 10))
                out[f"{robot}, {B:,} configurations, {str(dtype)[6:]}"] = [
                    t, f"norms {float(c.double().norm()):.7g} {float(J.double().norm()):.7g}"]
    return out


def case_trajectory(calls: int) -> dict:
    from robojac import data
    from robojac.posegraph import initialize, optimize, read_g2o
    from robojac.trajectory import Trajectory, ate, kitti_error, rpe

    graph = read_g2o(data.path("posegraph/kitti_00.g2o"))
    reference = Trajectory(optimize(graph).poses.tensor().detach())
    estimate = Trajectory(graph.poses_from_state(initialize(graph, "odometry")).tensor().detach())
    runs = {"APE, aligned": lambda: ate(reference, estimate, align=True)["rmse"],
            "RPE, 1 frame": lambda: rpe(reference, estimate)["rmse"],
            "RPE, 100 m, all pairs": lambda: rpe(reference, estimate, delta=100, delta_unit="meters",
                                                 all_pairs=True)["rmse"],
            "KITTI error": lambda: kitti_error(reference, estimate).translation_percent}
    out = {}
    for name, run in runs.items():
        t, r = _timed(run, calls * 20)
        out[name] = [t, f"{float(r):.10g}"]
    return out


CASES = {"posegraph": case_posegraph, "ik": case_ik, "calibration": case_calibration, "odometry": case_odometry,
         "icp": case_icp, "jacobian": case_jacobian, "covariances": case_covariances, "kinematics": case_kinematics,
         "trajectory": case_trajectory, "multifrontal": case_multifrontal, "center_of_mass": case_center_of_mass}


def run_in(tree: pathlib.Path, case: str, calls: int) -> dict:
    """The case in a fresh process importing robojac from ``tree``."""
    code = (f"import sys, json; sys.path.insert(0, {str(tree)!r}); sys.path.insert(1, {str(ROOT / 'benchmarks')!r}); "
            f"import ab; print(json.dumps(ab.CASES[{case!r}]({calls})))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _util import describe_machine, fmt_time, table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="the earlier revision (a commit, tag or HEAD~N)")
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=5, help="calls per process, after a warm-up")
    args = ap.parse_args()
    print(describe_machine(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base), args.against],
                       check=True, capture_output=True)
        try:
            runs = {"before": [], "after": []}
            for k in range(args.rounds):  # the order alternates (ABBA...): neither side always runs second
                order = (("before", base), ("after", ROOT)) if k % 2 == 0 else (("after", ROOT), ("before", base))
                for side, tree in order:
                    runs[side].append(run_in(tree, args.case, args.calls))
                print(f"round {k + 1}/{args.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    rows = []
    for key in runs["after"][0]:
        b = statistics.median(r[key][0] for r in runs["before"])
        a = statistics.median(r[key][0] for r in runs["after"])
        # each round's own ratio: their spread is the noise the median ratio sits in (the same
        # code against itself, --against HEAD, gave medians of 1.02-1.50x over the pose graphs one noisy hour)
        each = sorted(ra[key][0] / rb[key][0] for rb, ra in zip(runs["before"], runs["after"]))
        rows.append([key, fmt_time(b), runs["before"][0][key][1], fmt_time(a), runs["after"][0][key][1], f"{a / b:.2f}x",
                     f"{each[0]:.2f}-{each[-1]:.2f}x"])
    print()
    print(table(["case", f"before ({args.against})", "answer before", "after (this tree)", "answer after",
                 "after / before", "rounds' ratios"], rows))


if __name__ == "__main__":
    main()
