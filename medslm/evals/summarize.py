"""Summarization on MTS-Dialog (section summaries) and ACI-Bench (full notes from dialogue).

For each dataset, in one run: a lead baseline (the first sentences of the dialogue, as many characters
as the agent's summary), the agent extractive-only (rules, no SLM) and the full agent (SLM rewrite,
faithfulness check, extractive fallback; on the first ``abstractive_limit`` items because generation is
the slow part on CPU). Figures: ROUGE-1/2/L F1 (``rouge-score``, Porter stemmer), embedding cosine
similarity with all-MiniLM-L6-v2 (mean pooling), the fraction of summary sentences the faithfulness
check flags, and for the full agent the fraction of SLM sentences it rejected.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ACI_HEADERS",
    "MTS_SECTIONS",
    "ablation",
    "aci_note_sections",
    "embedding_similarity",
    "evaluate_summarization",
    "lead_baseline",
    "read_aci",
    "read_mts",
    "rouge_scores",
    "score_systems",
    "slm_only_rouge",
]

log = logging.getLogger(__name__)

#: MTS-Dialog section headers -> summary sections of :class:`SummarizeAgent`.
MTS_SECTIONS = {
    "GENHX": "hpi", "CC": "chief_complaint", "ROS": "review_of_systems", "FAM/SOCHX": "family_social_history",
    "PASTMEDICALHX": "past_medical_history", "PASTSURGICAL": "past_surgical_history", "MEDICATIONS": "medications",
    "ALLERGY": "allergies", "ASSESSMENT": "assessment", "PLAN": "plan", "DIAGNOSIS": "assessment",
    "EXAM": "findings", "LABS": "findings", "IMAGING": "findings", "EDCOURSE": "hpi", "DISPOSITION": "plan",
    "PROCEDURES": "past_surgical_history", "IMMUNIZATIONS": "medications", "GYNHX": "past_medical_history",
    "OTHER_HISTORY": "past_medical_history",
}
ACI_SECTIONS = ("chief_complaint", "hpi", "review_of_systems", "findings", "assessment_plan")
ACI_SENTENCES = {"chief_complaint": 1, "hpi": 8, "review_of_systems": 3, "findings": 5, "assessment_plan": 9}
#: ACI-Bench note headers -> summary sections (a section may gather several headers, in note order).
ACI_HEADERS = {
    "CHIEF COMPLAINT": ("chief_complaint",), "HISTORY OF PRESENT ILLNESS": ("hpi",), "HPI": ("hpi",),
    "REVIEW OF SYSTEMS": ("review_of_systems",),
    "PHYSICAL EXAM": ("findings",), "PHYSICAL EXAMINATION": ("findings",), "EXAM": ("findings",),
    "VITALS": ("findings",), "VITALS REVIEWED": ("findings",), "RESULTS": ("findings",),
    "ASSESSMENT AND PLAN": ("assessment_plan",), "ASSESSMENT": ("assessment", "assessment_plan"),
    "IMPRESSION": ("assessment", "assessment_plan"), "PLAN": ("plan", "assessment_plan"),
    "INSTRUCTIONS": ("plan", "assessment_plan"),
    "MEDICAL HISTORY": ("past_medical_history",), "PAST HISTORY": ("past_medical_history",),
    "SURGICAL HISTORY": ("past_surgical_history",), "SOCIAL HISTORY": ("family_social_history",),
    "FAMILY HISTORY": ("family_social_history",), "MEDICATIONS": ("medications",),
    "CURRENT MEDICATIONS": ("medications",), "ALLERGIES": ("allergies",),
}
_ACI_HEADER = re.compile(r"^[A-Z][A-Z /&\-]{1,58}$")


def aci_note_sections(note: str) -> dict[str, str]:
    """An ACI-Bench reference note cut at its upper-case headers into summary sections (text under
    headers of one section joined in note order; text under unknown headers is left out)."""
    out: dict[str, list[str]] = {}
    current: tuple[str, ...] = ()
    for line in note.splitlines():
        s = line.strip()
        if _ACI_HEADER.match(s) and s.isupper():
            current = ACI_HEADERS.get(s, ())
            continue
        if s:
            for name in current:
                out.setdefault(name, []).append(s)
    return {k: "\n".join(v) for k, v in out.items()}


def _data_dir(data_dir: str | Path | None) -> Path:
    from medslm.evals.datasets import resolve_data_dir

    return resolve_data_dir(data_dir)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_mts(data_dir: str | Path | None = None, split: str = "ValidationSet",
             limit: int | None = None) -> list[dict[str, str]]:
    """MTS-Dialog rows (``ID, section_header, section_text, dialogue``) of one split."""
    rows = _read_csv(_data_dir(data_dir) / "mts-dialog" / f"MTS-Dialog-{split}.csv")
    return rows[:limit] if limit else rows


def read_aci(data_dir: str | Path | None = None, splits: Sequence[str] = ("train", "valid"),
             limit: int | None = None) -> list[dict[str, str]]:
    """ACI-Bench dialogues with their full reference notes (``dataset, encounter_id, dialogue, note``)."""
    rows = [r for s in splits for r in _read_csv(_data_dir(data_dir) / "aci-bench" / f"{s}.csv")]
    return rows[:limit] if limit else rows


def lead_baseline(text: str, n_chars: int) -> str:
    """The first sentences of ``text`` (speaker labels dropped) up to about ``n_chars`` characters."""
    from medslm.agents.faithfulness import segment

    out: list[str] = []
    size = 0
    for u in segment(text):
        if size >= n_chars:
            break
        out.append(u.text)
        size += len(u.text) + 1
    return " ".join(out)


def rouge_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (x100): :func:`medslm.evals.metrics.rouge` on the eval's percent scale."""
    from medslm.evals.metrics import rouge

    return {k: 100 * v for k, v in rouge(refs, preds).items()}


