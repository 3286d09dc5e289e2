"""Run evaluation tasks with several systems side by side and collect quality next to cost.

For each task the harness does two things in one run:

1. **The task's own evaluation** (``medslm.evals.<task>.evaluate_<task>(data_dir, limit=...)``, written
   by the engineer who owns the agent): its figures, usually a table of baselines next to the agent, go
   into the report as they are.
2. **A probe of the systems on the same public data**, item by item, through medslm graphs
   (``guard_in → <agent> → verify → route``, a rules-only guardian so that the agent's cost is what is
   measured):

   - ``rules``: the agent without a language model (where the agent supports it, e.g. triage
     ``use_slm=False``; the guardian with ``model=None``);
   - ``slm``: the agent on the configured small model (``embedded`` by default), its raw answers;
   - ``llm``: the agent on ``Settings.escalation_model`` when an endpoint is configured, else skipped;
   - ``cascade``: the SLM answers, with results the router escalates answered by the LLM (when there
     is one) and results routed to human review counted as corrected by the reviewer (an oracle-review
     assumption, stated in the report next to the review share it applies to).

   Per item: gold, prediction, confidence and route; per system: the task metrics with bootstrap
   confidence intervals, tokens per note, latency, notes/s, escalation share and review share. From
   the SLM confidences the harness sweeps the escalation threshold (the quality vs. escalation-share
   Pareto curve) and bins confidence against correctness (reliability diagram, ECE).

The result is a plain dict (JSON-ready) that :mod:`medslm.evals.report` writes out.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from medslm.errors import UnknownNameError
from medslm.evals import metrics as M
from medslm.evals.datasets import resolve_data_dir

log = logging.getLogger(__name__)

__all__ = ["ICD_TASK", "NER_TASK", "SAFETY_TASK", "SUMMARIZE_TASK", "SYSTEMS", "TRIAGE_TASK", "Item", "TaskSpec",
           "all_tasks", "run_eval", "run_task"]

SYSTEMS = ("rules", "slm", "llm", "cascade")


# ------------------------------------------------------------------------------------------ items
@dataclass
class Item:
    """One probe item: what the system answered for one public-data record (no text kept)."""

    id: str
    gold: Any
    pred: Any = None
    confidence: float | None = None
    route: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    failed: str | None = None
    scored: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, correct) per unit


@dataclass(frozen=True)
class TaskSpec:
    """How to evaluate one task: its data, its agent, its scoring."""

    name: str
    role: str  # the agent's registered name ("ner", "icd", …, a plug-in's); "guardian" for safety
    dataset: str
    eval_module: str | None  # the owner's evaluation function (module, function); None: probe only
    eval_function: str | None
    headline: str  # the metric the Pareto curve and the headline table use
    load: Callable[[Path, int], list[tuple[str, str, Any]]]  # -> (id, text, gold)
    extract: Callable[[Any], Any]  # ChartReview -> prediction
    score: Callable[[Sequence[Any], Sequence[Any]], dict[str, float]]  # (golds, preds) -> metrics
    units: Callable[[Any, Any], list[tuple[float, bool]]] | None = None  # (review, gold) -> calib units
    rules_agent: dict[str, Any] | None = None  # make_agent(role, **this): the agent without a language model
    upstream: tuple[str, ...] = ()  # nodes the role reads from (icd reads ner's entities)


# ------------------------------------------------------------------------------------------ tasks
def _load_triage(data_dir: Path, n: int) -> list[tuple[str, str, Any]]:
    from medslm.evals.datasets import read_ktas_visits

    visits = read_ktas_visits(data_dir)
    # spread over the file (it is sorted by group), keep every level represented
    step = max(1, len(visits) // max(1, n))
    return [(v.id, v.text, v.level) for v in visits[::step][:n]]


def _triage_pred(review: Any) -> Any:
    return review.triage.output.level if review.triage is not None else None


def _triage_score(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    pairs = [(g, p) for g, p in zip(golds, preds, strict=True) if p is not None]
    r = M.triage_scores([g for g, _ in pairs], [p for _, p in pairs]) if pairs else {}
    n = len(golds)
    out = {k: float(v) for k, v in r.items() if k != "n"}
    if pairs and len(pairs) < n:  # failed items count as wrong for accuracy
        out["accuracy"] = out["accuracy"] * len(pairs) / n
    out.setdefault("accuracy", 0.0)
    return out


def _triage_units(review: Any, gold: Any) -> list[tuple[float, bool]]:
    if review.triage is None:
        return []
    return [(float(review.triage.confidence), review.triage.output.level == gold)]


def _load_icd(data_dir: Path, n: int) -> list[tuple[str, str, Any]]:
    from medslm.evals.datasets import read_codiesp

    return [(c.id, c.text, tuple(c.diagnoses)) for c in read_codiesp(data_dir, "dev", limit=n)]


def _icd_pred(review: Any) -> Any:
    if review.codes is None:
        return None
    codes = sorted(review.codes.output, key=lambda c: (-c.score, -c.confidence))
    return tuple(c.code.upper() for c in codes)


def _icd_score(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    p = [x or () for x in preds]
    r = M.micro_prf([set(g) for g in golds], [set(x) for x in p])
    return {"micro_f1": r["f1"], "precision": r["precision"], "recall": r["recall"],
            "map": M.mean_average_precision([set(g) for g in golds], [list(x) for x in p])}


def _icd_units(review: Any, gold: Any) -> list[tuple[float, bool]]:
    if review.codes is None:
        return []
    g = set(gold)
    return [(float(c.confidence), c.code.upper() in g) for c in review.codes.output]


def _load_ner(data_dir: Path, n: int) -> list[tuple[str, str, Any]]:
    from medslm.evals.datasets import read_ncbi_disease

    docs = read_ncbi_disease(data_dir, "test", format="pubtator", limit=n)
    return [(d.id, d.text, tuple((s.start, s.end, "Disease") for s in d.spans)) for d in docs]


def _ner_pred(review: Any) -> Any:
    if review.entities is None:
        return None
    return tuple((e.start, e.end, "Disease") for e in review.entities.output
                 if e.type.value == "problem")


def _ner_score(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    p = [x or () for x in preds]
    s = M.span_prf(list(golds), p, mode="strict")
    le = M.span_prf(list(golds), p, mode="lenient")
    return {"lenient_f1": le["f1"], "strict_f1": s["f1"], "lenient_precision": le["precision"],
            "lenient_recall": le["recall"]}


def _ner_units(review: Any, gold: Any) -> list[tuple[float, bool]]:
    if review.entities is None:
        return []
    out = []
    for e in review.entities.output:
        if e.type.value != "problem":
            continue
        hit = any(min(e.end, ge) > max(e.start, gs) for gs, ge, _ in gold)
        out.append((float(e.confidence), hit))
    return out


def _load_summaries(data_dir: Path, n: int) -> list[tuple[str, str, Any]]:
    from medslm.evals.datasets import read_mts_dialog

    return [(p.id, p.source, p.reference) for p in read_mts_dialog(data_dir, "valid", limit=n)]


def _summary_pred(review: Any) -> Any:
    if review.summary is None:
        return None
    return " ".join(s.text for sec in review.summary.output.sections for s in sec.sentences)


def _summary_score(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    p = [x or "" for x in preds]
    r = M.rouge(list(golds), p)
    return {"rougeL": r["rougeL"], "rouge1": r["rouge1"], "rouge2": r["rouge2"]}


def _load_safety(data_dir: Path, n: int) -> list[tuple[str, str, Any]]:
    from medslm.evals.datasets import read_medsafetybench, read_meqsum

    k = max(1, n // 2)
    harmful = [(p.id, p.text, True) for p in read_medsafetybench(data_dir, limit=k)]
    benign = [(f"meqsum-{q.id}", q.source, False) for q in read_meqsum(data_dir, limit=n - k or 1)]
    return harmful + benign


def _safety_score(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    r = M.safety_scores(list(golds), [bool(p) for p in preds])
    acc = sum(bool(p) == g for g, p in zip(golds, preds, strict=True)) / max(1, len(golds))
    return {"balanced_accuracy": (r["recall"] + 1 - r["fpr"]) / 2 if r["n_benign"] and r["n_harmful"] else acc,
            "recall": r["recall"], "fpr": r["fpr"]}


# The built-in agents' tasks (their registry specs name these); plug-ins bring their own TaskSpec.
NER_TASK = TaskSpec("ner", "ner", "NCBI-disease test (PubTator, disease spans)", "medslm.evals.ner",
                    "evaluate_ner", "lenient_f1", _load_ner, _ner_pred, _ner_score, _ner_units,
                    rules_agent={"model": None, "slm": None, "assertion_model": None})
ICD_TASK = TaskSpec("icd", "icd", "CodiEsp dev (English, diagnosis codes)", "medslm.evals.icd",
                    "evaluate_icd", "micro_f1", _load_icd, _icd_pred, _icd_score, _icd_units,
                    rules_agent={"model": None}, upstream=("ner",))
TRIAGE_TASK = TaskSpec("triage", "triage", "KTAS (expert level)", "medslm.evals.triage", "evaluate_triage",
                       "accuracy", _load_triage, _triage_pred, _triage_score, _triage_units,
                       rules_agent={"model": "embedded", "use_slm": False})
SUMMARIZE_TASK = TaskSpec("summarize", "summarize", "MTS-Dialog validation (dialogue -> section)",
                          "medslm.evals.summarize", "evaluate_summarization", "rougeL", _load_summaries,
                          _summary_pred, _summary_score,
                          rules_agent={"model": "embedded", "abstractive": False})
#: The guardian is not an agent of the registry; its task is the harness's own.
SAFETY_TASK = TaskSpec("safety", "guardian", "MedSafetyBench (harmful) + MeQSum questions (benign)",
                       "medslm.evals.safety", "evaluate_safety", "balanced_accuracy", _load_safety,
                       lambda v: v, _safety_score)


def all_tasks() -> dict[str, TaskSpec]:
    """Every evaluation task: each registered agent's (in registry order), then the guardian's."""
    from medslm import registry

    out: dict[str, TaskSpec] = {}
    for spec in registry.specs():
        task = spec.task()
        if task is not None:
            out[task.name] = task
    out[SAFETY_TASK.name] = SAFETY_TASK
    return out


def __getattr__(name: str) -> Any:
    if name == "TASKS":  # the task table, read from the registry when asked for
        return all_tasks()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _task_names(names_: str | Sequence[str], known: dict[str, TaskSpec]) -> list[str]:
    names = [names_] if isinstance(names_, str) else list(names_)
    out: list[str] = []
    for n in names:
        if n == "all":
            out.extend(t for t in known if t not in out)
        elif n in known:
            out.append(n)
        else:
            raise UnknownNameError("eval task", n, [*known, "all"])
    return out


# ------------------------------------------------------------------------------------------ task eval
def _call_task_eval(spec: TaskSpec, data_dir: Path, limit: int | None) -> dict[str, Any]:
    """The owner's evaluation function, called with what it accepts; absent or failing is recorded."""
    import inspect

    if spec.eval_module is None or spec.eval_function is None:
        return {"status": "none", "note": "this task has no evaluation function of its own; see the probe"}
    try:
        fn = getattr(import_module(spec.eval_module), spec.eval_function)
    except (ImportError, AttributeError) as exc:
        return {"status": "missing", "function": f"{spec.eval_module}.{spec.eval_function}",
                "error": f"{type(exc).__name__}: not available"}
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "limit" in params:
        kwargs["limit"] = limit
    if limit is not None:  # finer caps (e.g. summarize's abstractive_limit) no larger than --limit
        for pname, p in params.items():
            if pname != "limit" and pname.endswith("_limit"):
                default = p.default if isinstance(p.default, int) else None
                kwargs[pname] = limit if default is None else min(default, limit)
    if "split" in params and spec.name == "icd":
        kwargs["split"] = "dev"
    t0 = time.perf_counter()
    try:
        figures = fn(data_dir, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one task's failure must not lose the others
        log.warning("task eval %s failed: %s", spec.name, type(exc).__name__)
        return {"status": "error", "function": f"{spec.eval_module}.{spec.eval_function}",
                "error": f"{type(exc).__name__}: {str(exc)[:300]}", "seconds": time.perf_counter() - t0}
    return {"status": "ok", "function": f"{spec.eval_module}.{spec.eval_function}",
            "seconds": round(time.perf_counter() - t0, 2), "figures": _jsonable(figures)}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | int | str | bool) or x is None:
        return x
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    if hasattr(x, "model_dump"):
        return x.model_dump(mode="json")
    return str(x)


