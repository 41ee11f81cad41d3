"""``robojac ape`` and ``robojac rpe``: a trajectory's errors against a reference, as evo's
``evo_ape`` and ``evo_rpe`` give them (the same file formats, options and statistics)."""

from __future__ import annotations

import pathlib

_RELATIONS = {"trans_part": "translation_part", "angle_deg": "rotation_angle_deg", "angle_rad": "rotation_angle_rad",
              "full": "full_transformation"}
_UNITS = {"f": "frames", "m": "meters", "d": "degrees", "r": "radians"}
_DEFAULTS = {"t_offset": 0.0, "sync_method": "nearest_time", "t_start": None, "t_end": None}  # the options of time


def _option(p, name: str, *flags, **kw) -> None:
    """``--a-b`` with evo's spelling ``--a_b`` beside it, so an evo command line runs as it is."""
    evo = "--" + name[2:].replace("-", "_")
    p.add_argument(*flags, name, *([evo] if evo != name else []), **kw)


def _common(p) -> None:
    p.add_argument("format", choices=("tum", "kitti", "euroc"),
                   help="the files' format (as evo's first argument; euroc: a EuRoC ground-truth CSV and a TUM estimate)")
    p.add_argument("reference", type=pathlib.Path, help="the reference trajectory")
    p.add_argument("estimate", type=pathlib.Path, help="the estimated trajectory (TUM for euroc, as evo)")
    _option(p, "--pose-relation", "-r", choices=sorted(_RELATIONS), default="trans_part",
            help="the part of the pose error measured (evo's -r; default trans_part)")
    p.add_argument("-a", "--align", action="store_true", help="align the estimate to the reference (Umeyama, rigid)")
    _option(p, "--correct-scale", "-s", action="store_true",
            help="correct the estimate's scale (with -a: a similarity)")
    _option(p, "--n-to-align", type=int, default=None, help="align with the first N poses only")
    _option(p, "--align-origin", action="store_true", help="move the estimate's first pose onto the reference's")
    _option(p, "--project-to-plane", choices=("xy", "xz", "yz"), default=None,
            help="after the alignment, flatten both trajectories into this plane (a ground robot's error)")
    _option(p, "--t-max-diff", type=float, default=0.01,
            help="timestamped formats: the largest time difference of an associated pair (s, default 0.01)")
    _option(p, "--t-offset", type=float, default=_DEFAULTS["t_offset"],
            help="timestamped formats: a constant offset added to the estimate's timestamps to match them (s)")
    _option(p, "--sync-method", choices=("nearest_time", "interpolation"), default=_DEFAULTS["sync_method"],
            help="timestamped formats: pair the nearest poses in time, or interpolate the denser trajectory at "
                 "the sparser one's times")
    _option(p, "--t-start", type=float, default=_DEFAULTS["t_start"],
            help="timestamped formats: only the reference's poses from this time on (s)")
    _option(p, "--t-end", type=float, default=_DEFAULTS["t_end"],
            help="timestamped formats: only the reference's poses up to this time (s)")
    p.add_argument("--plot", type=pathlib.Path, help="draw the trajectories and the error (PNG, PDF or SVG)")


def add_parser(sub) -> None:
    p = sub.add_parser("ape", help="absolute pose error of a trajectory (evo_ape)",
                       description="The absolute pose error of an estimated trajectory against a reference, after an "
                                   "optional alignment; prints evo's statistics (max, mean, median, min, rmse, sse, std).")
    _common(p)
    p.set_defaults(metric="ape")
    p = sub.add_parser("rpe", help="relative pose error of a trajectory (evo_rpe)",
                       description="The relative pose error of an estimated trajectory against a reference, over pairs of "
                                   "poses a delta apart; prints evo's statistics.")
    _common(p)
    p.add_argument("-d", "--delta", type=float, default=1.0, help="the distance between the poses of a pair (default 1)")
    _option(p, "--delta-unit", "-u", choices=sorted(_UNITS), default="f",
            help="the unit of delta: f frames, m metres along the path, d degrees or r radians turned (default f)")
    _option(p, "--delta-tol", type=float, default=0.1,
            help="with --all-pairs in m, d or r: the relative tolerance of a pair's delta (default 0.1)")
    _option(p, "--all-pairs", action="store_true", help="every pair a delta apart, not consecutive windows")
    _option(p, "--pairs-from-reference", action="store_true",
            help="find the pairs on the reference (default: on the estimate, as evo)")
    p.set_defaults(metric="rpe")


