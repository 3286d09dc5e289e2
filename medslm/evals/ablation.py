"""Ablations of the specialist SLMs: classical-only vs SLM-only vs combined, on data never fitted or tuned on.

Each agent's evaluation module provides ``ablation(data_dir, *, limit, seed) -> Ablation`` (or a list of
them, one per held-out split: NER scores NCBI-disease test and BC5CDR devel apart): the three
systems' per-item scores on the same items of a held-out split (NCBI-disease test, BC5CDR devel, CodiEsp
dev, KTAS cross-validation folds, MTS-Dialog / ACI-Bench valid, held-out MedSafetyBench categories).
:func:`summarize` turns them into the headline metric per system with a 95 % bootstrap interval, and the
paired difference of each SLM system against the classical one with its interval (items resampled
together, so the interval is of the *difference*): the SLM adds something when that interval excludes 0.

    python bench/ablation.py --agent ner [--limit N]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: agent -> "module:function" returning an :class:`Ablation`
ABLATIONS: dict[str, str] = {
    "ner": "medslm.evals.ner:ablation",
    "icd": "medslm.evals.icd:ablation",
    "triage": "medslm.evals.triage:ablation",
    "summarize": "medslm.evals.summarize:ablation",
    "guardian": "medslm.evals.safety:ablation",
}
SYSTEMS = ("classical", "slm", "combined")


@dataclass
class Ablation:
    """Per-item data of each system on the same held-out items, and how to turn them into the metric.

    ``items[system]`` is a list with one entry per item (same order for every system): whatever
    ``metric`` needs, e.g. ``(tp, fp, fn)`` tuples for a micro F1 or a 0/1 correctness for accuracy.
    ``metric(entries) -> float`` computes the headline metric over a list of entries (a resample).
    """

    agent: str
    split: str  # e.g. "NCBI-disease test (100 abstracts)"
    metric_name: str
    metric: Callable[[Sequence[Any]], float]
    items: dict[str, list[Any]]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # secondary figures, latencies


def summarize(ab: Ablation, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metric and 95 % percentile-bootstrap CI per system; paired differences vs the classical system."""
    import numpy as np

    systems = [s for s in SYSTEMS if s in ab.items] + [s for s in ab.items if s not in SYSTEMS]
    n = len(next(iter(ab.items.values())))
    if any(len(v) != n for v in ab.items.values()):
        raise ValueError("every system must be scored on the same items")
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(n_boot)]
    out: dict[str, Any] = {"agent": ab.agent, "split": ab.split, "metric": ab.metric_name, "n": n, "systems": {},
                           "differences": {}, "notes": ab.notes, "extra": ab.extra}
    boots: dict[str, Any] = {}
    for s in systems:
        entries = ab.items[s]
        boots[s] = np.asarray([ab.metric([entries[i] for i in d]) for d in draws])
        out["systems"][s] = {"value": ab.metric(entries), "ci95": [float(np.percentile(boots[s], 2.5)),
                                                                   float(np.percentile(boots[s], 97.5))]}
    if "classical" in boots:
        for s in systems:
            if s == "classical":
                continue
            diff = boots[s] - boots["classical"]
            lo, hi = float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))
            out["differences"][f"{s} - classical"] = {
                "value": out["systems"][s]["value"] - out["systems"]["classical"]["value"],
                "ci95": [lo, hi], "excludes_0": lo > 0 or hi < 0}
    return out


def micro_f1(entries: Sequence[tuple[int, int, int]]) -> float:
    """Micro F1 over per-item ``(tp, fp, fn)`` counts."""
    tp = sum(e[0] for e in entries)
    fp = sum(e[1] for e in entries)
    fn = sum(e[2] for e in entries)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def mean(entries: Sequence[float]) -> float:
    return float(sum(entries) / len(entries)) if entries else 0.0


def run(agent: str, data_dir: Any = None, **kw: Any) -> Ablation | list[Ablation]:
    from importlib import import_module

    from medslm.errors import UnknownNameError

    if agent not in ABLATIONS:
        raise UnknownNameError("ablation agent", agent, list(ABLATIONS))
    mod, fn = ABLATIONS[agent].split(":")
    return getattr(import_module(mod), fn)(data_dir, **kw)


def format_table(res: dict[str, Any]) -> str:
    lines = [f"## {res['agent']}: {res['metric']} on {res['split']} (n={res['n']})", "",
             "| system | " + res["metric"] + " | 95 % CI |", "|---|---|---|"]
    for s, v in res["systems"].items():
        lines.append(f"| {s} | {v['value']:.4f} | [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}] |")
    if res["differences"]:
        lines += ["", "| paired difference | value | 95 % CI | excludes 0 |", "|---|---|---|---|"]
        for k, v in res["differences"].items():
            lines.append(f"| {k} | {v['value']:+.4f} | [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] | "
                         f"{'yes' if v['excludes_0'] else 'no'} |")
    for note in res.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines)


__all__ = ["ABLATIONS", "SYSTEMS", "Ablation", "format_table", "mean", "micro_f1", "run", "summarize"]