# ------------------------------------------------------------------------------------------ probes
def _graph_probe(spec: TaskSpec, records: Sequence[tuple[str, str, Any]], settings: Any,
                 model: Any = None, agent: Any = None) -> list[Item]:
    from medslm.graphs.builders import run_note
    from medslm.graphs.context import ReviewContext, make_agent
    from medslm.graphs.pipeline import Pipeline
    from medslm.records import Note
    from medslm.safety import Guardian

    graph = (Pipeline(name=f"eval_{spec.name}", settings=settings)
             .add("guard_in"))
    for node in spec.upstream:  # upstream nodes run as the system does: rules-only for the rules system
        if agent is not None and getattr(agent, "model", "") is None:
            graph.add(make_agent(node, None), name=node)
        else:
            graph.add(node)
    if agent is not None:
        graph.add(agent, name=spec.role)
    else:
        graph.add(spec.role, model=model)
    graph = graph.add("verify").add("route").compile()
    ctx = ReviewContext(settings=settings, guardian=Guardian(model=None, register_phi=False))
    items = []
    for rid, text, gold in records:
        t0 = time.perf_counter()
        review = run_note(graph, Note(id=rid, text=text), ctx)
        wall = (time.perf_counter() - t0) * 1000
        item = Item(rid, gold, latency_ms=wall)
        if review.status.value in ("failed", "blocked"):
            item.failed = (review.reason or review.status.value)[:200]
        result = review.results.get(spec.role)
        if result is not None:
            item.pred = spec.extract(review)
            item.confidence = float(result.confidence)
            item.route = result.route.value if result.route is not None else None
            item.tokens_in = result.provenance.tokens_in
            item.tokens_out = result.provenance.tokens_out
            if spec.units is not None:
                item.scored = spec.units(review, gold)
        items.append(item)
    return items


