"""Write an evaluation out: ``report.md`` (headline table, per-task tables, plots), ``results.json``, PNGs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["headline_rows", "markdown", "write_report"]

_COST_COLS = (("tokens_in_per_note", "tokens in/note", "{:.0f}"), ("tokens_out_per_note", "tokens out/note", "{:.1f}"),
              ("latency_ms_p50", "p50 ms", "{:.0f}"), ("notes_per_s", "notes/s", "{:.2f}"),
              ("escalation_share", "escalated", "{:.0%}"), ("review_share", "to review", "{:.0%}"))


def _fmt(x: Any, spec: str = "{:.3f}") -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int) and spec == "{:.3f}":
        return str(x)
    if isinstance(x, int | float):
        return spec.format(x)
    return "" if x is None else str(x)


def headline_rows(result: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per task and system: the headline metric with its 95 % CI, n, cost, escalation, ECE."""
    rows = []
    for name, task in result.get("tasks", {}).items():
        h = task.get("headline", "")
        for system, e in task.get("systems", {}).items():
            row = {"task": name, "system": system, "metric": h}
            if "metrics" not in e:
                row.update({"quality": "-", "note": e.get("skipped", "")})
                rows.append(row)
                continue
            lo, hi = e.get("ci", {}).get(h, (None, None))
            ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
            row["quality"] = f"{e['metrics'].get(h, 0.0):.3f}{ci}"
            row["n"] = str(e.get("n", ""))
            for key, _, spec in _COST_COLS:
                row[key] = _fmt(e.get("cost", {}).get(key), spec)
            row["ece"] = _fmt(e.get("ece")) if e.get("ece") is not None else "-"
            notes = []
            if e.get("cost", {}).get("failed"):
                notes.append(f"{e['cost']['failed']} failed")
            if e.get("assumption"):
                notes.append("reviewed = corrected")
            row["note"] = "; ".join(notes)
            rows.append(row)
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows]
    return "\n".join(out)


def headline_table(result: Mapping[str, Any]) -> str:
    cols = [("task", "task"), ("system", "system"), ("metric", "metric"), ("quality", "quality [95% CI]"),
            ("n", "n"), *[(k, label) for k, label, _ in _COST_COLS], ("ece", "ECE"), ("note", "note")]
    rows = headline_rows(result)
    return _table([c[1] for c in cols], [[r.get(k, "") for k, _ in cols] for r in rows])


