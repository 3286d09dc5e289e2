"""Recipe ``summarize-lora``: a LoRA adapter on the embedded SmolLM2-135M-Instruct that writes one section of
a clinical note from a conversation or a note, in the summarizer's prompt format and output grammar
(:mod:`medslm.agents.section_writer`).

Fitted on **MTS-Dialog train** (1,201 conversation -> section pairs) and **ACI-Bench train** (67
conversations with full notes, cut into sections at their headers: conversation -> section, with an
empty answer for a section the note lacks, and note -> section, the note's other text as the source);
5 % of MTS-Dialog train and 5 ACI-Bench train encounters are held out as the **tune** slice whose loss
picks the epoch. MTS-Dialog valid and ACI-Bench valid are **report** splits only (figures below and
``bench/ablation.py --agent summarize``).

Two profiles, recorded in the manifest's hyperparameters:

- ``--device cuda``: every example, sources up to 3,584 tokens (all of an ACI-Bench conversation),
  3 epochs, bf16 autocast; the run the shipped adapter is meant to come from (a few minutes on one GPU);
- ``--device cpu``: what two cores can fit in about half an hour: MTS-Dialog examples up to 512 tokens of
  source and ACI-Bench conversations condensed to 512 tokens per section (the summarizer's own selection,
  as it does at run time for a note longer than the adapter's ``max_source_tokens``), 1 epoch.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe

log = logging.getLogger(__name__)

LICENCE_MTS = "CC BY 4.0 (Ben Abacha et al., EACL 2023; MTS-Dialog)"
LICENCE_ACI = "CC BY 4.0 (Yim et al., Sci Data 2023; ACI-Bench)"
MODEL_LICENCE = "Apache-2.0 (SmolLM2-135M-Instruct)"

#: Sections the ACI-Bench examples teach (the evaluation's sections get an empty answer when absent).
ACI_TRAIN_SECTIONS = ("chief_complaint", "hpi", "review_of_systems", "findings", "assessment_plan", "assessment",
                      "plan", "past_medical_history", "medications", "family_social_history", "allergies",
                      "past_surgical_history")


#: The CPU profile teaches the sections of the default summary and the ACI-Bench evaluation only.
ACI_SECTIONS_CPU = ("chief_complaint", "hpi", "findings", "assessment_plan", "assessment", "plan")


def profile(ctx: TrainContext) -> dict[str, Any]:
    """Training settings for the context's device (and the quick smoke test)."""
    if ctx.quick:
        return {"name": "quick", "epochs": 1, "max_length": 320, "max_source_tokens": 192, "tokens_per_batch": 1280,
                "max_steps": 2, "mts_limit": 4, "aci_limit": 1, "aci_sections": ("chief_complaint",),
                "note_sources": False, "report_mts": 0, "report_aci": 0, "lr": 3e-4}
    if ctx.device.startswith("cuda"):
        return {"name": "cuda", "epochs": 3, "max_length": 4096, "max_source_tokens": 3584,
                "tokens_per_batch": 32768, "max_steps": None, "mts_limit": None, "aci_limit": None,
                "aci_sections": ACI_TRAIN_SECTIONS, "note_sources": True, "report_mts": 100, "report_aci": 20,
                "lr": 3e-4}
    return {"name": "cpu", "epochs": 1, "max_length": 640, "max_source_tokens": 384, "tokens_per_batch": 1280,
            "max_steps": None, "mts_limit": 320, "aci_limit": 24, "aci_sections": ACI_SECTIONS_CPU,
            "note_sources": False, "report_mts": 20, "report_aci": 0, "lr": 5e-4}


