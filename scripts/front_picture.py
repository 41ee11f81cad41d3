"""Draw docs/pictures/front.png, the README's picture: one panel per capability.

    python scripts/front_picture.py [--out docs/pictures/front.png]
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import robojac  # noqa: E402
from robojac import ik, viz  # noqa: E402
from robojac.icp import ICPConfig, align, read_point_cloud  # noqa: E402
from robojac.posegraph import PGOConfig, optimize, read_g2o  # noqa: E402


def main(out: pathlib.Path) -> None:
    fig = plt.figure(figsize=(16, 4.2))
    panda = robojac.Chain.from_urdf(robojac.data.path("robots/panda.urdf"), tip="panda_hand")
    q_home = torch.tensor([0.0, -0.4, 0.0, -2.0, 0.0, 1.7, 0.8], dtype=torch.float64)
    target = panda.forward_kinematics(torch.tensor([0.6, 0.3, -0.2, -1.6, 0.1, 1.9, 0.4], dtype=torch.float64),
                                      frame="panda_hand")
    q = ik.solve(panda, target, q0=q_home).q
    ax = fig.add_subplot(1, 4, 1, projection="3d")
    viz.plot_arm(panda, q_home, ax, color="#9aa5b1", alpha=0.5, show_frame_axes=False)
    viz.plot_arm(panda, q, ax, target=target.translation().numpy())
    ax.set_title("Panda: IK to a pose", fontsize=10)
    viz.plot_jacobian_heatmap(panda.jacobian(q), fig.add_subplot(1, 4, 2), col_labels=[f"q{k + 1}" for k in range(7)],
                              title="its Jacobian [v; w]", annotate=False)
    source = read_point_cloud(robojac.data.path("pointclouds/bunny/bun045.ply"))
    target_cloud = read_point_cloud(robojac.data.path("pointclouds/bunny/bun000.ply"))
    result = align(source, target_cloud, config=ICPConfig(method="gicp", voxel_size=0.003))
    viz.plot_registration(source, target_cloud, result.T_target_source, fig.add_subplot(1, 4, 3, projection="3d"),
                          title="bunny scans aligned by GICP", vertical_axis="y", view=(15, -70), max_points=4000)
    graph = read_g2o(robojac.data.path("posegraph/intel.g2o"))
    pgo = optimize(graph, PGOConfig(method="gn"))
    viz.plot_pose_graph(graph, pgo.poses, fig.add_subplot(1, 4, 4), title="Intel lab pose graph, optimized",
                        colorbar=False)
    fig.tight_layout()
    robojac._files.save_figure_atomic(fig, out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = pathlib.Path(__file__).resolve().parents[1] / "docs" / "pictures" / "front.png"
    p.add_argument("--out", type=pathlib.Path, default=default)
    main(p.parse_args().out)
