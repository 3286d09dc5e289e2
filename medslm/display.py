"""How a :class:`medslm.ChartReview` looks: a readable terminal form and self-contained HTML for notebooks.

``ChartReview.__str__`` calls :func:`review_text`; ``ChartReview._repr_html_`` calls :func:`review_html`.
Both show the note text (it is the user's own display, not a log). Standard library only, so printing a
review never imports anything heavy.

Entities are highlighted as ``<mark class="medslm-ent" data-type=… data-assertion=… data-start=…
data-end=…>``; ``data-start``/``data-end`` are character offsets into the note, half-open.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from medslm import registry
from medslm.records import (
    AgentResult,
    CodeAssignment,
    Entity,
    SafetyVerdict,
    Span,
    Summary,
    TriageResult,
    bind,
)

if TYPE_CHECKING:
    from medslm.records import ChartReview

__all__ = [
    "codes_html",
    "codes_text",
    "entities_html",
    "entities_text",
    "highlight_note",
    "review_html",
    "review_text",
    "summary_html",
    "summary_text",
    "terminal_safe",
    "triage_html",
    "triage_text",
]

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0, 9), 11, 12, *range(14, 32), 127, *range(0x80, 0xA0))}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029", 0x202E: "\\u202e", 0x202D: "\\u202d"})


def terminal_safe(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``): ANSI sequences, carriage returns,
    C1 controls and bidi overrides in a note can neither restyle nor rewrite the terminal. Newlines and
    tabs stay; the text is meant for ``print`` or ``Console.print(..., markup=False)``."""
    return text.translate(_CONTROL)


_TYPE_COLOURS = {
    "problem": "#fde2e1",
    "medication": "#dff3e3",
    "test": "#e0ecfb",
    "procedure": "#f3e6fb",
    "anatomy": "#fff4cc",
}
_LEVEL_COLOURS = {1: "#b3261e", 2: "#e8710a", 3: "#f9ab00", 4: "#1e8e3e", 5: "#1a73e8"}

_CSS = """
.medslm-review{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.45;
  color:#202124;max-width:980px;border:1px solid #dadce0;border-radius:8px;padding:12px 16px;background:#fff}
.medslm-review h3{margin:0 0 6px 0;font-size:15px}
.medslm-review h4{margin:12px 0 4px 0;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#5f6368}
.medslm-review .medslm-note{white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;
  font-size:12.5px;background:#f8f9fa;border-radius:6px;padding:8px 10px;max-height:420px;overflow:auto}
.medslm-review mark.medslm-ent{border-radius:3px;padding:0 2px;color:inherit}
""" + "".join(
    f".medslm-review mark.medslm-ent[data-type='{t}'],.medslm-review .medslm-swatch[data-type='{t}']"
    f"{{background:{c}}}\n" for t, c in _TYPE_COLOURS.items()
) + """
.medslm-review mark.medslm-ent[data-assertion='negated']{text-decoration:line-through;opacity:.75}
.medslm-review mark.medslm-ent[data-assertion='possible']{border-bottom:2px dotted #5f6368}
.medslm-review mark.medslm-ent[data-assertion='historical']{font-style:italic}
.medslm-review mark.medslm-ent[data-assertion='family']{border-bottom:2px dashed #9334e6}
.medslm-review mark.medslm-ent[data-assertion='hypothetical']{border-bottom:2px dotted #e8710a}
.medslm-review mark.medslm-support{background:#fef7e0;border-bottom:1px solid #f9ab00}
.medslm-review table{border-collapse:collapse;margin:2px 0;font-size:12.5px}
.medslm-review td,.medslm-review th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left;vertical-align:top}
.medslm-review .medslm-badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;
  color:#fff;background:#5f6368;margin-right:4px}
.medslm-review .medslm-level{font-weight:600;color:#fff;border-radius:4px;padding:1px 8px}
.medslm-review .medslm-flag{display:inline-block;background:#fce8e6;color:#a50e0e;border-radius:10px;
  padding:0 8px;margin:1px 3px 1px 0;font-size:12px}
.medslm-review .medslm-muted{color:#5f6368}
.medslm-review .medslm-unsupported{color:#a50e0e}
.medslm-review .medslm-legend span{margin-right:8px}
.medslm-review .medslm-swatch{border-radius:3px;padding:0 4px}
"""


# ----------------------------------------------------------------------------------------- helpers
def _pct(x: float) -> str:
    return f"{x:.2f}"


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _agent_results(review: ChartReview) -> list[tuple[str, AgentResult[Any]]]:
    return list(review.results.items())


