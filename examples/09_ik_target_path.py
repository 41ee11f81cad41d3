"""An arm following a moving target: inverse kinematics along a path, seeded by the last answer.

The Panda's hand traces a tilted circle while pointing down; each waypoint is solved with
``q0`` set to the previous solution, so the arm moves smoothly instead of jumping between the
many configurations that reach the same pose.  The planar 3-link arm does the same along a
figure eight, position only.

    python examples/09_ik_target_path.py --out out/ik_path [--urdf path/to/panda.urdf]
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402

from robojac import data, ik, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402
from robojac.models import planar_arm  # noqa: E402



def track(chain, targets, q0, config):
    """Solve each target in turn from the previous answer; returns ``(qs, results)``."""
    qs, results, q = [], [], q0
    for target in targets:
        r = ik.solve(chain, target, q0=q, config=config)
        q = r.q
        qs.append(q)
        results.append(r)
    return torch.stack(qs), results


def report(name, qs, results):
    ok = sum(bool(r.converged) for r in results)
    d = qs[1:] - qs[:-1]
    jump = torch.atan2(torch.sin(d), torch.cos(d)).abs().amax(-1)  # a joint passing +-pi is not a jump
    worst = max(float(r.pos_err) for r in results)
    print(f"{name}: {ok}/{len(results)} waypoints solved, worst position error {worst * 1e3:.3f} mm, "
          f"largest joint step between waypoints {float(jump.max()):.3f} rad, "
          f"{sum(int(r.iterations) for r in results) / len(results):.1f} iterations per waypoint on average")


def main(out: pathlib.Path, urdf: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dt = torch.float64

    # planar 3-link arm, figure eight, position only
    arm = planar_arm((1.0, 0.8, 0.5))
    s = torch.linspace(0, 2 * math.pi, 61, dtype=dt)
    eight = torch.stack((1.3 + 0.45 * torch.sin(s), 0.6 * torch.sin(s) * torch.cos(s), torch.zeros_like(s)), -1)
    rest = torch.tensor([0.3, 0.6, 0.6], dtype=dt)
    qs, results = track(arm, eight, rest, ik.IKConfig(position_tolerance=1e-6))
    report("3-link figure eight", qs, results)
    viz.plot_trajectory_strip(arm, qs, num_frames=5, targets=eight,
                              title="3-link arm following a figure eight (IK per waypoint, seeded by the last)"
                              ).savefig(out / "planar_eight_strip.png", dpi=80)
    viz.animate_arm(arm, qs[::2], out / "planar_eight.gif", targets=eight[::2], fps=12)

    # Panda: a tilted circle with the hand pointing down
    panda = Chain.from_urdf(urdf, tip="panda_hand")
    t = torch.linspace(0, 2 * math.pi, 41, dtype=dt)
    centre = torch.tensor([0.45, 0.0, 0.35], dtype=dt)
    pos = centre + torch.stack((0.12 * torch.cos(t), 0.18 * torch.sin(t), 0.08 * torch.cos(t)), -1)
    down = pp.SO3(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dt))  # hand z axis along world -z
    targets = pp.SE3(torch.cat((pos, down.tensor().expand(len(t), 4)), -1))
    home = torch.tensor([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.8], dtype=dt)
    qs, results = track(panda, targets, home, ik.IKConfig())
    report("Panda circle", qs, results)
    viz.plot_trajectory_strip(panda, qs, num_frames=5, targets=targets.tensor(),
                              title="Panda hand tracing a circle, pointing down").savefig(out / "panda_circle_strip.png", dpi=70)
    viz.animate_arm(panda, qs[::2], out / "panda_circle.gif", targets=targets.tensor()[::2], fps=10)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/ik_path"))
    p.add_argument("--urdf", type=pathlib.Path, default=data.path("robots/panda.urdf"), help="the Panda's URDF")
    a = p.parse_args()
    main(a.out, a.urdf)
