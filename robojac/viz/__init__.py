"""Pictures (matplotlib): arms and trajectories, planned trajectories, collision shapes, Jacobian heatmaps, pose graphs,
point-cloud registrations, calibrations, odometry against a reference, the KITTI error.

Every function takes an optional ``ax`` (or ``fig``) and returns it, so pictures compose.
Nothing here is imported by the rest of the library.
"""

from ._arm import animate_arm, plot_arm, plot_end_effector_path, plot_jacobian_heatmap, plot_trajectory_strip
from ._collision import plot_collision
from ._motion import plot_trajopt
from ._calibration import plot_calibration_errors, plot_calibration_summary, plot_hand_eye_methods, plot_identifiability
from ._cloud import plot_multiway, plot_observability, plot_registration, plot_registration_before_after, plot_scans
from ._odometry import plot_kitti_error, plot_odometry, plot_trajectory_error
from ._graph import plot_cost_history, plot_graph_before_after, plot_pose_graph, plot_trajectories

__all__ = [
    "animate_arm", "plot_arm", "plot_calibration_errors", "plot_calibration_summary", "plot_collision",
    "plot_cost_history",
    "plot_end_effector_path", "plot_graph_before_after", "plot_hand_eye_methods", "plot_identifiability",
    "plot_jacobian_heatmap", "plot_kitti_error", "plot_multiway", "plot_observability", "plot_pose_graph", "plot_registration", "plot_registration_before_after",
    "plot_odometry", "plot_scans", "plot_trajectories", "plot_trajectory_error", "plot_trajectory_strip", "plot_trajopt",
]
