"""Pose graphs: g2o files in and out, the SE2/SE3/Sim3 cost, initializations, a sparse LM/GN solver,
graduated non-convexity for graphs with many wrong loop closures, the poses' marginal covariances."""

from ._covariance import covariances
from ._g2o import G2OError, read_g2o, write_g2o
from ._gnc import GNCConfig, GNCRecord, GNCResult, optimize_gnc
from ._outliers import add_wrong_loop_closures
from ._graph import PoseGraph, PoseGraphError, PositionPriorResidual, SE2BetweenResidual, Sim3BetweenResidual
from ._solve import IterationRecord, PGOConfig, PGOResult, initialize, optimize

__all__ = ["G2OError", "GNCConfig", "GNCRecord", "GNCResult", "IterationRecord", "PGOConfig", "PGOResult", "PoseGraph",
           "PoseGraphError", "PositionPriorResidual", "SE2BetweenResidual", "Sim3BetweenResidual", "covariances",
           "add_wrong_loop_closures", "initialize", "optimize", "optimize_gnc", "read_g2o", "write_g2o"]