def _renderer(name: str, kind: str) -> Any:
    spec = registry.find(name)
    return spec.renderer(kind) if spec is not None else None


def _label(name: str) -> str:
    spec = registry.find(name)
    return spec.label if spec is not None else name


def _json_brief(value: Any, limit: int = 300) -> str:
    import json

    try:
        raw = json.dumps(value.model_dump(mode="json") if hasattr(value, "model_dump") else value, default=str)
    except (TypeError, ValueError):
        raw = repr(value)
    return raw if len(raw) <= limit else raw[: limit - 3] + "..."


def _output_json(output: Any) -> Any:
    if isinstance(output, list | tuple):
        return [o.model_dump(mode="json") if hasattr(o, "model_dump") else o for o in output]
    return output


def _cost(review: ChartReview) -> dict[str, float]:
    tin = tout = 0
    cost = 0.0
    for _, r in _agent_results(review):
        tin += r.provenance.tokens_in
        tout += r.provenance.tokens_out
        cost += r.provenance.cost
    return {"tokens_in": tin, "tokens_out": tout, "cost": cost, "latency_ms": review.latency_ms}


def _span_text(text: str | None, spans: Iterable[Span], limit: int = 3) -> list[str]:
    if text is None:
        return [f"[{s.start}:{s.end})" for s in list(spans)[:limit]]
    out = []
    for s in list(spans)[:limit]:
        frag = " ".join(text[s.start : s.end].split())
        out.append(frag if len(frag) <= 80 else frag[:77] + "...")
    return out