def build_examples(mts_rows: list[dict[str, str]], aci_rows: list[dict[str, str]], *, tok: Any,
                   max_source_tokens: int, note_sources: bool,
                   aci_sections: tuple[str, ...] = ACI_TRAIN_SECTIONS) -> tuple[list[Any], dict[str, int]]:
    """Section-writing examples in the summarizer's prompt format; counts of what was made or skipped."""
    from medslm.agents.section_writer import normalize_section, section_messages
    from medslm.agents.summarize import SECTIONS, section_sources
    from medslm.evals.summarize import ACI_SECTIONS, MTS_SECTIONS, aci_note_sections
    from medslm.training.causal_lora import CausalExample

    counts = {"mts": 0, "aci_dialogue": 0, "aci_empty": 0, "aci_note": 0, "skipped_target": 0}

    def fits(text: str) -> bool:
        return len(tok(text, add_special_tokens=False)["input_ids"]) <= max_source_tokens

    out: list[CausalExample] = []
    for r in mts_rows:
        section = MTS_SECTIONS.get(r["section_header"], "hpi")
        target = normalize_section(r["section_text"])
        if not target:
            counts["skipped_target"] += 1
            continue
        src = section_sources(r["dialogue"], (section,), fits=fits, max_source_tokens=max_source_tokens)
        out.append(CausalExample.of(section_messages(src.text[section], SECTIONS[section].title,
                                                     dialogue=src.dialogue), target))
        counts["mts"] += 1
    for r in aci_rows:
        secs = aci_note_sections(r["note"])
        wanted = [s for s in aci_sections if s in secs or s in ACI_SECTIONS]
        src = section_sources(r["dialogue"], wanted, fits=fits, max_source_tokens=max_source_tokens)
        for s in wanted:
            target = normalize_section(secs.get(s, ""))
            if s in secs and not target:
                counts["skipped_target"] += 1
                continue
            out.append(CausalExample.of(section_messages(src.text[s], SECTIONS[s].title, dialogue=True), target))
            counts["aci_dialogue" if target else "aci_empty"] += 1
        if note_sources:  # the note's other sections as the source: teaches writing a section from a note
            for s in ("chief_complaint", "hpi", "findings", "assessment", "plan", "assessment_plan"):
                target = normalize_section(secs.get(s, ""))
                if not target:
                    continue
                rest = "\n".join(v for k, v in secs.items() if k != s and not (
                    s == "assessment_plan" and k in ("assessment", "plan")) and not (
                    k == "assessment_plan" and s in ("assessment", "plan")))
                body = rest + "\n" + secs[s] if s != "chief_complaint" else secs[s] + "\n" + rest
                nsrc = section_sources(body, (s,), fits=fits, max_source_tokens=max_source_tokens)
                out.append(CausalExample.of(section_messages(nsrc.text[s], SECTIONS[s].title, dialogue=False),
                                            target))
                counts["aci_note"] += 1
    return out, counts


@recipe("summarize-lora", agent="summarize",
        description="LoRA adapter on the embedded SmolLM2-135M-Instruct: one note section from a conversation "
                    "or note, in one constrained pass", data=("mts-dialog", "aci-bench"))
