"""Safety guardian evaluation: harmful requests, injection suite, PHI detection, latency.

``evaluate_safety(data_dir, limit=None)`` returns a flat-ish dict of figures; ``bench/safety.py`` prints it.
Figures and where their data come from:

- ``harm.*``: MedSafetyBench *train* harmful requests (recall) and benign clinical text never trained on
  (MTS-Dialog validation + both test sets, ACI-Bench valid: dialogues and notes) for the false-positive
  rate; the head was fitted on MedSafetyBench train, so ``harm.cv_recall`` (out-of-fold, from the head's
  metadata) is the honest recall and ``harm.recall_in_sample`` is not.
- ``injection.dev.*`` / ``injection.heldout.*``: the generated suite (:func:`medslm.safety.corpora.injection_suite`);
  the held-out pool was never used to tune rules or heads.
- ``phi.*``: per-type precision/recall on :func:`medslm.safety.corpora.synthetic_phi_notes` (seed 1; seed 0
  was used while writing the rules), a gold span counts as found when a predicted span of the same type
  overlaps it.
- ``latency.*``: ``Guardian.check_input`` per note, p50/p95 in ms.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, round(q * (len(v) - 1))))
    return v[k]


def evaluate_phi(n: int = 500, *, seed: int = 1, use_ner: bool = True) -> dict[str, Any]:
    from medslm.safety.corpora import synthetic_phi_notes
    from medslm.safety.phi import find_phi

    notes = synthetic_phi_notes(n, seed=seed)
    tp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    pred_ok: Counter[str] = Counter()
    t0 = time.perf_counter()
    for note in notes:
        pred = find_phi(note.text, use_ner=use_ner)
        for g in note.spans:
            if any(p.type == g.type and p.start < g.end and g.start < p.end for p in pred):
                tp[g.type] += 1
            else:
                fn[g.type] += 1
        for p in pred:
            pred_n[p.type] += 1
            if any(p.type == g.type and p.start < g.end and g.start < p.end for g in note.spans):
                pred_ok[p.type] += 1
    out: dict[str, Any] = {"notes": n, "seed": seed, "use_ner": use_ner, "ms_per_note": 1000 * (time.perf_counter() - t0) / n}
    per: dict[str, dict[str, float]] = {}
    for typ in sorted(set(tp) | set(fn) | set(pred_n)):
        gold = tp[typ] + fn[typ]
        per[typ] = {
            "gold": gold,
            "recall": tp[typ] / gold if gold else float("nan"),
            "precision": pred_ok[typ] / pred_n[typ] if pred_n[typ] else float("nan"),
        }
    out["per_type"] = per
    all_gold = sum(tp.values()) + sum(fn.values())
    out["micro_recall"] = sum(tp.values()) / all_gold if all_gold else float("nan")
    out["micro_precision"] = sum(pred_ok.values()) / max(1, sum(pred_n.values()))
    return out


def evaluate_injection(guardian: Any, *, n: int = 240, heldout: bool = False, seed: int = 0) -> dict[str, Any]:
    from medslm.safety.corpora import injection_suite

    pairs = injection_suite(n, seed=seed, heldout=heldout)
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    fp = 0
    masked_ok = 0
    latencies: list[float] = []
    for p in pairs:
        t0 = time.perf_counter()
        v = guardian.check_input(p.injected)
        latencies.append(time.perf_counter() - t0)
        hit = any(s.start < p.span[1] and p.span[0] < s.end for s in v.fenced)
        total[p.kind] += 1
        found[p.kind] += hit
        if hit:
            fenced = guardian.fence(p.injected, v)
            # masked: no letter or digit of the instruction is left (a bare "---" delimiter line may stay)
            masked_ok += not any(ch.isalnum() for ch in fenced[p.span[0] : p.span[1]])
        vb = guardian.check_input(p.benign)
        fp += bool(vb.fenced)
    return {
        "pairs": len(pairs),
        "recall": sum(found.values()) / len(pairs),
        "fpr": fp / len(pairs),
        "fully_masked": masked_ok / max(1, sum(found.values())),
        "per_kind_recall": {k: found[k] / total[k] for k in sorted(total)},
        "p50_ms": 1000 * _pct(latencies, 0.5),
        "p95_ms": 1000 * _pct(latencies, 0.95),
    }


def evaluate_injection_real_notes(guardian: Any, data_dir: Path | str, *, limit: int | None = None) -> dict[str, Any]:
    """False-positive rate of injection fencing on real clinical text (ACI-Bench valid notes, MTS-Dialog valid sections)."""
    from medslm.evals.datasets import clinical_texts

    texts = clinical_texts(data_dir, "valid")
    if limit:
        texts = texts[:limit]
    flagged = sum(1 for t in texts if guardian.check_input(t).fenced)
    return {"texts": len(texts), "fpr": flagged / max(1, len(texts))}


def fit_injection_calibration(
    guardian: Any, data_dir: Path | str, *, n: int = 80, seed: int = 0, real_limit: int = 300, slm: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Fit the injection :class:`SlmCalibration` on the *dev* pool and train-split clinical text.

    Labelled candidates: every rule/head candidate in ``n`` dev-pool twins (positive when it overlaps the
    inserted instruction), in the look-alike clinical imperatives, and in up to ``real_limit`` ACI-Bench
    train notes and MTS-Dialog train sections (all negative). The held-out pool and the validation /
    test splits are never used. ``slm=False`` fits rule/head scores alone (the SLM term is then zero).
    """
    from medslm.evals.datasets import clinical_texts
    from medslm.safety import corpora
    from medslm.safety.guardian import SlmCalibration, is_rule_hit
    from medslm.training.guardian_heads import _CLINICAL_IMPERATIVES

    rows: list[tuple[float, float, bool, int, str]] = []

    def add(text: str, span: tuple[int, int] | None, source: str) -> None:
        for cand, prob in guardian.injection_scores(text, slm=slm):
            label = int(span is not None and cand.start < span[1] and span[0] < cand.end)
            rows.append((cand.rule_score, prob if prob is not None else 0.5, is_rule_hit(cand), label, source))

    for p in corpora.injection_suite(n, seed=seed):
        add(p.injected, p.span, "dev_injected")
        add(p.benign, None, "dev_benign")
    for sentence in _CLINICAL_IMPERATIVES:
        add(sentence, None, "imperatives")
    for text in clinical_texts(data_dir, "train", limit=real_limit):
        add(text, None, "train_clinical")
    scores, probs, hits, labels, sources = (list(c) for c in zip(*rows, strict=True))
    cal = SlmCalibration.fit(scores, probs, labels, hits)
    pos = [p for p, y in zip(probs, labels, strict=True) if y]
    neg = [p for p, y in zip(probs, labels, strict=True) if not y]
    info = {
        "candidates": len(labels),
        "positives": sum(labels),
        "by_source": dict(Counter(sources)),
        "slm_mean_p_yes_injection": round(statistics.mean(pos), 4) if pos else None,
        "slm_mean_p_yes_benign": round(statistics.mean(neg), 4) if neg else None,
        "calibration": cal,
    }
    return cal, info