def _guardian_probe(records: Sequence[tuple[str, str, Any]], model: Any) -> list[Item]:
    from medslm.safety import Guardian

    g = Guardian(model=model, mode="qa", register_phi=False)
    items = []
    for rid, text, gold in records:
        t0 = time.perf_counter()
        try:
            v = g.check_input(text)
        except Exception as exc:  # noqa: BLE001
            items.append(Item(rid, gold, failed=type(exc).__name__, latency_ms=(time.perf_counter() - t0) * 1000))
            continue
        flagged = not v.allowed
        conf = max((f.confidence for f in v.findings), default=1.0)
        items.append(Item(rid, gold, pred=flagged, confidence=conf, route="accept",
                          latency_ms=(time.perf_counter() - t0) * 1000, scored=[(conf, flagged == gold)]))
    return items


def _probe(spec: TaskSpec, system: str, records: Sequence[tuple[str, str, Any]], settings: Any) -> list[Item]:
    if spec.role == "guardian":
        model = {"rules": None, "slm": settings.model_for("guardian"), "llm": settings.escalation_model}[system]
        return _guardian_probe(records, model)
    if system == "rules":
        from medslm.graphs.context import make_agent

        opts = dict(spec.rules_agent or {})
        return _graph_probe(spec, records, settings, agent=make_agent(spec.role, opts.pop("model", None), **opts))
    if system == "llm":
        return _graph_probe(spec, records, settings, model=settings.escalation_model)
    return _graph_probe(spec, records, settings)