def _flatten(d: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if isinstance(d, Mapping):
        if depth >= 3:
            return []  # deeper breakdowns (per type, per source) stay in the JSON
        out = []
        for k, v in d.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    if isinstance(d, list) and (len(d) > 8 or any(isinstance(x, Mapping | list) for x in d)):
        return []  # long or nested lists (curves, per-item data) stay in the JSON
    return [(prefix, d)]


def _is_row(v: Any) -> bool:
    return isinstance(v, Mapping) and sum(isinstance(x, int | float) and not isinstance(x, bool) for x in v.values()) >= 2


def _system_tables(figs: Any, prefix: str = "", depth: int = 0) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """Find tables of systems (a mapping with two or more children of numeric figures) in a task's figures."""
    if not isinstance(figs, Mapping) or depth > 2:
        return [], figs
    rows = {k: v for k, v in figs.items() if _is_row(v)}
    tables: list[tuple[str, dict[str, Any]]] = []
    rest: dict[str, Any] = {}
    if len(rows) >= 2:
        tables.append((prefix, rows))
        rest = {k: v for k, v in figs.items() if k not in rows}
    else:
        rest = dict(figs)
    for k in list(rest):
        sub, left = _system_tables(rest[k], f"{prefix}.{k}" if prefix else str(k), depth + 1)
        if sub:
            tables += sub
            rest[k] = left
    return tables, rest


def _task_eval_section(te: Mapping[str, Any]) -> str:
    status = te.get("status")
    if status != "ok":
        why = te.get("error", "")
        return f"Task evaluation `{te.get('function', '')}`: **{status}** {why}".rstrip()
    figs = te.get("figures", {})
    lines = [f"Task evaluation `{te['function']}` ({te.get('seconds', 0):.0f} s):", ""]
    tables, rest = _system_tables(figs)
    for title, table in tables:
        cols: list[str] = []
        for v in table.values():
            cols += [k for k, x in v.items() if isinstance(x, int | float) and not isinstance(x, bool) and k not in cols]
        if title:
            lines.append(f"`{title}`:")
            lines.append("")
        lines.append(_table(["system", *cols], [[str(s), *[_fmt(v.get(c)) for c in cols]] for s, v in table.items()]))
        lines.append("")
    flat = [(k, v) for k, v in _flatten(rest) if v is not None and (not isinstance(v, str) or len(v) < 160)]
    if flat:
        shown = flat[:60]
        lines.append(_table(["figure", "value"], [[k, _fmt(v)] for k, v in shown]))
        if len(flat) > len(shown):
            lines.append(f"\n({len(flat) - len(shown)} more figures in results.json)")
    return "\n".join(lines)


def markdown(result: Mapping[str, Any], plots: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The Markdown report of an evaluation result (from :func:`medslm.evals.harness.run_eval`)."""
    meta = result.get("meta", {})
    esc = meta.get("escalation_model") or "none configured (escalations go to human review)"
    lines = [
        "# medslm evaluation",
        "",
        f"{meta.get('created', '')} · tasks: {', '.join(meta.get('tasks', []))} · limit {meta.get('limit')} · "
        f"probe {meta.get('probe')} items per system · {meta.get('seconds', 0)} s on {meta.get('cpus')} CPUs · "
        f"config {meta.get('config_hash', '')}",
        "",
        f"Models: {', '.join(f'{k}={v}' for k, v in meta.get('models', {}).items())}; escalation: {esc}.",
        "",
        "## Headline: quality next to cost",
        "",
        "Each system ran on the same probe items. `rules`: the agent without a language model; `slm`: the "
        "small model's raw answers; `llm`: the escalation model alone; `cascade`: SLM answers with escalated "
        "results answered by the LLM and results routed to review counted as corrected by the reviewer "
        "(so its quality is an upper bound, paid for by the review share). Intervals: 95 % percentile "
        "bootstrap over items. ECE: over the agent's confidence units (codes, entities, notes).",
        "",
        headline_table(result),
        "",
    ]
    for name, task in result.get("tasks", {}).items():
        lines += [f"## {name}: {task.get('dataset', '')}", ""]
        lines.append(_task_eval_section(task.get("task_eval", {})))
        lines.append("")
        systems = task.get("systems", {})
        scored = {s: e for s, e in systems.items() if "metrics" in e}
        if scored:
            cols: list[str] = []
            for e in scored.values():
                cols += [k for k in e["metrics"] if k not in cols]
            lines += ["Probe metrics per system:", "",
                      _table(["system", *cols], [[s, *[_fmt(e["metrics"].get(c)) for c in cols]] for s, e in scored.items()]),
                      ""]
            ex = [f"{s}: {e['failure_example']}" for s, e in scored.items() if e.get("failure_example")]
            if ex:
                lines += ["Failures (first reason per system): " + "; ".join(ex), ""]
        files = (plots or {}).get(name, {})
        for kind in ("pareto", "reliability"):
            if kind in files:
                lines += [f"![{name} {kind}]({files[kind]})", ""]
    lines += ["All numbers: `results.json`."]
    return "\n".join(lines) + "\n"


def write_report(result: Mapping[str, Any], out: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``results.json``, the PNG plots and ``report.md`` under ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    plot_files: dict[str, dict[str, str]] = {}
    if plots:
        from medslm.evals.plots import write_plots

        plot_files = write_plots(result, out)
        for task, got in plot_files.items():
            for kind, fname in got.items():
                files[f"{kind}_{task}"] = out / fname
    data = {**result, "plots": plot_files}
    (out / "results.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    files["json"] = out / "results.json"
    (out / "report.md").write_text(markdown(result, plot_files), encoding="utf-8")
    files["markdown"] = out / "report.md"
    return files
