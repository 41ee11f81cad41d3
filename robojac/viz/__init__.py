"""Pictures (matplotlib): arms and trajectories, Jacobian heatmaps.

Every function takes an optional ``ax`` (or ``fig``) and returns it, so pictures compose.
Nothing here is imported by the rest of the library.
"""

from ._arm import animate_arm, plot_arm, plot_end_effector_path, plot_jacobian_heatmap, plot_trajectory_strip

__all__ = ["animate_arm", "plot_arm", "plot_end_effector_path", "plot_jacobian_heatmap", "plot_trajectory_strip"]