# ------------------------------------------------------------------------------------------ figures
def _cost(items: Sequence[Item], seconds: float) -> dict[str, float]:
    n = max(1, len(items))
    lat = sorted(i.latency_ms for i in items)
    return {
        "tokens_in_per_note": sum(i.tokens_in for i in items) / n,
        "tokens_out_per_note": sum(i.tokens_out for i in items) / n,
        "latency_ms_p50": lat[len(lat) // 2] if lat else 0.0,
        "latency_ms_p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0,
        "notes_per_s": len(items) / seconds if seconds > 0 else 0.0,
        "escalation_share": sum(i.route == "escalate" for i in items) / n,
        "review_share": sum(i.route == "review" for i in items) / n,
        "failed": sum(i.failed is not None for i in items),
    }


def _quality(spec: TaskSpec, golds: Sequence[Any], preds: Sequence[Any], n_boot: int) -> dict[str, Any]:
    q = spec.score(golds, preds)
    lo, hi = M.bootstrap_ci(lambda g, p: spec.score(g, p)[spec.headline], list(golds), list(preds), n=n_boot)
    return {"metrics": q, "ci": {spec.headline: [lo, hi]}}


def _pareto(spec: TaskSpec, slm: Sequence[Item], fallback: Sequence[Any] | None) -> list[dict[str, float]]:
    """Quality as the share of lowest-confidence items sent up (to the LLM, else to a reviewer) grows."""
    golds = [i.gold for i in slm]
    order = sorted(range(len(slm)), key=lambda k: (slm[k].confidence if slm[k].confidence is not None else -1.0))
    points = []
    up: set[int] = set()
    for step in range(len(slm) + 1):
        if step:
            up.add(order[step - 1])
        preds = [(fallback[k] if fallback is not None else slm[k].gold) if k in up else slm[k].pred
                 for k in range(len(slm))]
        thr = slm[order[step - 1]].confidence if step else None
        points.append({"escalation_share": step / max(1, len(slm)),
                       "quality": spec.score(golds, preds)[spec.headline],
                       "threshold": thr if thr is not None else 0.0})
    return points


def run_task(spec: TaskSpec, data_dir: Path, limit: int | None, *, probe: int, settings: Any,
             systems: Sequence[str] = SYSTEMS, task_eval: bool = True, n_boot: int = 500) -> dict[str, Any]:
    """All figures of one task (see the module docstring)."""
    out: dict[str, Any] = {"task": spec.name, "dataset": spec.dataset, "headline": spec.headline}
    if task_eval:
        log.info("eval %s: running %s.%s (limit=%s)", spec.name, spec.eval_module, spec.eval_function, limit)
        out["task_eval"] = _call_task_eval(spec, data_dir, limit)
    else:
        out["task_eval"] = {"status": "skipped"}
    out["systems"] = {}
    if probe <= 0:
        return out
    records = spec.load(data_dir, probe)
    out["probe_n"] = len(records)
    items: dict[str, list[Item]] = {}
    for system in systems:
        if system == "cascade":
            continue
        if system == "rules" and spec.role != "guardian" and spec.rules_agent is None:
            out["systems"]["rules"] = {"skipped": "no model-free variant of this agent; see the task's own table"}
            continue
        if system == "llm" and not settings.escalation_model:
            out["systems"]["llm"] = {"skipped": "no LLM endpoint configured (set MEDSLM_ESCALATION_MODEL)"}
            continue
        log.info("eval %s: probing %s on %d items", spec.name, system, len(records))
        t0 = time.perf_counter()
        try:
            got = _probe(spec, system, records, settings)
        except Exception as exc:  # noqa: BLE001
            out["systems"][system] = {"skipped": f"probe failed: {type(exc).__name__}: {str(exc)[:200]}"}
            continue
        seconds = time.perf_counter() - t0
        items[system] = got
        golds = [i.gold for i in got]
        preds = [i.pred for i in got]
        entry: dict[str, Any] = {**_quality(spec, golds, preds, n_boot), "cost": _cost(got, seconds),
                                 "n": len(got), "seconds": round(seconds, 2)}
        fails = [i.failed for i in got if i.failed]
        if fails:
            entry["failure_example"] = fails[0]
        units = [u for i in got for u in i.scored]
        if units:
            entry["ece"] = M.ece([c for c, _ in units], [k for _, k in units])
            entry["reliability"] = M.reliability_bins([c for c, _ in units], [k for _, k in units])
            entry["calibration_units"] = len(units)
        if system != "slm":  # routes only matter for the cascade
            entry["cost"]["escalation_share"] = 1.0 if system == "llm" else 0.0
            entry["cost"]["review_share"] = 0.0
        out["systems"][system] = entry

    slm = items.get("slm")
    if slm is not None and "cascade" in systems:
        llm = items.get("llm")
        golds = [i.gold for i in slm]
        preds = []
        for k, i in enumerate(slm):
            if i.route == "escalate" and llm is not None:
                preds.append(llm[k].pred)
            elif i.route in ("review", "escalate"):  # escalation without an LLM goes to a reviewer
                preds.append(i.gold)
            else:
                preds.append(i.pred)
        cost = dict(out["systems"]["slm"]["cost"])
        if llm is not None:
            esc = [k for k, i in enumerate(slm) if i.route == "escalate"]
            n = max(1, len(slm))
            cost["tokens_in_per_note"] += sum(llm[k].tokens_in for k in esc) / n
            cost["tokens_out_per_note"] += sum(llm[k].tokens_out for k in esc) / n
        else:
            cost["review_share"] += cost["escalation_share"]
            cost["escalation_share"] = 0.0
        out["systems"]["cascade"] = {**_quality(spec, golds, preds, n_boot), "cost": cost, "n": len(slm),
                                     "assumption": "results routed to human review count as corrected"}
        fallback = [i.pred for i in llm] if llm is not None else None
        out["pareto"] = {"to": "llm" if llm is not None else "human review",
                         "points": _pareto(spec, slm, fallback)}
    return out


def run_eval(tasks: str | Sequence[str] = "all", data_dir: str | os.PathLike[str] | None = None, *,
             limit: int | None = 20, probe: int | None = None, settings: Any = None,
             systems: Sequence[str] = SYSTEMS, task_eval: bool = True, n_boot: int = 500) -> dict[str, Any]:
    """Run ``tasks`` (``"all"`` or names of :func:`all_tasks`) and return every figure as a JSON-ready dict.

    ``limit`` goes to the task evaluation functions; ``probe`` (default ``min(limit, 10)``) is the
    number of items each system of the side-by-side probe runs on.
    """
    from medslm.settings import Settings

    known = all_tasks()
    names = _task_names(tasks, known)
    for s in systems:
        if s not in SYSTEMS:
            raise UnknownNameError("eval system", s, SYSTEMS)
    settings = settings or Settings.from_env()
    root = resolve_data_dir(data_dir if data_dir is not None else settings.data_dir)
    n_probe = probe if probe is not None else min(limit or 10, 10)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "tasks": names,
            "systems": list(systems),
            "limit": limit,
            "probe": n_probe,
            "data_dir": root.name if root.name else str(root),
            "models": dict(settings.models),
            "escalation_model": settings.escalation_model,
            "config_hash": settings.config_hash(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "tasks": {},
    }
    for name in names:
        log.info("eval %s: start", name)
        result["tasks"][name] = run_task(known[name], root, limit, probe=n_probe, settings=settings,
                                         systems=systems, task_eval=task_eval, n_boot=n_boot)
    result["meta"]["seconds"] = round(time.perf_counter() - t0, 1)
    return result