class _MiniLM:
    """all-MiniLM-L6-v2 (the process-wide encoder of :mod:`medslm.knowledge.embedding`), windowed so a long
    text counts whole."""

    def __init__(self) -> None:
        from medslm.knowledge.embedding import encoder

        self.tok, self.model = encoder().loaded()

    def embed(self, texts: Sequence[str]) -> Any:
        """One unit vector per text; a long text is the mean of its 256-token windows."""
        import torch

        out = []
        with torch.inference_mode():
            for t in texts:
                ids = self.tok(t or " ", add_special_tokens=False)["input_ids"]
                windows = [ids[i : i + 254] for i in range(0, max(len(ids), 1), 254)] or [[]]
                batch = [[self.tok.cls_token_id, *w, self.tok.sep_token_id] for w in windows]
                width = max(len(b) for b in batch)
                inp = torch.tensor([b + [self.tok.pad_token_id] * (width - len(b)) for b in batch])
                mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch])
                h = self.model(input_ids=inp, attention_mask=mask).last_hidden_state
                v = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
                v = torch.nn.functional.normalize(v, dim=-1).mean(0)
                out.append(torch.nn.functional.normalize(v, dim=0))
        return torch.stack(out)


_EMBEDDER: _MiniLM | None = None


def embedding_similarity(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean cosine similarity of MiniLM embeddings of prediction and reference (x100)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = _MiniLM()
    a, b = _EMBEDDER.embed(preds), _EMBEDDER.embed(refs)
    return float((a * b).sum(-1).mean()) * 100


def _flagged_fraction(texts: Sequence[str], sources: Sequence[str]) -> float:
    """Fraction of sentences of ``texts`` that the faithfulness check flags against their ``sources``."""
    from medslm.agents.faithfulness import NoteIndex, check_sentence, segment

    n = bad = 0
    for t, src in zip(texts, sources, strict=True):
        idx = NoteIndex.build(src)
        for u in segment(t):
            n += 1
            bad += not check_sentence(u.text, idx).supported
    return bad / n if n else 0.0


def _score(name: str, preds: Sequence[str], refs: Sequence[str], sources: Sequence[str],
           latencies: Sequence[float] = (), extra: dict[str, float] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"n": len(preds), **rouge_scores(preds, refs),
                           "minilm_cosine": embedding_similarity(preds, refs),
                           "flagged_fraction": _flagged_fraction(preds, sources),
                           "mean_chars": sum(len(p) for p in preds) / max(len(preds), 1)}
    if latencies:
        s = sorted(latencies)
        row["latency_ms_p50"] = s[len(s) // 2]
        row["latency_ms_p95"] = s[min(len(s) - 1, int(0.95 * len(s)))]
    row.update(extra or {})
    return row


def _run_agent(make: Callable[[str | None], Any], items: Sequence[tuple[str, str, str | None]]
               ) -> tuple[list[str], list[float], dict[str, float]]:
    """Run an agent over ``(id, text, section)`` items: summaries, latencies and SLM rejection figures."""
    from medslm.records import Note

    preds, lat = [], []
    generated = rejected = flagged = sentences = 0.0
    for n, (item_id, text, section) in enumerate(items):
        if n and n % 10 == 0:
            log.info("summarization eval: %d/%d items", n, len(items))
        agent = make(section)
        t0 = time.perf_counter()
        r = agent.run(Note(id=item_id, text=text), {})
        lat.append((time.perf_counter() - t0) * 1000)
        preds.append(" ".join(s.text for sec in r.output.sections for s in sec.sentences))
        generated += r.signals.get("generated", 0.0)
        rejected += r.signals.get("generated_rejected", 0.0)
        sentences += r.signals.get("sentences", 0.0)
        flagged += r.signals.get("sentences", 0.0) * (1 - r.signals.get("supported_fraction", 1.0))
    extra = {"agent_flagged_fraction": flagged / sentences if sentences else 0.0}
    if generated:
        extra["slm_sentences"] = generated
        extra["slm_rejected_fraction"] = rejected / generated
    return preds, lat, extra


def evaluate_summarization(data_dir: str | Path | None = None, limit: int | None = None, *,
                           abstractive_limit: int | None = 20, aci_abstractive_limit: int | None = 5,
                           model: Any = "embedded") -> dict[str, Any]:
    """Lead baseline, extractive agent and full agent on MTS-Dialog valid and ACI-Bench train+valid.

    ``limit`` caps items per dataset; ``abstractive_limit`` caps the MTS-Dialog items the full (SLM) agent
    runs on and ``aci_abstractive_limit`` the ACI-Bench ones (the last of the list: the valid split; a
    full note is ~6 generations), ``None``: all. Returns ``{"mts_dialog": {...}, "aci_bench": {...}}``
    with a ``rows`` table (system -> metrics) each.
    """
    from medslm.agents.summarize import SummarizeAgent

    out: dict[str, Any] = {}
    shared_lm: dict[str, Any] = {}

    def agent_for(sections: Sequence[str], abstractive: bool, sentences: dict[str, int] | None = None
                  ) -> SummarizeAgent:
        if abstractive and "lm" not in shared_lm:
            # the agent resolves "embedded" to the model with its shipped adapter merged in
            shared_lm["lm"] = SummarizeAgent(model=model).lm if isinstance(model, str) else model
        return SummarizeAgent(model=shared_lm.get("lm", model), sections=tuple(sections), abstractive=abstractive,
                              sentences=sentences)

    # --- MTS-Dialog: one section summary per dialogue
    mts = read_mts(data_dir, "ValidationSet", limit)
    items = [(f"mts-{r['ID']}", r["dialogue"], MTS_SECTIONS.get(r["section_header"], "hpi")) for r in mts]
    refs = [r["section_text"] for r in mts]
    srcs = [r["dialogue"] for r in mts]
    ext, ext_lat, ext_extra = _run_agent(lambda s: agent_for((s,), False), items)
    lead = [lead_baseline(src, max(len(p), 40)) for src, p in zip(srcs, ext, strict=True)]
    table = {"lead (same length)": _score("lead", lead, refs, srcs),
             "agent extractive": _score("ext", ext, refs, srcs, ext_lat, ext_extra)}
    n_abs = len(items) if abstractive_limit is None else min(abstractive_limit, len(items))
    if n_abs:
        full, full_lat, full_extra = _run_agent(lambda s: agent_for((s,), True), items[:n_abs])
        table[f"agent SLM+check (first {n_abs})"] = _score("full", full, refs[:n_abs], srcs[:n_abs], full_lat,
                                                            full_extra)
        table[f"agent extractive (first {n_abs})"] = _score("ext-sub", ext[:n_abs], refs[:n_abs], srcs[:n_abs])
        table[f"lead (first {n_abs})"] = _score("lead-sub", lead[:n_abs], refs[:n_abs], srcs[:n_abs])
    out["mts_dialog"] = {"split": "ValidationSet", "rows": table}

    # --- ACI-Bench: the full note from the dialogue
    aci = read_aci(data_dir, ("train", "valid"), limit)
    items = [(f"aci-{r['dataset']}-{r['encounter_id']}", r["dialogue"], None) for r in aci]
    refs = [r["note"] for r in aci]
    srcs = [r["dialogue"] for r in aci]
    ext, ext_lat, ext_extra = _run_agent(lambda s: agent_for(ACI_SECTIONS, False, ACI_SENTENCES), items)
    lead = [lead_baseline(src, len(p)) for src, p in zip(srcs, ext, strict=True)]
    table = {"lead (same length)": _score("lead", lead, refs, srcs),
             "agent extractive": _score("ext", ext, refs, srcs, ext_lat, ext_extra)}
    n_abs = len(items) if aci_abstractive_limit is None else min(aci_abstractive_limit, len(items))
    if n_abs:
        sub = items[-n_abs:]  # the valid split sits at the end
        full, full_lat, full_extra = _run_agent(lambda s: agent_for(ACI_SECTIONS, True, ACI_SENTENCES), sub)
        table[f"agent SLM+check (last {n_abs})"] = _score("full", full, refs[-n_abs:], srcs[-n_abs:], full_lat,
                                                           full_extra)
        table[f"agent extractive (last {n_abs})"] = _score("ext-sub", ext[-n_abs:], refs[-n_abs:], srcs[-n_abs:])
        table[f"lead (last {n_abs})"] = _score("lead-sub", lead[-n_abs:], refs[-n_abs:], srcs[-n_abs:])
    out["aci_bench"] = {"split": "train+valid", "rows": table}
    return out


# ------------------------------------------------------------------------------------------- ablation
def _note_text(sections: Sequence[tuple[str, Sequence[str]]], titles: bool) -> str:
    """A summary as text: sentences per section, under upper-case section titles when ``titles``."""
    from medslm.agents.summarize import SECTIONS

    parts = []
    for name, sents in sections:
        if not sents:
            continue
        body = " ".join(sents)
        parts.append(f"{SECTIONS[name].title.upper()}\n{body}" if titles else body)
    return "\n\n".join(parts)


def _rouge_item(pred: str, ref: str) -> tuple[float, float, float]:
    from medslm.evals.metrics import rouge

    r = rouge([ref], [pred])
    return 100 * r["rouge1"], 100 * r["rouge2"], 100 * r["rougeL"]


def _items(data_dir: str | Path | None, dataset: str, limit: int | None) -> list[tuple[str, str, tuple[str, ...], str]]:
    """``(id, source, sections, reference)`` of a report split: MTS-Dialog valid or ACI-Bench valid."""
    if dataset == "mts":
        return [(f"mts-{r['ID']}", r["dialogue"], (MTS_SECTIONS.get(r["section_header"], "hpi"),), r["section_text"])
                for r in read_mts(data_dir, "ValidationSet", limit)]
    return [(f"aci-{r['encounter_id']}", r["dialogue"], ACI_SECTIONS, r["note"])
            for r in read_aci(data_dir, ("valid",), limit)]


def score_systems(data_dir: str | Path | None, dataset: str, *, limit: int | None = None, lm: Any = None,
                  systems: Sequence[str] = ("classical", "slm", "combined"), rows_per_call: int = 8,
                  start: int = 0) -> dict[str, list[dict[str, float]]]:
    """Per-item figures of each system on MTS-Dialog valid (``"mts"``) or ACI-Bench valid (``"aci"``):
    ROUGE-1/2/L F1 (x100), sentences, sentences the faithfulness check flags, latency (ms).

    ``classical``: the agent's extractive selection alone; ``slm``: the model's sections as written (whole
    sentences; no check, no fallback); ``combined``: the agent (check, replacement, fallback). The SLM
    writes each item once (items batched ``rows_per_call`` sections a call; the latency of the SLM
    systems is that call's time shared among its items); the agent reuses that text.
    """
    from medslm.agents.faithfulness import NoteIndex, check_sentence
    from medslm.agents.section_writer import split_sentences
    from medslm.agents.summarize import SummarizeAgent
    from medslm.records import Note

    titles = dataset == "aci"
    extra_k = ACI_SENTENCES if dataset == "aci" else None
    out: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    items = _items(data_dir, dataset, limit)[start:]
    notes = [Note(id=item_id, text=source) for item_id, source, _, _ in items]
    written: list[Any] = [None] * len(items)
    write_ms = [0.0] * len(items)
    if "slm" in systems or "combined" in systems:
        writer = SummarizeAgent(model=lm if lm is not None else "embedded")
        per_call = max(1, rows_per_call // max(len(items[0][2]), 1)) if items else 1
        for b in range(0, len(items), per_call):
            t0 = time.perf_counter()
            batch = writer.write_many([(notes[i], items[i][2]) for i in range(b, min(len(items), b + per_call))],
                                      rows_per_call=rows_per_call)
            ms = (time.perf_counter() - t0) * 1000 / len(batch)
            for k, (gens, _) in enumerate(batch):
                written[b + k], write_ms[b + k] = gens, ms
            log.info("summarize ablation (%s): written %d/%d items", dataset, min(len(items), b + per_call), len(items))
    for n, (_item_id, source, sections, ref) in enumerate(items):
        note = notes[n]
        index = NoteIndex.build(source)
        if "classical" in systems:
            t0 = time.perf_counter()
            r = SummarizeAgent(model="embedded", sections=sections, abstractive=False, sentences=extra_k).run(note, {})
            ms = (time.perf_counter() - t0) * 1000
            secs = [(s.name, [x.text for x in s.sentences]) for s in r.output.sections]
            flagged = sum(not x.supported for s in r.output.sections for x in s.sentences)
            out["classical"].append(_entry(_note_text(secs, titles), ref, secs, flagged, ms))
        if "slm" in systems:
            secs = [(s, [x for x in split_sentences(str(g.text)) if x.endswith(".")]) for s, g in written[n].items()]
            flagged = sum(not check_sentence(x, index).supported for _, xs in secs for x in xs)
            out["slm"].append(_entry(_note_text(secs, titles), ref, secs, flagged, write_ms[n]))
        if "combined" in systems:
            agent = SummarizeAgent(model=lm if lm is not None else "embedded", sections=sections, sentences=extra_k)
            t0 = time.perf_counter()
            r = agent.run(note, {}, written=written[n])
            ms = (time.perf_counter() - t0) * 1000 + write_ms[n]
            secs = [(s.name, [x.text for x in s.sentences]) for s in r.output.sections]
            flagged = sum(not x.supported for s in r.output.sections for x in s.sentences)
            e = _entry(_note_text(secs, titles), ref, secs, flagged, ms)
            e.update({k: r.signals.get(k, 0.0) for k in ("slm_unsupported", "slm_replaced", "slm_dropped",
                                                          "sections_fallback", "generated")})
            out["combined"].append(e)
    return out


def _entry(pred: str, ref: str, secs: Sequence[tuple[str, Sequence[str]]], flagged: int, ms: float) -> dict[str, float]:
    r1, r2, rl = _rouge_item(pred, ref)
    return {"rouge1": r1, "rouge2": r2, "rougeL": rl, "sentences": float(sum(len(x) for _, x in secs)),
            "unsupported": float(flagged), "latency_ms": ms}


def _mean_rouge1(entries: Sequence[dict[str, float]]) -> float:
    return sum(e["rouge1"] for e in entries) / len(entries) if entries else 0.0


def _aggregate(per: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    agg = {}
    for system, entries in per.items():
        n = max(len(entries), 1)
        lat = sorted(e["latency_ms"] for e in entries) or [0.0]
        agg[system] = {"rouge1": sum(e["rouge1"] for e in entries) / n, "rouge2": sum(e["rouge2"] for e in entries) / n,
                       "rougeL": sum(e["rougeL"] for e in entries) / n,
                       "sentences": sum(e["sentences"] for e in entries),
                       "unsupported_sentences": sum(e["unsupported"] for e in entries),
                       "latency_ms_p50": lat[len(lat) // 2]}
    return agg


def ablation(data_dir: str | Path | None = None, *, limit: int | None = None, seed: int = 0) -> Any:
    """Classical (extractive selection) vs SLM-only (the fine-tuned writer, no check) vs combined (the agent)
    on **MTS-Dialog valid** (the headline: ROUGE-1, 100 items) with **ACI-Bench valid** (20 full notes,
    rendered with section titles) summarized in the notes and ``extra``; never used to fit or tune."""
    from medslm.evals.ablation import Ablation, summarize

    mts = score_systems(data_dir, "mts", limit=limit)
    aci = score_systems(data_dir, "aci", limit=min(limit, 20) if limit else None)
    aci_ab = Ablation(agent="summarize", split=f"ACI-Bench valid ({len(aci['classical'])} encounters)",
                      metric_name="ROUGE-1 F1 (x100)", metric=_mean_rouge1, items=aci)
    aci_res = summarize(aci_ab, seed=seed)
    mts_agg, aci_agg = _aggregate(mts), _aggregate(aci)
    notes = ["MTS-Dialog valid, per system: " + "; ".join(
        f"{s} R1/R2/RL {v['rouge1']:.1f}/{v['rouge2']:.1f}/{v['rougeL']:.1f}, {int(v['unsupported_sentences'])} of "
        f"{int(v['sentences'])} sentences unsupported, p50 {v['latency_ms_p50']:.0f} ms" for s, v in mts_agg.items())]
    notes.append(f"ACI-Bench valid (n={aci_res['n']}), ROUGE-1 with 95 % CI: " + "; ".join(
        f"{s} {v['value']:.1f} [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}]" for s, v in aci_res["systems"].items()))
    notes.append("ACI-Bench valid paired differences: " + "; ".join(
        f"{k} {v['value']:+.1f} [{v['ci95'][0]:+.1f}, {v['ci95'][1]:+.1f}]" for k, v in aci_res["differences"].items()))
    notes.append("ACI-Bench valid, per system: " + "; ".join(
        f"{s} R1/R2/RL {v['rouge1']:.1f}/{v['rouge2']:.1f}/{v['rougeL']:.1f}, {int(v['unsupported_sentences'])} of "
        f"{int(v['sentences'])} sentences unsupported, p50 {v['latency_ms_p50']:.0f} ms" for s, v in aci_agg.items()))
    return Ablation(agent="summarize", split=f"MTS-Dialog valid ({len(mts['classical'])} dialogues)",
                    metric_name="ROUGE-1 F1 (x100)", metric=_mean_rouge1, items=mts, notes=notes,
                    extra={"mts_dialog_valid": mts_agg, "aci_bench_valid": aci_agg, "aci_bench_valid_ci": aci_res})


def slm_only_rouge(data_dir: str | Path | None, *, adapter: str | Path, n_mts: int, n_aci: int,
                   device: str = "cpu") -> dict[str, float]:
    """ROUGE-1/2/L of an adapter's sections as written (the SLM alone) on the first items of MTS-Dialog valid
    and ACI-Bench valid: the figures ``medslm train summarize-lora`` puts in the manifest."""
    from medslm.models import embedded
    from medslm.models.transformers_backend import TransformersModel

    lm = TransformersModel(embedded.converted_dir(), model_id=embedded.MODEL_ID, revision=embedded.REVISION,
                           adapter=adapter, device=device)
    out: dict[str, float] = {}
    for dataset, n, key in (("mts", n_mts, "mts-dialog_valid"), ("aci", n_aci, "aci-bench_valid")):
        if not n:
            continue
        per = score_systems(data_dir, dataset, limit=n, lm=lm, systems=("slm", "combined"),
                            rows_per_call=64 if device.startswith("cuda") else 8)
        agg = _aggregate(per)
        for system in ("slm", "combined"):
            for m in ("rouge1", "rouge2", "rougeL"):
                out[f"{key}_first{n}_{m}_{system}"] = agg[system][m]
            out[f"{key}_first{n}_unsupported_sentences_{system}"] = agg[system]["unsupported_sentences"]
    return out