def _read(fmt: str, path: pathlib.Path):
    from ..trajectory import read_euroc, read_kitti, read_tum

    return {"tum": read_tum, "kitti": read_kitti, "euroc": read_euroc}[fmt](path)


def run(args) -> int:
    from .._files import save_figure_atomic
    from ..trajectory import PoseRelation, TrajectoryError, associate, ate, in_time_range, rpe

    # evo's euroc mode: the ground truth as EuRoC's CSV, the estimate as a TUM file
    reference, estimate = _read(args.format, args.reference), _read("tum" if args.format == "euroc" else args.format,
                                                                     args.estimate)
    if args.format == "kitti" and any(getattr(args, k) != v for k, v in _DEFAULTS.items()):
        raise ValueError("--t-offset, --sync-method, --t-start and --t-end need timestamps; KITTI files hold none")
    if args.format != "kitti":  # TUM and EuRoC files are stamped: pairs by time
        if args.t_start is not None or args.t_end is not None:  # the reference's poses only, as evo
            reference = in_time_range(reference, args.t_start, args.t_end)
            if len(reference) == 0:
                raise ValueError(f"{args.reference} holds no pose between --t-start {args.t_start} and --t-end "
                                 f"{args.t_end}")
        reference, estimate = associate(reference, estimate, max_difference=args.t_max_diff, offset=args.t_offset,
                                        method=args.sync_method)
    elif len(reference) != len(estimate):
        raise ValueError(f"{args.reference} holds {len(reference)} poses, {args.estimate} {len(estimate)}: KITTI files "
                         "pair pose by pose")
    relation = PoseRelation(_RELATIONS[args.pose_relation])
    align = dict(align=args.align, correct_scale=args.correct_scale, align_origin=args.align_origin,
                 n_to_align=args.n_to_align, project_to_plane=args.project_to_plane)
    try:
        if args.metric == "ape":
            result = ate(reference, estimate, relation=relation, **align)
        else:
            unit = _UNITS[args.delta_unit]
            delta = int(args.delta) if unit == "frames" and float(args.delta).is_integer() else args.delta
            result = rpe(reference, estimate, relation=relation, delta=delta, delta_unit=unit, rel_tol=args.delta_tol,
                         all_pairs=args.all_pairs, pairs_from_reference=args.pairs_from_reference, **align)
    except TrajectoryError as e:
        raise ValueError(str(e)) from None
    shown = {PoseRelation.ROTATION_ANGLE_DEG: "deg", PoseRelation.ROTATION_ANGLE_RAD: "rad",
             PoseRelation.FULL_TRANSFORMATION: "unit-less"}.get(relation, "m")
    print(f"{args.metric.upper()} w.r.t. {relation.value} ({shown}), {len(result.errors)} "
          f"{'poses' if args.metric == 'ape' else 'pairs'}"
          + (f", {'similarity' if args.correct_scale else 'rigid'} alignment" if args.align else ""))
    for name in ("max", "mean", "median", "min", "rmse", "sse", "std"):
        print(f"{name:>8} {result.stats[name]:.6f}")
    if args.plot is not None:
        save_figure_atomic(_figure(args, reference, estimate, result), args.plot)
        print(f"wrote {args.plot}")
    return 0


def _figure(args, reference, estimate, result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import plot_trajectory_error

    fig, (top, curve) = plt.subplots(1, 2, figsize=(11, 4.5))
    plot_trajectory_error(estimate, reference, ax=top, title="the estimate, aligned (rigid), by position error")
    curve.plot(result.errors.cpu().numpy(), lw=1.2)
    curve.set_xlabel("pose" if args.metric == "ape" else "pair")
    curve.set_ylabel(f"{args.metric.upper()} ({result.relation.value})")
    curve.set_title(f"{args.metric.upper()}: RMSE {result.stats['rmse']:.4g}, max {result.stats['max']:.4g}")
    curve.grid(alpha=0.3)
    fig.tight_layout()
    return fig