def _clean_spans(text: str, spans: Iterable[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Sort, clip to the text and drop overlaps (the earlier, then longer, span wins)."""
    out: list[tuple[int, int, Any]] = []
    last = 0
    for start, end, item in sorted(spans, key=lambda x: (x[0], -(x[1] - x[0]))):
        start, end = max(0, start), min(len(text), end)
        if end <= start or start < last:
            continue
        out.append((start, end, item))
        last = end
    return out


# ----------------------------------------------------------------------------------------- text form
def review_text(review: ChartReview) -> str:
    """A readable terminal form of a review (plain text; the note appears only as entity/evidence text)."""
    lines: list[str] = []
    head = f"ChartReview {review.note_id}  status={review.status.value}"
    if review.reason:
        head += f"  reason={review.reason}"
    lines.append(head)
    lines.append("=" * min(len(head), 100))
    text = review.text

    for name, result in _agent_results(review):
        render = _renderer(name, "text")
        if render is not None:
            lines.extend(render(result, text))
        else:
            lines.append(f"{_label(name)} (confidence {_pct(result.confidence)}): "
                         f"{_json_brief(_output_json(result.output))}")
    for label, verdict in (("Safety (input)", review.safety_in), ("Safety (output)", review.safety_out)):
        if verdict is not None:
            lines.extend(_verdict_text(label, verdict))
    lines.extend(_routes_text(review))
    if review.issues:
        lines.append("Issues: " + "; ".join(review.issues))
    if review.review_items:
        lines.append("Human review items: " + ", ".join(review.review_items))
    c = _cost(review)
    lines.append(
        f"Cost: {int(c['tokens_in'])} tokens in, {int(c['tokens_out'])} out, {c['cost']:.4f} cost units, "
        f"{c['latency_ms']:.0f} ms"
    )
    prov = _provenance_rows(review)
    if prov:
        lines.append("Provenance:")
        for row in prov:
            lines.append("  " + "  ".join(f"{k}={v}" for k, v in row.items() if v not in (None, "")))
    if review.config_hash:
        lines.append(f"config {review.config_hash}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- per agent
# The built-in agents' renderers; their AgentSpec (medslm.registry) names them. A renderer gets the
# agent's result and the note text (None when the review does not keep it).
def entities_text(result: AgentResult[list[Entity]], text: str | None) -> list[str]:
    ents: Sequence[Entity] = result.output
    lines = [f"Entities ({len(ents)}, confidence {_pct(result.confidence)}):"]
    for e in ents:
        concept = f"  -> {e.concepts[0].id} {e.concepts[0].label}" if e.concepts else ""
        lines.append(
            f"  [{e.start}:{e.end}) {e.text!r:30s} {e.type.value:10s} {e.assertion.value:12s} "
            f"conf {_pct(e.confidence)} ({e.source}){concept}"
        )
    return lines


def codes_text(result: AgentResult[list[CodeAssignment]], text: str | None) -> list[str]:
    codes: Sequence[CodeAssignment] = result.output
    lines = [f"Codes ({len(codes)}, confidence {_pct(result.confidence)}):"]
    for c in codes:
        ev = _span_text(text, c.evidence)
        evs = f"  evidence: {'; '.join(repr(x) for x in ev)}" if ev else ""
        bill = "" if c.billable else " (not billable)"
        lines.append(f"  {c.code:8s} {c.description}{bill}  conf {_pct(c.confidence)}{evs}")
    return lines


def triage_text(result: AgentResult[TriageResult], text: str | None) -> list[str]:
    t: TriageResult = result.output
    lines = [f"Triage: {t.scale} {t.level} (confidence {_pct(result.confidence)})"]
    if t.probabilities:
        probs = "  ".join(f"{k}:{v:.2f}" for k, v in sorted(t.probabilities.items()))
        lines.append(f"  probabilities {probs}")
    for f in t.red_flags:
        ev = _span_text(text, f.evidence)
        evs = f" evidence: {'; '.join(repr(x) for x in ev)}" if ev else ""
        det = f" - {f.detail}" if f.detail else ""
        lines.append(f"  RED FLAG {f.name} (level <= {f.max_level}){det}{evs}")
    if t.rationale:
        lines.append(f"  rationale: {t.rationale}")
    return lines


def summary_text(result: AgentResult[Summary], text: str | None) -> list[str]:
    s: Summary = result.output
    kind = "extractive" if s.extractive else "abstractive"
    lines = [f"Summary ({kind}, confidence {_pct(result.confidence)}):"]
    for sec in s.sections:
        if not sec.sentences:
            continue
        lines.append(f"  {sec.name}:")
        for sent in sec.sentences:
            mark = "" if sent.supported else f"  [UNSUPPORTED: {', '.join(sent.issues) or 'unverified'}]"
            lines.append(f"    - {sent.text}{mark}")
    return lines


def _verdict_text(label: str, v: SafetyVerdict) -> list[str]:
    out = [f"{label}: {'allowed' if v.allowed else 'BLOCKED'}; {len(v.findings)} findings, "
           f"{len(v.phi)} PHI spans, {len(v.fenced)} fenced"]
    for f in v.findings:
        out.append(f"  {f.severity.value:8s} {f.category}: {f.message}")
    return out


def _routes_text(review: ChartReview) -> list[str]:
    out = []
    for name, r in _agent_results(review):
        route = r.route.value if r.route is not None else "-"
        if r.provenance.escalated or (r.route is not None and r.route.value != "accept"):
            why = r.provenance.escalation_reason or "low confidence"
            out.append(f"  {name}: {route} (confidence {_pct(r.confidence)}) - {why}")
    if out:
        out.insert(0, "Routes / escalations:")
    else:
        out = ["Routes: all accepted locally (no escalation)"]
    return out


def _provenance_rows(review: ChartReview) -> list[dict[str, Any]]:
    rows = []
    for name, r in _agent_results(review):
        p = r.provenance
        rows.append({"agent": name, "model": p.model_id, "backend": p.backend,
                     "tokens": f"{p.tokens_in}/{p.tokens_out}", "latency_ms": f"{p.latency_ms:.0f}"})
    return rows


# ----------------------------------------------------------------------------------------- HTML form
def highlight_note(text: str, entities: Sequence[Entity] = (), support: Sequence[Span] = ()) -> str:
    """The note as escaped HTML with entities (and summary-support spans) wrapped in ``<mark>``."""
    ents = _clean_spans(text, ((e.start, e.end, e) for e in entities))
    taken = [(s, e) for s, e, _ in ents]
    sup = _clean_spans(
        text,
        ((s.start, s.end, s) for s in support
         if not any(s.start < e and s.end > b for b, e in taken)),  # entity marks win over support marks
    )
    marks = sorted(ents + sup, key=lambda x: x[0])
    parts: list[str] = []
    pos = 0
    for start, end, item in marks:
        if start < pos:
            continue
        parts.append(_esc(text[pos:start]))
        frag = _esc(text[start:end])
        if isinstance(item, Entity):
            title = f"{item.type.value}, {item.assertion.value}, conf {item.confidence:.2f}"
            if item.concepts:
                title += f", {item.concepts[0].id} {item.concepts[0].label}"
            parts.append(
                f'<mark class="medslm-ent" data-type="{_esc(item.type.value)}" '
                f'data-assertion="{_esc(item.assertion.value)}" data-start="{start}" data-end="{end}" '
                f'title="{_esc(title)}">{frag}</mark>'
            )
        else:
            parts.append(
                f'<mark class="medslm-support" data-start="{start}" data-end="{end}" '
                f'title="supports the summary">{frag}</mark>'
            )
        pos = end
    parts.append(_esc(text[pos:]))
    return "".join(parts)


def entities_html(result: AgentResult[list[Entity]], text: str | None) -> str:
    entities: Sequence[Entity] = result.output
    out = [f"<h4>Entities ({len(entities)}, confidence {_pct(result.confidence)})</h4>"]
    if entities:
        out.append("<table><tr><th>text</th><th>type</th><th>assertion</th><th>concept</th>"
                   "<th>conf</th><th>source</th></tr>")
        for e in entities:
            concept = f"{e.concepts[0].id} {e.concepts[0].label}" if e.concepts else ""
            out.append(
                f"<tr><td>{_esc(e.text)}</td><td>{_esc(e.type.value)}</td><td>{_esc(e.assertion.value)}"
                f"</td><td>{_esc(concept)}</td><td>{_pct(e.confidence)}</td><td>{_esc(e.source)}</td></tr>"
            )
        out.append("</table>")
    return "".join(out)


def codes_html(result: AgentResult[list[CodeAssignment]], text: str | None) -> str:
    codes = result.output
    out = [f"<h4>ICD-10-CM codes ({len(codes)}, confidence {_pct(result.confidence)})</h4>"]
    if codes:
        out.append("<table class='medslm-codes'><tr><th>code</th><th>description</th><th>evidence</th>"
                   "<th>conf</th></tr>")
        for c in codes:
            ev = "; ".join(f"&ldquo;{_esc(x)}&rdquo;" for x in _span_text(text, c.evidence))
            bill = "" if c.billable else " <span class='medslm-muted'>(not billable)</span>"
            out.append(
                f"<tr><td><b>{_esc(c.code)}</b></td><td>{_esc(c.description)}{bill}</td>"
                f"<td>{ev}</td><td>{_pct(c.confidence)}</td></tr>"
            )
        out.append("</table>")
    return "".join(out)


def triage_html(result: AgentResult[TriageResult], text: str | None) -> str:
    t = result.output
    colour = _LEVEL_COLOURS.get(t.level, "#5f6368")
    out = ["<h4>Triage</h4>",
           f"<div class='medslm-triage'><span class='medslm-level' style='background:{colour}'>"
           f"{_esc(t.scale)} {t.level}</span> <span class='medslm-muted'>confidence "
           f"{_pct(result.confidence)}</span></div>"]
    if t.red_flags:
        flags = []
        for f in t.red_flags:
            ev = "; ".join(_span_text(text, f.evidence))
            tip = f"level <= {f.max_level}" + (f"; {f.detail}" if f.detail else "") + (f"; {ev}" if ev else "")
            flags.append(f"<span class='medslm-flag' title='{_esc(tip)}'>&#9873; {_esc(f.name)} "
                         f"(&le; {f.max_level}){': ' + _esc(ev) if ev else ''}</span>")
        out.append("<div>" + "".join(flags) + "</div>")
    if t.rationale:
        out.append(f"<div class='medslm-muted'>{_esc(t.rationale)}</div>")
    return "".join(out)


def summary_html(result: AgentResult[Summary], text: str | None) -> str:
    s = result.output
    kind = "extractive fallback" if s.extractive else "abstractive"
    out = [f"<h4>Summary ({kind}, confidence {_pct(result.confidence)})</h4>"]
    for sec in s.sections:
        if not sec.sentences:
            continue
        items = []
        for sent in sec.sentences:
            sup = "; ".join(_span_text(text, sent.support))
            tip = f" title='supported by: {_esc(sup)}'" if sup else ""
            cls = "" if sent.supported else " class='medslm-unsupported'"
            flag = "" if sent.supported else f" &#9888; {_esc(', '.join(sent.issues) or 'unverified')}"
            items.append(f"<li{cls}{tip}>{_esc(sent.text)}{flag}"
                         + (f" <span class='medslm-muted'>[{_esc(sup)}]</span>" if sup else "") + "</li>")
        out.append(f"<div><b>{_esc(sec.name)}</b><ul>{''.join(items)}</ul></div>")
    return "".join(out)


def review_html(review: ChartReview) -> str:
    """Self-contained HTML (inline CSS) for a review: note with highlights, codes, triage, summary…"""
    text = review.text
    status_colour = {"ok": "#1e8e3e", "needs_review": "#e8710a", "blocked": "#b3261e", "failed": "#5f6368"}
    out: list[str] = [f"<div class='medslm-review'><style>{_CSS}</style>"]
    out.append(
        f"<h3>ChartReview {_esc(review.note_id)} "
        f"<span class='medslm-badge' style='background:{status_colour.get(review.status.value, '#5f6368')}'>"
        f"{_esc(review.status.value)}</span></h3>"
    )
    if review.reason:
        out.append(f"<div class='medslm-muted'>reason: {_esc(review.reason)}</div>")

    entities: Sequence[Entity] = review.entities.output if review.entities is not None else ()
    support: list[Span] = []
    if review.summary is not None:
        for sec in review.summary.output.sections:
            for sent in sec.sentences:
                support.extend(sent.support)

    out.append("<h4>Note</h4>")
    if text is not None:
        legend = "".join(
            f"<span class='medslm-swatch' data-type='{t}'>{t}</span>" for t in _TYPE_COLOURS
        )
        out.append(
            f"<div class='medslm-legend medslm-muted'>{legend} <span>negated = struck through, possible = "
            "dotted, historical = italic, family = dashed</span></div>"
        )
        out.append(f"<div class='medslm-note'>{highlight_note(text, entities, support)}</div>")
    else:
        out.append("<div class='medslm-muted'>(note text not kept in this review)</div>")

    for name, result in _agent_results(review):
        render = _renderer(name, "html")
        if render is not None:
            out.append(render(result, text))
        else:
            out.append(f"<h4 data-agent='{_esc(name)}'>{_esc(_label(name))} (confidence {_pct(result.confidence)})"
                       f"</h4><pre class='medslm-output'>{_esc(_json_brief(_output_json(result.output), 2000))}</pre>")

    for label, verdict in (("Safety (input)", review.safety_in), ("Safety (output)", review.safety_out)):
        if verdict is None:
            continue
        state = "allowed" if verdict.allowed else "<b class='medslm-unsupported'>BLOCKED</b>"
        out.append(f"<h4>{label}</h4><div>{state}; {len(verdict.findings)} findings, {len(verdict.phi)} "
                   f"PHI spans, {len(verdict.fenced)} fenced</div>")
        if verdict.findings:
            out.append("<ul>" + "".join(
                f"<li>{_esc(f.severity.value)} &middot; {_esc(f.category)}: {_esc(f.message)}</li>"
                for f in verdict.findings) + "</ul>")

    out.append("<h4>Routing</h4>")
    routed = []
    for name, r in _agent_results(review):
        route = r.route.value if r.route is not None else "-"
        esc = r.provenance.escalated or (r.route is not None and r.route.value != "accept")
        why = (r.provenance.escalation_reason or "low confidence") if esc else ""
        routed.append(f"<tr class='medslm-route' data-agent='{_esc(name)}' data-route='{_esc(route)}'>"
                      f"<td>{_esc(name)}</td><td>{_esc(route)}</td><td>{_pct(r.confidence)}</td>"
                      f"<td>{_esc(why)}</td><td>{_esc(r.provenance.model_id or '')}</td>"
                      f"<td>{_esc(r.provenance.backend or '')}</td></tr>")
    if routed:
        out.append("<table><tr><th>agent</th><th>route</th><th>conf</th><th>why escalated</th><th>model</th>"
                   "<th>backend</th></tr>" + "".join(routed) + "</table>")
    if review.issues:
        out.append("<div>issues: " + _esc("; ".join(review.issues)) + "</div>")
    if review.review_items:
        out.append("<div>human review items: " + _esc(", ".join(review.review_items)) + "</div>")

    c = _cost(review)
    out.append(
        f"<h4>Cost</h4><div class='medslm-cost'>{int(c['tokens_in'])} tokens in, {int(c['tokens_out'])} out"
        f" &middot; {c['cost']:.4f} cost units &middot; {c['latency_ms']:.0f} ms"
        + (f" &middot; config {_esc(review.config_hash)}" if review.config_hash else "")
        + "</div>"
    )
    out.append("</div>")
    return "".join(out)


# ChartReview's print() and notebook display (records.py imports nothing above itself).
bind(text=review_text, html=review_html)
