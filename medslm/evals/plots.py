"""PNG plots of an evaluation: quality vs. escalation share (Pareto) and reliability diagrams.

matplotlib is imported inside the functions with the non-interactive ``Agg`` backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_pareto", "plot_reliability", "write_plots"]

_MARKERS = {"rules": ("s", "#5f6368"), "slm": ("o", "#1a73e8"), "llm": ("^", "#9334e6"),
            "cascade": ("D", "#e8710a")}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _operating_point(system: str, entry: Mapping[str, Any], headline: str) -> tuple[float, float] | None:
    if "metrics" not in entry:
        return None
    cost = entry.get("cost", {})
    x = float(cost.get("escalation_share", 0.0)) + float(cost.get("review_share", 0.0))
    return min(1.0, x), float(entry["metrics"].get(headline, 0.0))


def plot_pareto(task: Mapping[str, Any], path: str | Path) -> Path | None:
    """Quality of one task against the share of items escalated (or sent to review), with operating points."""
    systems = task.get("systems", {})
    pareto = task.get("pareto")
    headline = task.get("headline", "quality")
    if not pareto and not any("metrics" in e for e in systems.values()):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=110)
    if pareto:
        pts = pareto["points"]
        ax.plot([p["escalation_share"] for p in pts], [p["quality"] for p in pts], "-", color="#1a73e8",
                alpha=0.6, label=f"SLM, lowest confidence first → {pareto['to']}")
    for system, entry in systems.items():
        op = _operating_point(system, entry, headline)
        if op is None:
            continue
        marker, colour = _MARKERS.get(system, ("x", "black"))
        ax.plot([op[0]], [op[1]], marker, color=colour, markersize=8, label=system)
        lo_hi = entry.get("ci", {}).get(headline)
        if lo_hi:
            ax.plot([op[0], op[0]], lo_hi, "-", color=colour, alpha=0.5)
    ax.set_xlabel("escalation + review share")
    ax.set_ylabel(headline)
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(f"{task.get('task', '')}: quality vs. escalation share", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_reliability(task: Mapping[str, Any], path: str | Path) -> Path | None:
    """Reliability diagram (accuracy per confidence bin) of each system of a task that has confidences."""
    series = {s: e for s, e in task.get("systems", {}).items() if e.get("reliability")}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], "--", color="#9aa0a6", label="perfect calibration")
    for system, entry in series.items():
        bins = [b for b in entry["reliability"] if b["count"]]
        marker, colour = _MARKERS.get(system, ("x", "black"))
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker + "-", color=colour,
                label=f"{system} (ECE {entry.get('ece', 0):.3f}, n={entry.get('calibration_units', 0)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence")
    ax.set_ylabel("observed accuracy")
    ax.set_title(f"{task.get('task', '')}: reliability", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_plots(result: Mapping[str, Any], out: str | Path) -> dict[str, dict[str, str]]:
    """Every plot of an evaluation under ``out``; returns ``{task: {"pareto": file, "reliability": file}}``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, str]] = {}
    for name, task in result.get("tasks", {}).items():
        got: dict[str, str] = {}
        p = plot_pareto(task, out / f"pareto_{name}.png")
        if p is not None:
            got["pareto"] = p.name
        r = plot_reliability(task, out / f"reliability_{name}.png")
        if r is not None:
            got["reliability"] = r.name
        files[name] = got
    return files