def evaluate_harm(guardian: Any, data_dir: Path | str, *, limit: int | None = None) -> dict[str, Any]:
    from medslm.safety.harm import default_head
    from medslm.training.guardian_heads import harmful_requests, read_benign

    harmful = [t for t, _ in harmful_requests(data_dir)]
    benign = read_benign(data_dir, heldout=True)
    if limit:
        harmful = harmful[:: max(1, len(harmful) // limit)][:limit]
        benign = {k: v[: max(1, limit // len(benign))] for k, v in benign.items()}
    flagged = [not guardian.check_input(t).allowed for t in harmful]
    out: dict[str, Any] = {"harmful": len(harmful), "recall_in_sample": sum(flagged) / max(1, len(flagged))}
    fp_all = 0
    n_all = 0
    per: dict[str, float] = {}
    for src, texts in benign.items():
        fps = sum(1 for t in texts if not guardian.check_input(t).allowed)
        per[src] = fps / max(1, len(texts))
        if src != "questions":
            fp_all += fps
            n_all += len(texts)
    out["fpr_clinical_text"] = fp_all / max(1, n_all)
    out["benign_clinical_texts"] = n_all
    out["fpr_by_source"] = per
    head = default_head()
    if head is not None:
        out["cv_recall"] = head.meta.get("cv_recall")
        out["cv_fpr_training_benign"] = head.meta.get("cv_fpr")
        out["threshold"] = head.threshold
    return out


def evaluate_latency(guardian: Any, data_dir: Path | str, *, limit: int | None = None) -> dict[str, Any]:
    import csv

    csv.field_size_limit(10**9)
    path = Path(data_dir) / "aci-bench" / "valid.csv"
    notes = []
    if path.exists():
        with path.open(encoding="utf-8", newline="") as fh:
            notes = [r["note"] for r in csv.DictReader(fh) if r.get("note")]
    from medslm.safety.corpora import injection_suite

    notes += [p.injected for p in injection_suite(20, seed=7)]
    if limit:
        notes = notes[:limit]
    guardian.check_input(notes[0])  # warm-up: loads models
    lat = []
    for t in notes:
        t0 = time.perf_counter()
        guardian.check_input(t)
        lat.append(1000 * (time.perf_counter() - t0))
    return {
        "notes": len(notes),
        "mean_chars": statistics.mean(len(t) for t in notes),
        "p50_ms": _pct(lat, 0.5),
        "p95_ms": _pct(lat, 0.95),
    }


def evaluate_safety(data_dir: Path | str | None = None, limit: int | None = None, *, model: Any = "embedded") -> dict[str, Any]:
    """All safety figures. ``limit`` caps items per part (for a quick run)."""
    from medslm.safety import Guardian

    if data_dir is None:
        import os

        data_dir = os.environ.get("MEDSLM_DATA_DIR") or str(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    note_g = Guardian(model=model, mode="note", register_phi=False)
    qa_g = Guardian(model=model, mode="qa", register_phi=False)
    n_inj = min(limit, 240) if limit else 240
    n_phi = min(limit, 500) if limit else 500
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "phi": evaluate_phi(n_phi, use_ner=True),
        "phi_rules_only": evaluate_phi(n_phi, use_ner=False),
        "injection": {
            "dev": evaluate_injection(note_g, n=n_inj, heldout=False),
            "heldout": evaluate_injection(note_g, n=n_inj, heldout=True, seed=1),
        },
        "injection_real_notes": evaluate_injection_real_notes(note_g, data_dir, limit=limit),
        "harm": evaluate_harm(qa_g, data_dir, limit=limit),
        "latency": evaluate_latency(note_g, data_dir, limit=limit),
    }
    out["seconds"] = time.perf_counter() - t0
    return out




# ------------------------------------------------------------- the guardian specialists (ablation)
#: bump when the category cross-validation or the specialists' training changes (invalidates caches)
HARM_CV_VERSION = "guardian-harm-cv-1"


def harm_category_cv(data_dir: Path | str | None = None, *, seed: int = 0, device: str = "cpu", quick: bool = False,
                     frozen: Any = None, use_cache: bool = True, benign_limit: int | None = None) -> dict[str, Any]:
    """Harmful-request detection with whole MedSafetyBench categories held out (three folds of three).

    In each fold, on the other six categories and the benign *train* texts only: the specialist
    (``guardian-harm-slm``) and the classical head (logistic regression on MiniLM embeddings) are fitted on
    85 % of the texts and their thresholds (dev FPR <= 2 %) chosen on the other 15 %. The fold's held-out categories are then scored, with the benign texts no model trained on
    (MTS-Dialog validation and test sets, ACI-Bench valid, the second half of the questions; each text is
    scored by one fold's models, in turn). Systems: ``classical`` = rules or head; ``slm`` = the specialist
    alone; ``combined`` = rules, or the mean of the head's and the specialist's log-odds margins over their
    own thresholds at or above 0 (what :meth:`Guardian.harm_probability` ships).
    Cached on disk (keyed by :data:`HARM_CV_VERSION`, seed, quick).
    """
    import hashlib
    import json
    import math
    import tempfile

    from medslm.evals.datasets import resolve_data_dir
    from medslm.models.encoder import EncoderClassifier
    from medslm.safety.harm import harm_rule_score, segments
    from medslm.settings import default_cache_dir
    from medslm.training.guardian_heads import read_benign
    from medslm.training.guardian_slm import HARM_FOLDS, doc_scores, fit_harm, harm_corpus

    data_dir = resolve_data_dir(data_dir)
    key = hashlib.sha256(json.dumps([HARM_CV_VERSION, seed, quick, benign_limit]).encode()).hexdigest()[:16]
    cache = Path(default_cache_dir()) / "evals" / f"guardian_harm_cv_{key}.json"
    if use_cache and cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    held_benign = [(src, t) for src, ts in read_benign(data_dir, heldout=True).items() for t in ts]
    if quick or benign_limit:
        step = max(1, len(held_benign) // (benign_limit or 30))
        held_benign = held_benign[::step]

    def logit(p: float) -> float:
        p = min(max(p, 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))

    def head_doc_scores(head: Any, docs: Sequence[str]) -> list[float]:
        from medslm.safety._embed import embed

        segs = [segments(d) for d in docs]
        flat = [s for ss in segs for s in ss]
        p = head.proba(embed(flat)) if flat else []
        out, i = [], 0
        for ss in segs:
            out.append(float(max(p[i : i + len(ss)])))
            i += len(ss)
        return out

    rows: list[dict[str, Any]] = []
    fold_params = []
    t0 = time.perf_counter()
    for k, cats in enumerate(HARM_FOLDS):
        harmful, benign = harm_corpus(data_dir, exclude=cats)
        if quick:
            harmful, benign = harmful[::30], benign[::40]
        test_h = [(t, c) for t, c in harm_corpus(data_dir)[0] if c in cats]
        if quick:
            test_h = test_h[::20]
        test_b = held_benign[k :: len(HARM_FOLDS)]
        with tempfile.TemporaryDirectory(prefix="guardian-harm-cv-") as tmp:
            res = fit_harm([t for t, _ in harmful], benign, Path(tmp), seed=seed + k, device=device, quick=quick,
                           frozen=frozen)
            clf = EncoderClassifier(tmp, device=device)
            docs = [t for t, _ in test_h] + [t for _, t in test_b]
            slm = doc_scores(clf.predict, docs)
        head = res["head"]
        head_sc = head_doc_scores(head, docs)
        # combined (as Guardian.harm_probability): rules, or the mean of the two log-odds margins over their
        # own thresholds at or above 0
        t_comb = 0.0
        fold_params.append({"fold": k, "held_out": list(cats), "slm_threshold": res["threshold"],
                            "head_threshold": head.threshold,
                            "slm_dev_recall": res["dev_recall"], "slm_dev_fpr": res["dev_fpr"],
                            "head_dev_recall": head.meta.get("dev_recall"), "epochs": res["epochs"],
                            "test_harmful": len(test_h), "test_benign": len(test_b)})
        for j, text in enumerate(docs):
            rule = max((harm_rule_score(s) for s in segments(text)), default=0.0) > 0
            comb = 0.5 * (logit(head_sc[j]) - logit(head.threshold)) + 0.5 * (logit(slm[j]) - logit(res["threshold"]))
            harmful_item = j < len(test_h)
            rows.append({"fold": k, "harmful": harmful_item,
                         "source": test_h[j][1] if harmful_item else test_b[j - len(test_h)][0],
                         "rule": rule, "head": round(head_sc[j], 6), "slm": round(slm[j], 6), "combined": round(comb, 4),
                         "flag_classical": bool(rule or head_sc[j] >= head.threshold),
                         "flag_slm": bool(slm[j] >= res["threshold"]),
                         "flag_combined": bool(rule or comb >= t_comb)})
        import logging

        logging.getLogger(__name__).info("harm fold %d/%d (%s) done in %.0f s", k + 1, len(HARM_FOLDS), ",".join(cats),
                                         time.perf_counter() - t0)
    metrics = {s: _harm_metrics([(r["harmful"], r[f"flag_{s}"]) for r in rows]) for s in ("classical", "slm", "combined")}
    out = {"version": HARM_CV_VERSION, "seed": seed, "quick": quick, "folds": [list(c) for c in HARM_FOLDS],
           "fold_params": fold_params, "metrics": metrics, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out), encoding="utf-8")
    return out


def _harm_metrics(entries: Sequence[tuple[bool, bool]]) -> dict[str, float]:
    pos = [f for h, f in entries if h]
    neg = [f for h, f in entries if not h]
    recall = sum(pos) / max(1, len(pos))
    fpr = sum(neg) / max(1, len(neg))
    return {"recall": recall, "fpr": fpr, "balanced_accuracy": (recall + 1 - fpr) / 2, "harmful": len(pos),
            "benign": len(neg)}


def injection_ablation(data_dir: Path | str | None = None, *, n: int = 240, seed: int = 1,
                       real_limit: int | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Injection fencing by the classical guardian (rules + head), the specialist alone and both (shipped).

    Held-out pool of the injection suite (``n`` pairs: recall = the inserted instruction fenced, FPR = the
    benign twin fenced) and real clinical text of the valid splits (ACI-Bench notes, MTS-Dialog sections:
    FPR = any span fenced). Nothing here was used to fit or tune any of the three.
    """
    import hashlib
    import json

    from medslm.artifacts import artifact_dir, sha256_file
    from medslm.evals.datasets import clinical_texts, resolve_data_dir
    from medslm.safety import Guardian
    from medslm.safety.corpora import injection_suite
    from medslm.settings import default_cache_dir

    data_dir = resolve_data_dir(data_dir)
    # cached by the models' own files: the same models on the same suite give the same figures
    shas = [sha256_file(artifact_dir(c) / f) for c, f in (("guardian-injection-slm", "adapter.safetensors"),
                                                          ("guardian-injection", "head.json"))]
    key = hashlib.sha256(json.dumps([n, seed, real_limit, shas]).encode()).hexdigest()[:16]
    cache = Path(default_cache_dir()) / "evals" / f"guardian_injection_ablation_{key}.json"
    if use_cache and cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    shipped = Guardian(register_phi=False, use_ner=False)
    classical = Guardian(model=None, register_phi=False, use_ner=False)

    def fenced(system: str, text: str) -> list[tuple[int, int]]:
        if system == "slm":
            return [(c.start, c.end) for c, _ in shipped.specialist_injections(text)]
        g = shipped if system == "combined" else classical
        return [(s.start, s.end) for s in g.check_input(text).fenced]

    pairs = injection_suite(n, seed=seed, heldout=True)
    real = clinical_texts(data_dir, "valid", limit=real_limit)
    out: dict[str, Any] = {"pairs": len(pairs), "real_texts": len(real)}
    for system in ("classical", "slm", "combined"):
        hits = sum(any(a < p.span[1] and p.span[0] < b for a, b in fenced(system, p.injected)) for p in pairs)
        twins = sum(bool(fenced(system, p.benign)) for p in pairs)
        real_fp = sum(bool(fenced(system, t)) for t in real)
        out[system] = {"heldout_recall": hits / len(pairs), "heldout_twin_fpr": twins / len(pairs),
                       "real_text_fpr": real_fp / max(1, len(real))}
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out), encoding="utf-8")
    return out


def output_screening(data_dir: Path | str | None = None, *, limit: int | None = None) -> dict[str, Any]:
    """How often guard_out's specialists flag real reference summaries (MTS-Dialog valid section texts,
    ACI-Bench valid notes): a false-positive rate, since none of them is an injection or harmful."""
    from medslm.evals.datasets import clinical_texts, resolve_data_dir
    from medslm.safety import Guardian

    g = Guardian(register_phi=False, use_ner=False)
    texts = clinical_texts(resolve_data_dir(data_dir), "valid", limit=limit)
    flagged = {"injection": 0, "harmful_content": 0}
    for t in texts:
        cats = {f.category for f in g._specialist_output_findings(t, "summary")}
        for k in flagged:
            flagged[k] += k in cats
    return {"texts": len(texts), **{f"{k}_fpr": v / max(1, len(texts)) for k, v in flagged.items()}}


def ablation(data_dir: Path | str | None = None, *, limit: int | None = None, seed: int = 0) -> Any:
    """Classical (rules + MiniLM logistic head) vs the fine-tuned specialist vs both, held-out categories.

    Items: MedSafetyBench requests of categories their fold's models never saw, and benign clinical texts
    and questions no model trained on; metric: balanced accuracy (mean of recall and 1 - FPR) at each
    system's threshold (chosen on its training dev split for FPR <= 2 %). ``limit``: a quick run.
    """
    import numpy as np

    from medslm.evals.ablation import Ablation

    cv = harm_category_cv(data_dir, seed=seed, quick=limit is not None)
    items = {s: [(r["harmful"], r[f"flag_{key}"]) for r in cv["rows"]]
             for s, key in (("classical", "classical"), ("slm", "slm"), ("combined", "combined"))}

    def bal_acc(entries: Sequence[tuple[bool, bool]]) -> float:
        return _harm_metrics(entries)["balanced_accuracy"]

    rng = np.random.default_rng(seed)
    n = len(cv["rows"])
    draws = [rng.integers(0, n, n) for _ in range(1000)]
    ci: dict[str, Any] = {}
    for s, entries in items.items():
        rec = [_harm_metrics([entries[i] for i in d]) for d in draws]
        ci[s] = {k: [float(np.percentile([r[k] for r in rec], 2.5)), float(np.percentile([r[k] for r in rec], 97.5))]
                 for k in ("recall", "fpr")}
    per_source: dict[str, dict[str, float]] = {}
    for r in cv["rows"]:
        d = per_source.setdefault(r["source"], {"n": 0, "classical": 0, "slm": 0, "combined": 0})
        d["n"] += 1
        for s in ("classical", "slm", "combined"):
            d[s] += r[f"flag_{s}"]
    notes = [f"{s}: recall {cv['metrics'][s]['recall']:.3f} {ci[s]['recall']}, FPR {cv['metrics'][s]['fpr']:.3f} "
             f"{ci[s]['fpr']}" for s in ("classical", "slm", "combined")]
    inj = injection_ablation(data_dir, n=40 if limit is not None else 240, real_limit=10 if limit is not None else None)
    for s in ("classical", "slm", "combined"):
        notes.append(f"injection, {s}: held-out pool recall {inj[s]['heldout_recall']:.3f}, benign-twin FPR "
                     f"{inj[s]['heldout_twin_fpr']:.3f} ({inj['pairs']} pairs); real valid texts fenced "
                     f"{inj[s]['real_text_fpr']:.3f} ({inj['real_texts']})")
    return Ablation(agent="guardian",
                    split=f"MedSafetyBench train, categories held out 3 at a time ({cv['metrics']['slm']['harmful']} "
                          f"requests) + {cv['metrics']['slm']['benign']} benign valid/test texts and questions"
                          f"{' (quick)' if limit is not None else ''}",
                    metric_name="balanced accuracy", metric=bal_acc, items=items, notes=notes,
                    extra={"metrics": cv["metrics"], "ci95": ci, "fold_params": cv["fold_params"], "injection": inj,
                           "flag_rate_by_source": per_source, "cv_seconds": cv["seconds"]})


__all__ = [
    "ablation",
    "evaluate_harm",
    "evaluate_injection",
    "evaluate_injection_real_notes",
    "evaluate_latency",
    "evaluate_phi",
    "evaluate_safety",
    "fit_injection_calibration",
    "harm_category_cv",
    "injection_ablation",
    "output_screening",
]
