"""Evaluation of the medication agent: drug recall on BC5CDR, attribute P/R on a written set, latency.

- **Drug recall on BC5CDR devel chemicals** (``../shared/data/bc5cdr/devel.tsv``, sentences of PubMed
  abstracts, IOB tags). A gold ``Chemical`` mention counts as recalled when a medication or an allergy
  the agent outputs overlaps it (lenient) or has exactly its span (strict). BC5CDR's chemicals include
  non-drugs (ions, solvents, metabolites), so recall is bounded below 1 by the task; precision against
  ``Chemical`` is printed for context only (a drug is not always tagged a chemical there).
- **Attribute P/R** on ``medslm/evals/data/medication_attributes.jsonl``: 66 one-line clinical
  sentences written for this agent by the medslm developers (synthetic, no patient data, CC0), with
  every medication's drug, dose, unit, route, frequency, duration and status and the allergies. The
  file was written before the agent was tuned and is kept as a test set (sha256 in docs/medication.md):
  nothing was fitted or tuned on it. Drugs are matched by text (case-insensitive); an attribute of a
  matched drug is a true positive when it equals the gold value (lower-cased, dots and a leading
  "for"/"x" dropped), a false positive when the agent gives another value or gives one for a drug that
  is not in the gold, a false negative when the gold has a value the agent did not give. Status is
  scored on matched drugs. Allergies: substances matched by text.
- **Latency**: p50 / p95 wall time of ``agent.run`` per bundled sample note (after one warm-up note,
  which pays the model load and the schema compilation; that first-call cost is printed too).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from medslm.evals.harness import TaskSpec

MODES = ("rules", "hybrid", "slm")
ATTRIBUTES = ("dose", "unit", "route", "frequency", "duration", "status")


def read_attribute_set() -> list[dict[str, Any]]:
    """The written attribute set (66 sentences with gold medications and allergies)."""
    raw = resources.files("medslm.evals").joinpath("data/medication_attributes.jsonl").read_text("utf-8")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def _norm(value: Any) -> str | None:
    if value is None or value == "":
        return None
    v = " ".join(str(value).lower().replace(".", "").split())
    return re.sub(r"^(for|x|×)\s*", "", v) or None


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "tp": tp, "fp": fp, "fn": fn}


def score_attributes(gold: Sequence[dict[str, Any]], pred: Sequence[Any]) -> dict[str, Any]:
    """P/R of drugs, each attribute, all attributes together, and allergies (see the module docstring)."""
    counts = {k: [0, 0, 0] for k in ("drug", *ATTRIBUTES, "allergy")}
    for g, out in zip(gold, pred, strict=True):
        preds = list(out.medications) if out is not None else []
        golds = list(g["medications"])
        used: set[int] = set()
        for pm in preds:
            j = next((j for j, gm in enumerate(golds) if j not in used and _norm(gm["drug"]) == _norm(pm.drug)), None)
            if j is None:
                counts["drug"][1] += 1
                for a in ATTRIBUTES:
                    if a != "status" and _norm(getattr(pm, a)) is not None:
                        counts[a][1] += 1
                continue
            used.add(j)
            counts["drug"][0] += 1
            gm = golds[j]
            for a in ATTRIBUTES:
                gv, pv = _norm(gm.get(a)), _norm(getattr(pm, a))
                if gv is not None and pv == gv:
                    counts[a][0] += 1
                else:
                    counts[a][1] += pv is not None
                    counts[a][2] += gv is not None
        for j, gm in enumerate(golds):
            if j not in used:
                counts["drug"][2] += 1
                for a in ATTRIBUTES:
                    counts[a][2] += _norm(gm.get(a)) is not None
        pa = [_norm(a.substance) for a in (out.allergies if out is not None else ())]
        ga = [_norm(a) for a in g["allergies"]]
        tp = len([a for a in pa if a in ga])
        counts["allergy"][0] += tp
        counts["allergy"][1] += len(pa) - tp
        counts["allergy"][2] += len([a for a in ga if a not in pa])
    out_: dict[str, Any] = {k: _prf(*v) for k, v in counts.items()}
    tot = [sum(counts[a][i] for a in ATTRIBUTES if a != "status") for i in range(3)]
    out_["attributes_micro"] = _prf(*tot)
    return out_


def bc5cdr_chemicals(data_dir: str | Path | None = None, limit: int | None = None) -> list[tuple[str, str, tuple]]:
    """``(id, sentence text, gold chemical spans)`` of BC5CDR devel (sentences without chemicals too)."""
    from medslm.evals.datasets import read_bc5cdr

    return [(s.id, s.text, tuple((a, b) for a, b, t in s.spans() if t == "Chemical"))
            for s in read_bc5cdr(data_dir, "devel", limit=limit)]


def drug_recall(records: Sequence[tuple[str, str, tuple]], outputs: Sequence[Any]) -> dict[str, Any]:
    """Lenient / strict recall of gold chemical spans by predicted medications and allergies."""
    n_gold = hit_l = hit_s = n_pred = pred_hit = 0
    for (_, _, gold), out in zip(records, outputs, strict=True):
        spans = [(m.start, m.end) for m in out.medications] + [(a.start, a.end) for a in out.allergies]
        n_gold += len(gold)
        n_pred += len(spans)
        hit_l += sum(any(s < ge and gs < e for s, e in spans) for gs, ge in gold)
        hit_s += sum((gs, ge) in spans for gs, ge in gold)
        pred_hit += sum(any(s < ge and gs < e for gs, ge in gold) for s, e in spans)
    return {"gold_chemicals": n_gold, "predicted": n_pred,
            "recall_lenient": round(hit_l / n_gold, 4) if n_gold else 0.0,
            "recall_strict": round(hit_s / n_gold, 4) if n_gold else 0.0,
            "precision_lenient_vs_chemical": round(pred_hit / n_pred, 4) if n_pred else 0.0}


def sample_latency(agent: Any, n: int | None = None) -> dict[str, Any]:
    """Wall time of ``agent.run`` on the bundled sample notes (first call separately)."""
    from medslm.samples import load_samples

    notes = load_samples(n)
    t0 = time.perf_counter()
    agent.run(notes[0], {})
    first = time.perf_counter() - t0
    times, calls = [], []
    for note in notes:
        t0 = time.perf_counter()
        r = agent.run(note, {})
        times.append(time.perf_counter() - t0)
        calls.append(r.signals.get("slm_calls", 0.0))
    times.sort()
    return {"notes": len(times), "first_call_s": round(first, 2), "p50_s": round(statistics.median(times), 3),
            "p95_s": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
            "slm_calls_per_note": round(sum(calls) / len(calls), 2)}


def evaluate_medication(data_dir: str | Path | None = None, *, limit: int | None = None,
                        modes: Sequence[str] = MODES, bc5cdr_limit: int | None = 500,
                        slm_bc5cdr_limit: int = 60, latency: bool = True, model: Any = "embedded") -> dict[str, Any]:
    """Every figure of the module docstring, per mode (``rules`` needs no model).

    ``limit`` caps the attribute sentences; ``bc5cdr_limit`` the BC5CDR sentences of the rules and
    hybrid runs (hybrid only adds attributes, so its drug recall is the rules'); ``slm_bc5cdr_limit``
    those of the SLM-only run, one model call per candidate.
    """
    from medslm.agents.medication import MedicationAgent
    from medslm.records import Note

    attr = read_attribute_set()[:limit]
    out: dict[str, Any] = {"attribute_set": {"sentences": len(attr), "split": "test (written, never tuned on)"},
                           "bc5cdr": {"split": "devel"}, "latency": {}}
    chem = bc5cdr_chemicals(data_dir, limit=bc5cdr_limit)
    for mode in modes:
        agent = MedicationAgent(model if mode != "rules" else None, mode=mode)  # type: ignore[arg-type]
        preds = [agent.run(Note(id=r["id"], text=r["text"]), {}).output for r in attr]
        out["attribute_set"][mode] = score_attributes(attr, preds)
        recs = chem if mode != "slm" else chem[:slm_bc5cdr_limit]
        outs = [agent.run(Note(id=i, text=t), {}).output for i, t, _ in recs]
        out["bc5cdr"][mode] = {"sentences": len(recs), **drug_recall(recs, outs)}
        if latency:
            out["latency"][mode] = sample_latency(agent)
    return out


# ----------------------------------------------------------------------------- the harness's probe task
def _load_probe(data_dir: Path, n: int) -> list[tuple[str, str, Any]]:
    return [r for r in bc5cdr_chemicals(data_dir, limit=4 * n) if r[2]][:n]


def _probe_pred(review: Any) -> Any:
    result = review.results.get("medication")
    if result is None:
        return None
    out = result.output
    return tuple((m.start, m.end) for m in out.medications) + tuple((a.start, a.end) for a in out.allergies)


def _probe_score(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    n = hit = 0
    for g, p in zip(golds, preds, strict=True):
        n += len(g)
        hit += sum(any(s < ge and gs < e for s, e in (p or ())) for gs, ge in g)
    return {"recall_lenient": hit / n if n else 0.0}


def _probe_units(review: Any, gold: Any) -> list[tuple[float, bool]]:
    result = review.results.get("medication")
    if result is None:
        return []
    return [(m.confidence, any(m.start < ge and gs < m.end for gs, ge in gold)) for m in result.output.medications]


#: ``medslm eval --task medication``: the probe on BC5CDR devel, and :func:`evaluate_medication`.
MEDICATION_TASK = TaskSpec("medication", "medication", "BC5CDR devel (chemical mentions)", "medslm.evals.medication",
                           "evaluate_medication", "recall_lenient", _load_probe, _probe_pred, _probe_score,
                           _probe_units, rules_agent={"model": None, "mode": "rules"})


__all__ = ["MEDICATION_TASK", "MODES", "bc5cdr_chemicals", "drug_recall", "evaluate_medication", "read_attribute_set",
           "sample_latency", "score_attributes"]
