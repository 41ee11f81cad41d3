"""``robojac ik``: joint values placing a robot's frame at target poses or positions."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from .._files import atomic_path, save_figure_atomic
from ._bar import load_chain, progress, robot_arguments
from ._numbers import integer, real


def add_parser(sub) -> None:
    p = sub.add_parser("ik", help="inverse kinematics of a URDF or MJCF robot for one target or a file of targets",
                       description="Solve inverse kinematics: prints (or writes) joint values placing --tip at each "
                                   "target, with its position and rotation errors.")
    robot_arguments(p, "frame to place (e.g. panda_hand); with --target or --targets",
                    "base frame the targets are in (default: the description's root)", tip_required=False)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--target", type=float, nargs="+", metavar="V", help="x y z [qx qy qz qw]")
    g.add_argument("--targets", type=pathlib.Path, help="text file, one target per line: x y z [qx qy qz qw]")
    g.add_argument("--frame-target", nargs="+", action="append", metavar="V",
                   help="FRAME x y z [qx qy qz qw]: several frames placed at once (a humanoid's hands and feet); "
                        "repeat the option, once per frame; no --tip")
    p.add_argument("--frame-weight", nargs=2, action="append", metavar=("FRAME", "W"),
                   help="with --frame-target: that frame's weight (default 1), where not every frame can be reached")
    p.add_argument("--q0", type=float, nargs="+", help="initial joint values (first attempt)")
    p.add_argument("--position-tolerance", type=real(positive=True), default=1e-4, help="metres (default 1e-4)")
    p.add_argument("--orientation-tolerance", type=real(positive=True), default=1e-3, help="radians (default 1e-3)")
    p.add_argument("--chunk", type=integer(minimum=1), default=4096,
                   help="targets solved per batch (progress is per batch)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="for large target files")
    p.add_argument("--out", type=pathlib.Path, help="write joint values here: one line per target, then "
                                                    "converged, pos_err, rot_err")
    p.add_argument("--plot", type=pathlib.Path, help="draw the arm at the solution (first target)")


def run(args) -> int:
    import numpy as np
    import pypose as pp
    import torch

    from ..ik import IKConfig, read_targets, solve

    if args.frame_target is not None:
        return _several_frames(args)
    if args.frame_weight is not None:
        raise ValueError("--frame-weight: weighs the frames of --frame-target")
    if args.tip is None:
        raise ValueError("--tip: the frame to place at --target or --targets is required")
    chain = load_chain(args.urdf, args.root, args.tip)
    if args.target is not None:
        if len(args.target) not in (3, 7):
            raise ValueError(f"--target: expected 3 numbers (x y z) or 7 (x y z qx qy qz qw), got {len(args.target)}")
        targets = torch.tensor([args.target], dtype=torch.float64)
    else:
        targets = read_targets(args.targets)
    dtype = torch.float64 if args.target is not None else getattr(torch, args.dtype)
    targets = targets.to(dtype)
    q0 = None if args.q0 is None else torch.tensor(args.q0, dtype=dtype)
    config = IKConfig(frame=args.tip, position_tolerance=args.position_tolerance,
                      orientation_tolerance=args.orientation_tolerance)
    N = targets.shape[0]
    print(f"{chain.name}: {chain.dof} joints {chain.joint_names}; {N} target(s) for {args.tip!r} "
          f"({'position' if targets.shape[1] == 3 else 'pose'})")
    results, t0 = [], time.perf_counter()
    show = N > args.chunk
    for s in range(0, N, args.chunk):
        T = targets[s : s + args.chunk]
        results.append(solve(chain, pp.SE3(T) if T.shape[1] == 7 else T, q0=q0, config=config))
        if show:
            progress(min(s + args.chunk, N), N, t0, "targets")
    if show:
        sys.stderr.write("\n")
    elapsed = time.perf_counter() - t0
    q = torch.cat([r.q for r in results]).double()
    ok = torch.cat([r.converged for r in results])
    pe = torch.cat([r.pos_err for r in results]).double()
    re = torch.cat([r.rot_err for r in results]).double()
    if N == 1:
        print("q =", np.array2string(q[0].numpy(), precision=6, suppress_small=True))
        print(f"converged={bool(ok[0])}, position error {float(pe[0]) * 1e3:.4f} mm, "
              f"rotation error {float(re[0]):.2e} rad, {elapsed * 1e3:.1f} ms")
    else:
        print(f"solved {int(ok.sum())}/{N} ({float(ok.double().mean()) * 100:.2f}%) in {elapsed:.2f} s "
              f"({N / elapsed:,.0f} targets/s); median position error {float(pe.median()) * 1e3:.4f} mm")
    if args.out:
        table = np.concatenate((q.numpy(), ok.double().numpy()[:, None], pe.numpy()[:, None], re.numpy()[:, None]), 1)
        header = " ".join(chain.joint_names) + " converged pos_err_m rot_err_rad"
        with atomic_path(args.out) as tmp:
            np.savetxt(tmp, table, fmt="%.9g", header=header)
        print(f"wrote {args.out}")
    if args.plot:
        _plot(chain, q[0], targets[0].double(), args)
    return 0 if bool(ok.all()) else 1


def _several_frames(args) -> int:
    """``--frame-target``: one solve placing every named frame at its target."""
    import numpy as np
    import torch

    from ..ik import IKConfig, solve

    if args.tip is not None:
        raise ValueError("--tip: --frame-target names its frames; leave --tip out")
    targets = {}
    for entry in args.frame_target:
        frame, values = entry[0], entry[1:]
        if frame in targets:
            raise ValueError(f"--frame-target: {frame!r} given twice")
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"--frame-target {frame}: expected numbers after the frame's name, got {values}") from None
        if len(numbers) not in (3, 7):
            raise ValueError(f"--frame-target {frame}: expected 3 numbers (x y z) or 7 (x y z qx qy qz qw), "
                             f"got {len(numbers)}")
        targets[frame] = torch.tensor(numbers, dtype=torch.float64)
    weights, positive = {}, real(positive=True)
    for frame, value in args.frame_weight or ():
        if frame not in targets:
            raise ValueError(f"--frame-weight: {frame!r} is not one of the --frame-target frames {list(targets)}")
        try:
            weights[frame] = positive(value)
        except argparse.ArgumentTypeError as err:
            raise ValueError(f"--frame-weight {frame}: {err}") from None
    chain = load_chain(args.urdf, args.root, None)
    q0 = None if args.q0 is None else torch.tensor(args.q0, dtype=torch.float64)
    config = IKConfig(position_tolerance=args.position_tolerance, orientation_tolerance=args.orientation_tolerance,
                      frame_weights=weights or None)
    print(f"{chain.name}: {chain.dof} joints; {len(targets)} frame(s) placed at once: {', '.join(targets)}")
    t0 = time.perf_counter()
    r = solve(chain, targets, q0=q0, config=config)
    elapsed = time.perf_counter() - t0
    print("q =", np.array2string(r.q.numpy(), precision=6, suppress_small=True))
    for k, frame in enumerate(targets):
        kind = "position" if targets[frame].shape[0] == 3 else "pose"
        print(f"  {frame} ({kind}): position error {float(r.pos_err[k]) * 1e3:.4f} mm, "
              f"rotation error {float(r.rot_err[k]):.2e} rad")
    print(f"converged={bool(r.converged)} ({r.reason[0]}), {elapsed * 1e3:.1f} ms")
    if args.out:
        row = np.concatenate((r.q.double().numpy(), [float(r.converged)], r.pos_err.double().numpy(),
                              r.rot_err.double().numpy()))
        header = " ".join(chain.joint_names + ["converged"] + [f"pos_err_m:{f}" for f in targets]
                          + [f"rot_err_rad:{f}" for f in targets])
        with atomic_path(args.out) as tmp:
            np.savetxt(tmp, row[None], fmt="%.9g", header=header)
        print(f"wrote {args.out}")
    if args.plot:
        _plot(chain, r.q, torch.stack([t[:3] for t in targets.values()]), args, frames=list(targets))
    return 0 if bool(r.converged) else 1


def _plot(chain, q, target, args, frames=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import viz

    ax = viz.plot_arm(chain, q, frame=frames or args.tip, target=target.numpy())
    ax.set_title(f"{chain.name}: IK of {len(frames)} frames at once" if frames else f"{chain.name}: IK for {args.tip}")
    save_figure_atomic(ax.figure, args.plot, dpi=110)
    plt.close(ax.figure)
    print(f"wrote {args.plot}")
