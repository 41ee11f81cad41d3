"""``robojac urdf``: a robot description (URDF or MJCF) written out as a URDF."""

from __future__ import annotations

import pathlib


def add_parser(sub) -> None:
    p = sub.add_parser("urdf", help="write a robot description (URDF or MJCF) as a URDF, and list its joints",
                       description="Read a URDF or an MJCF (MuJoCo XML) model and write it as a URDF (joints, "
                                   "origins, axes, limits, each link's mass and centre of mass; no meshes).  With "
                                   "--root/--tip, the serial chain between them.")
    p.add_argument("model", type=pathlib.Path, help="robot description: a URDF, or an MJCF (MuJoCo XML) model")
    p.add_argument("out", type=pathlib.Path, help="the URDF to write")
    p.add_argument("--root", help="first frame of a serial sub-chain (default: the model's root)")
    p.add_argument("--tip", help="last frame of a serial sub-chain (default: the whole tree)")
    p.add_argument("--free-joints", choices=("refuse", "fixed"), default="refuse",
                   help="an MJCF free joint (a floating base): refuse it, or keep the body where the file puts it")


def run(args) -> int:
    from ._bar import load_chain

    chain = load_chain(args.model, args.root, args.tip, args.free_joints)
    chain.to_urdf(args.out)
    if chain.unknown_masses:
        mass = f"mass unknown: {list(chain.unknown_masses)} take theirs from their geoms in MuJoCo"
    else:
        mass = f"{chain.mass:.6g} kg in {len(chain.inertials)} links"
    print(f"{chain.name}: {chain.dof} joints {chain.joint_names}, {len(chain.frame_names)} frames, {mass}; "
          f"wrote {args.out}")
    return 0
