"""Pictures of a calibration: each measurement's error before and after, the identifiability
spectrum, and the hand-eye methods side by side."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._style import PALETTE, as_numpy, require

__all__ = ["plot_calibration_errors", "plot_identifiability", "plot_calibration_summary", "plot_hand_eye_methods"]


def plot_calibration_errors(result, ax=None, *, title: str | None = "Error per measurement"):
    """Bars of each measurement's position error (mm) with the nominal chain (light) and the
    calibrated one (dark), on a log scale; measurements the robust kernel set aside (weight
    below 0.1) are marked with a red x.  Returns ``ax``."""
    require("result", result, "calibration", "CalibrationResult", "a CalibrationResult (calibrate_kinematics' answer)")
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.figure(figsize=(8, 3.2)).add_subplot()
    before, after = as_numpy(result.before.position) * 1e3, as_numpy(result.after.position) * 1e3
    out = as_numpy(result.weights) < 0.1
    kept = "" if not out.any() else " of the kept"
    i = np.arange(len(before))
    ax.bar(i, before, color=PALETTE[1], alpha=0.45, width=0.85,
           label=f"nominal (RMS {np.sqrt(np.mean(before[~out] ** 2)):.3g} mm{kept})")
    ax.bar(i, after, color=PALETTE[0], width=0.85,
           label=f"calibrated (RMS {np.sqrt(np.mean(after[~out] ** 2)):.3g} mm{kept})")
    if out.any():
        ax.scatter(i[out], before[out], marker="x", color="#c0392b", zorder=5, label="set aside (robust weight < 0.1)")
    ax.set_yscale("log")
    ax.set_xlabel("measurement")
    ax.set_ylabel("position error (mm)")
    ax.set_xlim(-1, len(before))
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 30)  # room for the legend above the bars
    ax.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return ax


def plot_identifiability(result, ax=None, *, tolerance: float | None = 1e-6,
                         title: str | None = "What the measurements identify"):
    """The identification Jacobian's singular values (columns scaled to unit norm), largest
    first, on a log scale: the identifiable directions above the tolerance line, the
    unidentifiable ones (held at their nominal values) below it.  Returns ``ax``."""
    require("result", result, "calibration", "CalibrationResult", "a CalibrationResult (calibrate_kinematics' answer)")
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.figure(figsize=(6, 3.2)).add_subplot()
    s = as_numpy(result.singular_values)
    s = s / s[0]
    floor = 1e-17
    r = len(result.identifiable)
    k = np.arange(1, len(s) + 1)
    ax.semilogy(k[:r], np.maximum(s[:r], floor), "o", ms=4, color=PALETTE[0], label=f"identifiable ({r})")
    ax.semilogy(k[r:], np.maximum(s[r:], floor), "o", ms=4, mfc="none", color=PALETTE[1],
                label=f"held at nominal ({len(s) - r})")
    if tolerance:
        ax.axhline(tolerance, color="0.5", lw=0.8, ls="--")
        ax.text(len(s), tolerance * 1.8, "rank tolerance", ha="right", fontsize=8, color="0.4")
    ax.set_xlabel("direction")
    ax.set_ylabel("singular value / largest")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return ax


def plot_calibration_summary(result, fig=None):
    """Errors per measurement (left) and the identifiability spectrum (right), one figure.
    Returns the figure."""
    require("result", result, "calibration", "CalibrationResult", "a CalibrationResult (calibrate_kinematics' answer)")
    import matplotlib.pyplot as plt

    fig = fig if fig is not None else plt.figure(figsize=(12, 3.6))
    a, b = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.7, 1]})
    plot_calibration_errors(result, a)
    plot_identifiability(result, b)
    fig.tight_layout()
    return fig


def plot_hand_eye_methods(errors: Mapping[str, tuple[float, float]], ax=None, *,
                          title: str | None = "Hand-eye error by method"):
    """Grouped bars of ``{method: (position mm, rotation deg)}``: position on the left axis,
    rotation on the right, both on log scales (methods differ by decades).  Returns ``ax``."""
    import matplotlib.pyplot as plt

    if not isinstance(errors, Mapping) or not errors:
        raise TypeError(f"errors: expected a non-empty {{method: (position mm, rotation deg)}}, got {type(errors).__name__}")
    for name, pair in errors.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"errors[{name!r}]: expected (position mm, rotation deg), got {pair!r}")

    ax = ax if ax is not None else plt.figure(figsize=(7, 3.2)).add_subplot()
    names = list(errors)
    i = np.arange(len(names))
    pos = [errors[n][0] for n in names]
    rot = [errors[n][1] for n in names]
    ax.bar(i - 0.2, pos, width=0.4, color=PALETTE[0], label="position (mm)")
    ax2 = ax.twinx()
    ax2.bar(i + 0.2, rot, width=0.4, color=PALETTE[1], label="rotation (deg)")
    ax.set_yscale("log")
    ax2.set_yscale("log")
    for a, v in ((ax, pos), (ax2, rot)):  # the same decades below the best on both axes
        a.set_ylim(min(v) / 10, max(v) * 2)
    ax.set_xticks(i, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("position error (mm)", color=PALETTE[0])
    ax2.set_ylabel("rotation error (deg)", color=PALETTE[1])
    if title:
        ax.set_title(title)
    return ax