def train_summarize_lora(ctx: TrainContext) -> TrainResult:
    from medslm.artifacts import BaseModelRecord
    from medslm.evals.summarize import read_aci, read_mts
    from medslm.models import embedded
    from medslm.training.causal_lora import CausalLoraSettings, settings_dict, train_causal_lora

    p = profile(ctx)
    ctx.data_file("mts-dialog/MTS-Dialog-TrainingSet.csv", split="train", use="fit", licence=LICENCE_MTS)
    ctx.data_file("aci-bench/train.csv", split="train", use="fit", licence=LICENCE_ACI)
    mts = read_mts(ctx.data_dir, "TrainingSet")
    aci = read_aci(ctx.data_dir, ("train",))
    rng = random.Random(ctx.seed)
    mts_idx = list(range(len(mts)))
    rng.shuffle(mts_idx)
    aci_idx = list(range(len(aci)))
    rng.shuffle(aci_idx)
    n_tune_mts = max(1, len(mts) // 20)
    mts_tune = [mts[i] for i in mts_idx[:n_tune_mts]]
    mts_fit = [mts[i] for i in mts_idx[n_tune_mts:]]
    aci_tune = [aci[i] for i in aci_idx[:5]]
    aci_fit = [aci[i] for i in aci_idx[5:]]
    if p["mts_limit"] is not None:
        mts_fit, mts_tune = mts_fit[: p["mts_limit"]], mts_tune[: max(2, p["mts_limit"] // 20)]
    if p["aci_limit"] is not None:
        aci_fit, aci_tune = aci_fit[: p["aci_limit"]], aci_tune[: max(1, p["aci_limit"] // 12)]

    folder = embedded.converted_dir()
    base_sha = embedded.weights_sha256(folder)
    from medslm.models._hf import require_transformers

    tok = require_transformers().AutoTokenizer.from_pretrained(str(folder))
    train_ex, fit_counts = build_examples(mts_fit, aci_fit, tok=tok, max_source_tokens=p["max_source_tokens"],
                                          note_sources=p["note_sources"], aci_sections=p["aci_sections"])
    tune_ex, tune_counts = build_examples(mts_tune, aci_tune, tok=tok, max_source_tokens=p["max_source_tokens"],
                                          note_sources=p["note_sources"], aci_sections=p["aci_sections"])
    log.info("summarize-lora (%s profile): %d train examples %s, %d tune examples", p["name"], len(train_ex),
             fit_counts, len(tune_ex))
    settings = CausalLoraSettings(epochs=p["epochs"], max_length=p["max_length"], tokens_per_batch=p["tokens_per_batch"],
                                  max_steps=p["max_steps"], lr=p["lr"], max_batch=16 if ctx.device == "cpu" else 64)
    from medslm.agents.section_writer import PROMPT_VERSION

    hist = train_causal_lora(folder, train_ex, tune_ex, ctx.out, settings=settings, seed=ctx.seed, device=ctx.device,
                             base_sha256=base_sha, log_every=5 if ctx.device == "cpu" else 20,
                             extra_config={"prompt_version": PROMPT_VERSION, "max_source_tokens": p["max_source_tokens"],
                                           "base_id": embedded.MODEL_ID, "profile": p["name"]})
    figures: dict[str, float] = {"heldout_train_slice_loss": hist.best_tune_loss}
    import importlib.util

    report = "none (quick)" if ctx.quick else "skipped: outlines / rouge-score are not installed where it trained"
    if (p["report_mts"] or p["report_aci"]) and all(
            importlib.util.find_spec(m) is not None for m in ("outlines", "outlines_core", "rouge_score")):
        ctx.data_file("mts-dialog/MTS-Dialog-ValidationSet.csv", split="valid", use="report", licence=LICENCE_MTS)
        if p["report_aci"]:
            ctx.data_file("aci-bench/valid.csv", split="valid", use="report", licence=LICENCE_ACI)
        figures.update(report_figures(ctx, n_mts=p["report_mts"], n_aci=p["report_aci"]))
        report = f"MTS-Dialog valid first {p['report_mts']}, ACI-Bench valid first {p['report_aci']}"
    hyper = {"profile": p["name"], **settings_dict(settings), "max_source_tokens": p["max_source_tokens"],
             "examples": fit_counts, "tune_examples": tune_counts, "trained_examples": hist.examples,
             "dropped_too_long": hist.dropped_too_long, "train_tokens": hist.train_tokens, "steps": hist.steps,
             "best_epoch": hist.best_epoch, "epochs_run": hist.epochs, "trainable_params": hist.trainable_params,
             "train_seconds": hist.seconds, "prompt_version": PROMPT_VERSION,
             "report": report}
    base = BaseModelRecord(id=embedded.MODEL_ID,
                           source=f"PyPI {embedded.PACKAGE}=={embedded.PACKAGE_VERSION} (GGUF Q4_1, de-quantised "
                                  "to fp32 by medslm.models.embedded.converted_dir)",
                           sha256=base_sha, licence=MODEL_LICENCE)
    return TrainResult(
        hyperparameters=hyper,
        tuning=("epoch chosen by target-token loss on a held-out slice of the train splits (5 % of MTS-Dialog "
                "train, 5 ACI-Bench train encounters; seeded); MTS-Dialog valid / ACI-Bench valid only reported"),
        figures=figures, base_model=base, licences=(MODEL_LICENCE,))


def report_figures(ctx: TrainContext, *, n_mts: int, n_aci: int) -> dict[str, float]:
    """ROUGE of the adapter alone (no extractive fallback) on the first items of the valid splits."""
    from medslm.evals.summarize import slm_only_rouge

    out: dict[str, float] = {}
    res = slm_only_rouge(ctx.data_dir, adapter=ctx.out, n_mts=n_mts, n_aci=n_aci, device=ctx.device)
    for key, value in res.items():
        out[key] = value
    return out


__all__ = ["build_examples", "profile", "train_summarize_lora"]
