"""Recipe for ``assertion-slm``: MiniLM + LoRA sequence classifier of a marked mention's assertion.

- **Fit**: (1) the template grammar of :mod:`medslm.training.assertion_templates` (ownership: the
  patient's findings told by a relative or a caregiver, family, other people; certainty: negated,
  possible, historical, hypothetical; two-finding sentences whose findings differ), and (2) sentences of
  real clinical text (ACI-Bench and MTS-Dialog *train*) with the knowledge graph's lexicon mentions,
  labelled by the ConText rules and kept only where the rules are on safe ground: no person word in the
  sentence (ownership is where the rules are weakest) and at most 40 % of them ``present``.
- **Tune**: the dev part of the ownership set (``assertion_ownership_dev.jsonl``) plus the first synthetic
  set (``assertion_sentences.jsonl``) keep the best epoch; the rules were written against those, so the
  rules' weight ``alpha`` in the combination (``combine.json``) is chosen on the *tune* part
  (``assertion_ownership_tune.jsonl``, 55 sentences the rules never saw).
- **Report**: the test half of the ownership set (``assertion_ownership_test.jsonl``, written and
  committed before anything here was tuned), for the model alone, the rules alone and combined.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from medslm.training import TrainContext, TrainResult, recipe, write_json

log = logging.getLogger(__name__)

LABELS = ["present", "negated", "possible", "historical", "family", "hypothetical", "other_person"]
ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 100.0)
_PERSON = None


def _person_re() -> re.Pattern[str]:
    global _PERSON
    if _PERSON is None:
        from medslm.agents.assertion import KIN, OTHERS

        words = sorted({*KIN, *OTHERS, "family", "caregiver", "ems", "nurse", "staff", "mom", "dad"}, key=len, reverse=True)
        _PERSON = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
    return _PERSON


def clinical_examples(texts: Sequence[str], kg: Any, *, limit: int, seed: int = 0) -> list[tuple[str, int, int, str]]:
    """Sentences of clinical text with lexicon mentions labelled by the ConText rules (see the module doc)."""
    import random

    from medslm.agents.assertion import ContextRules
    from medslm.agents.ner import _NOT_MENTIONS, split_sentences

    rules = ContextRules().load()
    matcher = kg.matcher(("ICD10CM", "HPO"))
    person = _person_re()
    rng = random.Random(seed)
    sents = [t[a:b] for t in texts for a, b in split_sentences(t)]
    rng.shuffle(sents)
    by_label: dict[str, list[tuple[str, int, int, str]]] = {}
    for s in sents:
        if not 20 <= len(s) <= 300 or person.search(s):
            continue
        ms = [m for m in matcher.find(s) if m.text.lower() not in _NOT_MENTIONS and len(m.text) >= 3]
        if not ms:
            continue
        m = rng.choice(ms)
        lab = rules.classify(s, [(m.start, m.end)])[0].value
        if lab in ("family", "other_person"):
            continue
        by_label.setdefault(lab, []).append((s, m.start, m.end, lab))
        if sum(len(v) for v in by_label.values()) >= 4 * limit:
            break
    present = by_label.pop("present", [])
    others = [r for v in by_label.values() for r in v]
    rng.shuffle(others)
    others = others[: int(limit * 0.6)]
    out = others + present[: max(0, min(limit - len(others), int(len(others) / 0.6 * 0.4) + 1))]
    rng.shuffle(out)
    return out


def _inputs(rows: Sequence[dict[str, Any]]) -> list[str]:
    from medslm.agents.assertion import mention_inputs

    return [mention_inputs(r["text"], [(r["start"], r["end"])])[0] for r in rows]


def _accuracy(preds: Sequence[str], rows: Sequence[dict[str, Any]]) -> float:
    return sum(p == r["assertion"] for p, r in zip(preds, rows, strict=True)) / max(1, len(rows))


def _combined(probs: Any, ruled: Sequence[Any], alpha: float) -> list[str]:
    from medslm.agents.assertion import combine

    return [a.value for a, _ in combine(probs, LABELS, ruled, alpha)]


def accuracy_metric(dev: dict[str, Any]) -> Any:
    """The early-stopping metric of a fit job: accuracy on ``dev["inputs"]`` against ``dev["gold"]``."""
    inputs, gold = list(dev["inputs"]), list(dev["gold"])

    def metric(live: Any) -> float:
        probs = live.predict(inputs)
        return sum(LABELS[int(i)] == g for i, g in zip(probs.argmax(-1), gold, strict=True)) / max(1, len(gold))

    return metric


def prepare(ctx: TrainContext) -> tuple[Any, dict[str, Any]]:
    """The fit job of ``assertion-slm`` and the data for tuning and figures."""
    from medslm.agents.assertion import load_assertion_sentences, mention_inputs
    from medslm.evals.datasets import clinical_texts
    from medslm.knowledge import KnowledgeGraph
    from medslm.training.assertion_templates import generate
    from medslm.training.encoder_lora import EncoderTask, FitJob, LoraSettings

    ctx.data_file("aci-bench/train.csv", split="train", licence="CC BY 4.0 (ACI-Bench)")
    ctx.data_file("mts-dialog/MTS-Dialog-TrainingSet.csv", split="train", licence="CC BY 4.0 (MTS-Dialog)")
    n_templates, n_clinical = (120, 40) if ctx.quick else (4000, 1600)
    templates = generate(n_templates, seed=ctx.seed)
    texts = clinical_texts(ctx.data_dir, "train", limit=20 if ctx.quick else None)
    clinical = clinical_examples(texts, KnowledgeGraph.default(), limit=n_clinical, seed=ctx.seed)
    rows = [(mention_inputs(t, [(s, e)])[0], lab) for t, s, e, lab in [*templates, *clinical]]
    dev = load_assertion_sentences("ownership-dev") + load_assertion_sentences("synthetic")
    tune = load_assertion_sentences("ownership-tune")
    test = load_assertion_sentences("ownership-test")
    if ctx.quick:
        dev, tune, test = dev[:20], tune[:20], test[:20]
    settings = LoraSettings(r=8, alpha=16, dropout=0.1, epochs=4, lr=1e-3, head_lr=3e-3, batch_size=32, patience=2)
    if ctx.quick:
        settings = LoraSettings(r=4, alpha=8, epochs=1, batch_size=16, max_steps=3)
    task = EncoderTask("sequence", LABELS, max_length=96, pooling="cls",
                       extra={"input": "the mention's sentence, mention marked [[ ]] (medslm.agents.assertion.mention_inputs)"})
    spec = {"metric": "medslm.training.assertion_slm:accuracy_metric", "inputs": _inputs(dev),
            "gold": [r["assertion"] for r in dev]}
    job = FitJob("assertion-slm", task, rows, settings, ctx.seed, spec)
    return job, {"dev": dev, "tune": tune, "test": test, "templates": templates, "clinical": clinical}


@recipe("assertion-slm", agent="ner",
        description="assertion specialist: MiniLM + LoRA sequence classifier over the marked mention's sentence "
                    "(ownership and certainty), combined with ConText rules",
        data=("aci-bench", "mts-dialog"))
def train_assertion_slm(ctx: TrainContext) -> TrainResult:
    from medslm.agents.assertion import ContextRules
    from medslm.training.assertion_templates import mentions_by_label
    from medslm.training.encoder_lora import base_record, fit_job

    job, data = prepare(ctx)
    dev, tune, test, templates, clinical = data["dev"], data["tune"], data["test"], data["templates"], data["clinical"]
    settings, task = job.settings, job.task
    dev_in = job.dev["inputs"]
    history = fit_job(job, ctx.out, device=ctx.device, log_every=50)
    log.info("assertion-slm trained: %s", history)

    from medslm.models.encoder import EncoderClassifier

    clf = EncoderClassifier(ctx.out, device=ctx.device).load()
    rules = ContextRules().load()
    def rule_labels(rows: Sequence[dict[str, Any]]) -> list[Any]:
        return [rules.classify(r["text"], [(r["start"], r["end"])])[0] for r in rows]

    dev_probs, dev_rules = clf.predict(dev_in), rule_labels(dev)
    tune_probs, tune_rules = clf.predict(_inputs(tune)), rule_labels(tune)
    grid = {a: _accuracy(_combined(tune_probs, tune_rules, a), tune) for a in ALPHAS}
    best = max(grid, key=lambda a: (round(grid[a], 4), -abs(a - 0.5)))
    write_json(ctx.out / "combine.json", {"alpha": best, "tuned_on": "assertion_ownership_tune (accuracy)",
                                          "grid": {str(a): round(v, 4) for a, v in grid.items()}})
    test_probs, test_rules = clf.predict(_inputs(test)), rule_labels(test)
    figures = {
        "ownership-dev_slm_accuracy": _accuracy(_combined(dev_probs, dev_rules, 0.0), dev),
        "ownership-dev_rules_accuracy": _accuracy([a.value for a in dev_rules], dev),
        "ownership-tune-dev_slm_accuracy": grid[0.0],
        "ownership-tune-dev_rules_accuracy": _accuracy([a.value for a in tune_rules], tune),
        "ownership-tune-dev_combined_accuracy": grid[best],
        "ownership-test_slm_accuracy": _accuracy(_combined(test_probs, test_rules, 0.0), test),
        "ownership-test_rules_accuracy": _accuracy([a.value for a in test_rules], test),
        "ownership-test_combined_accuracy": _accuracy(_combined(test_probs, test_rules, best), test),
    }
    return TrainResult(
        hyperparameters={"lora_r": settings.r, "lora_alpha": settings.alpha, "lr": settings.lr,
                         "head_lr": settings.head_lr, "batch_size": settings.batch_size, "max_epochs": settings.epochs,
                         "max_length": task.max_length, "template_examples": len(templates),
                         "template_labels": mentions_by_label(templates), "clinical_examples": len(clinical),
                         "clinical_labels": mentions_by_label(clinical), "epochs": history["epochs"],
                         "fit_device": history.get("device"), "fit_seconds": history.get("seconds"),
                         "fit_key": job.key(), "fit_reused": history.get("reused", ""),
                         "combine_alpha": best, "combine_grid": {str(a): round(v, 4) for a, v in grid.items()},
                         "dev_sets": "early stopping: assertion_ownership_dev.jsonl (81) + assertion_sentences.jsonl "
                                     "(125); alpha: assertion_ownership_tune.jsonl (55); package data",
                         "test_set": "assertion_ownership_test.jsonl (94), package data"},
        tuning="epoch kept: the ownership dev part + the first synthetic set; rules weight alpha (grid "
               + ", ".join(str(a) for a in ALPHAS) + "): the ownership tune part, which the rules were never "
               "written against; the test half is a report split only",
        figures=figures,
        base_model=base_record(),
        licences=("template grammar: medslm (Apache-2.0)",),
    )


__all__ = ["LABELS", "accuracy_metric", "clinical_examples", "prepare", "train_assertion_slm"]
