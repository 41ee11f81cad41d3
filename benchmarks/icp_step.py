"""Why ICP keeps its own Gauss-Newton loop: one point-to-plane step on the engine against one in
ICP's loop, on the same fixed correspondences (the bunny pair at its GICP answer, 3 mm voxels).

* the engine (``robojac.optim.solve``, Gauss-Newton) with a closed-form factor written as a user
  would (``value_and_jacobians``), and with automatic Jacobians (the residual alone);
* ICP's step: the system from moment sums in structure-of-arrays layout, the engine's damping.

Each is timed at 1 and 5 steps (interleaved medians): the difference is the cost of a step, the
rest the set-up of a solve, which ICP would pay at every step (it re-matches before each).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/icp_step.py
"""

from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, interleaved_medians, table  # noqa: E402

from robojac import data, lie, optim  # noqa: E402
from robojac.icp import ICPConfig, align, prepare, read_point_cloud, voxel_downsample  # noqa: E402
from robojac.icp import _soa as soa  # noqa: E402  (ICP's step arithmetic, timed as the loop runs it)


def residual(T, s, t, n):
    return ((lie.se3_act(T, s) - t) * n).sum(-1, keepdim=True)


class ClosedForm:
    """Point-to-plane with its Jacobian ``[n; T s x n]`` in left-tangent coordinates."""

    def __call__(self, T, s, t, n):
        return residual(T, s, t, n)

    def value_and_jacobians(self, T, s, t, n):
        p = lie.se3_act(T, s)
        return ((p - t) * n).sum(-1, keepdim=True), (torch.cat((n, torch.linalg.cross(p, n, dim=-1)), -1)[..., None, :],)


def main() -> None:
    print(f"# One ICP step, engine vs ICP's loop; {describe_machine()}", flush=True)
    folder = data.path("pointclouds/bunny")
    src = voxel_downsample(read_point_cloud(folder / "bun045.ply.gz"), 0.003)
    tgt = voxel_downsample(read_point_cloud(folder / "bun000.ply.gz"), 0.003)
    T = align(src, tgt, config=ICPConfig(max_correspondence_distance=0.05)).T_target_source.tensor()
    target = prepare(tgt)
    d2, j = target.index.query(lie.se3_act(T[None], src))
    keep = d2 <= 0.05**2
    s, t, n = src[keep], tgt[j[keep]], target.normals[j[keep]]

    def engine(res, steps):
        X = optim.Variable("SE3", T[None, None], name="T_target_source")
        f = optim.Factor(res, [X], torch.zeros(len(s), 1, dtype=torch.long), data=[s[None], t[None], n[None]])
        stop = optim.TerminationConfig(max_iterations=steps, relative_tolerance=0.0, step_tolerance=0.0, gradient_tolerance=0.0)
        return optim.solve([X], [f], optim.SolverConfig(optim.TrustRegionConfig(method="gn"), stop, backward="none"))

    def loop(steps):
        Tc = T[None].clone()
        sT, tT, nT = (x.T[None].contiguous() for x in (s, t, n))
        w, lam = torch.ones(1, len(s), dtype=s.dtype), torch.zeros(1, dtype=s.dtype)
        for _ in range(steps):
            q = soa.transform(lie.quat_to_matrix(Tc[:, 3:]), Tc[:, :3], sT)
            H, g = soa.plane_system(q, nT, (nT * (q - tT)).sum(1), w)
            delta = -torch.linalg.solve(optim.damped(H, lam), g.unsqueeze(-1)).squeeze(-1)
            Tc = lie.se3_compose(lie.se3_exp(delta), Tc)
        return Tc

    cases = {"engine, closed-form factor": lambda k: engine(ClosedForm(), k),
             "engine, automatic Jacobians": lambda k: engine(residual, k),
             "ICP's loop": loop}
    fns = [lambda f=f, k=k: f(k) for f in cases.values() for k in (1, 5)]
    times = interleaved_medians(fns, repeat=21)
    rows = []
    for i, name in enumerate(cases):
        one, five = times[2 * i], times[2 * i + 1]
        step = (five - one) / 4
        rows.append([name, f"{len(s)}", f"{step * 1e3:.2f} ms", f"{max(one - step, 0.0) * 1e3:.2f} ms"])
    print(table(["Gauss-Newton step", "correspondences", "per step", "set-up per solve"], rows))


if __name__ == "__main__":
    main()
