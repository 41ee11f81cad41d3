"""MJCF models: loading and forward kinematics, side by side with the peers that read MJCF.

Loading: robojac's reader (pure Python, no MuJoCo), pytorch_kinematics' ``build_chain_from_mjcf``
(which compiles the model with MuJoCo first), MuJoCo's own compiler and Pinocchio's MJCF
parser, on the iiwa file and on a generated serial arm of ``--links`` bodies.  FK: every body
of the iiwa for a batch of configurations, robojac against pytorch_kinematics (both loaded from
the MJCF) and MuJoCo's ``mj_kinematics`` called per configuration.  Median times; ratios are
robojac's time over the peer's (below 1: robojac is faster).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/mjcf.py [--links 200] [--batch 10000]
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, median_time, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402


def _arm(n: int) -> str:
    """A serial arm of ``n`` bodies, each turned and offset, with alternating hinge axes."""
    inner = "<site name='tool' pos='0 0 0.1'/>"
    for i in reversed(range(n)):
        axis = ("0 0 1", "0 1 0", "1 0 0")[i % 3]
        inner = (f"<body name='link{i}' pos='0 0.01 0.1' euler='0 {5 * (i % 7)} 10'>"
                 f"<joint name='j{i}' axis='{axis}' range='-170 170'/><geom size='0.02'/>{inner}</body>")
    return f"<mujoco model='arm{n}'><worldbody>{inner}</worldbody></mujoco>"


def _peers():
    out = {}
    try:
        logging.disable(logging.WARNING)
        import pytorch_kinematics as pk

        out["pytorch_kinematics"] = pk
    except ImportError:
        pass
    for name in ("mujoco", "pinocchio"):
        try:
            out[name] = __import__(name)
        except ImportError:
            pass
    return out


def _loaders(peers, path: pathlib.Path | None, xml: str):
    yield "robojac", lambda: Chain.from_mjcf(xml)
    if "pytorch_kinematics" in peers:
        def pk_load():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return peers["pytorch_kinematics"].build_chain_from_mjcf(xml)
        yield "pytorch_kinematics", pk_load
    if "mujoco" in peers:
        yield "MuJoCo (compile)", lambda: peers["mujoco"].MjModel.from_xml_string(xml)
    if "pinocchio" in peers and path is not None:  # Pinocchio's MJCF reader takes a file
        yield "Pinocchio", lambda: peers["pinocchio"].buildModelFromMJCF(str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--links", type=int, default=200, help="bodies of the generated arm")
    ap.add_argument("--batch", type=int, default=10_000, help="configurations for FK")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    peers = _peers()
    print(f"# MJCF loading and FK; {describe_machine()}")
    print(f"# peers found: {sorted(peers) or 'none'}")

    iiwa = data.path("robots/kuka_iiwa14.xml")
    tmp = pathlib.Path(sys.argv[0]).resolve().parent / f".arm{args.links}.xml"
    models = [("iiwa (7 joints)", iiwa, iiwa.read_text()), (f"arm of {args.links} joints", None, _arm(args.links))]
    rows = []
    for label, path, xml in models:
        if path is None:  # Pinocchio reads files: give it the generated arm as one
            tmp.write_text(xml)
            path = tmp
        times = {}
        for name, load in _loaders(peers, path, xml):
            try:
                times[name] = median_time(load, repeat=args.repeats)
            except Exception as e:  # noqa: BLE001 -- a peer that cannot load the model is a result too
                rows.append([f"load {label}", name, f"fails: {type(e).__name__}: {e}"[:70], ""])
                continue
            ratio = "" if name == "robojac" else f"{times['robojac'] / times[name]:.2f}x"
            rows.append([f"load {label}", name, fmt_time(times[name]), ratio])
    tmp.unlink(missing_ok=True)

    chain = Chain.from_mjcf(iiwa)
    q = chain.random_configuration(args.batch, generator=torch.Generator().manual_seed(0))
    frames = chain.frame_names
    ours = median_time(lambda: chain.forward_kinematics_tensor(q, frames), repeat=args.repeats)
    rows.append([f"FK, {args.batch:,} configurations, every body", "robojac", fmt_time(ours), ""])
    if "pytorch_kinematics" in peers:  # from the URDF of the same arm where its MJCF loader fails
        pk = peers["pytorch_kinematics"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pk_chain, source = pk.build_chain_from_mjcf(iiwa.read_text()), "MJCF"
            except Exception:  # noqa: BLE001
                pk_chain, source = pk.build_chain_from_urdf(data.path("robots/kuka_iiwa14.urdf").read_bytes()), "URDF"
        pk_chain = pk_chain.to(dtype=torch.float64)
        t = median_time(lambda: pk_chain.forward_kinematics(q), repeat=args.repeats)
        rows.append(["", f"pytorch_kinematics (loaded from the {source})", fmt_time(t), f"{ours / t:.2f}x"])
    if "mujoco" in peers:
        mj = peers["mujoco"]
        model = mj.MjModel.from_xml_path(str(iiwa))
        mdata = mj.MjData(model)
        qn = q.numpy()
        n = min(args.batch, 2000)  # per configuration in Python: time a part, scale to the batch

        def run():
            for k in range(n):
                mdata.qpos[:] = qn[k]
                mj.mj_kinematics(model, mdata)

        t = median_time(run, repeat=max(3, args.repeats // 3)) * args.batch / n
        rows.append(["", "MuJoCo (mj_kinematics per configuration)", fmt_time(t), f"{ours / t:.2f}x"])
        # the answers agree: every body of the first configuration
        mdata.qpos[:] = qn[0]
        mj.mj_kinematics(model, mdata)
        T = chain.forward_kinematics_tensor(q[:1], frames)[0]
        err = float(np.abs(T[:, :3].numpy() - mdata.xpos).max())
        print(f"# robojac vs MuJoCo, body positions of one configuration: max difference {err:.1e} m")
    print(table(["case", "library", "median time", "robojac / peer"], rows))


if __name__ == "__main__":
    main()
