"""ICD-10-CM coding evaluation on CodiEsp (CLEF eHealth 2020) diagnosis codes, English text.

Metrics: MAP (the CodiEsp-D metric: mean over documents of the average precision of the ranked code list,
normalized by the number of gold codes), micro precision/recall/F1 of the codes emitted at the agent's
threshold, and the number of emitted codes that are not valid ICD-10-CM (must be 0). A lexical-search-only
baseline (the knowledge graph's lexicon matcher over the text, ranked by match score and frequency) runs
in the same call. The agent's train-split models are fitted on ``codiesp/train`` only; its threshold is
the best out-of-fold micro-F1 on train (dev is never used for fitting or tuning).

MAP is computed on the agent's whole ranking; P/R/F1 on what it emits (codes above the threshold that
have an evidence span in the note, after the negation / family / Excludes1 rules). ``with_ner`` runs the
NER agent first, as the chart-review graph does, and reports its per-note latency next to the coder's.
Full run (latency figures need a quiet machine)::

    medslm eval --task icd --probe 0 --limit 1000 --data ../shared/data --out reports/icd
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.agents.icd_model import normalize_code
from medslm.evals.datasets import dataset_path


@dataclass(frozen=True)
class CodiespDoc:
    id: str
    text: str
    codes: tuple[str, ...]  # gold diagnosis codes, dotted upper-case ("N39.0")


def codiesp_files(root: Path, split: str) -> tuple[Path, Path]:
    """The diagnosis-code file and the English text folder of a CodiEsp split under the codiesp folder."""
    return root / split / f"{split}D.tsv", root / split / "text_files_en"


def read_codiesp(data_dir: str | Path | None = None, split: str = "dev", limit: int | None = None) -> list[CodiespDoc]:
    """The English documents of a CodiEsp split with their gold diagnosis codes (``{split}D.tsv``)."""
    codes_file, text_dir = codiesp_files(dataset_path("codiesp", data_dir), split)
    gold: dict[str, list[str]] = defaultdict(list)
    with codes_file.open(encoding="utf-8") as fh:
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 2 and cols[1].strip():
                code = normalize_code(cols[1])
                if code not in gold[cols[0]]:
                    gold[cols[0]].append(code)
    docs = []
    for path in sorted(text_dir.glob("*.txt")):
        docs.append(CodiespDoc(path.stem, path.read_text(encoding="utf-8"), tuple(gold.get(path.stem, ()))))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def average_precision(ranked: Sequence[str], gold: Iterable[str]) -> float:
    g = set(gold)
    if not g:
        return 0.0
    hits, total = 0, 0.0
    for k, code in enumerate(ranked, 1):
        if code in g:
            hits += 1
            total += hits / k
    return total / len(g)


def mean_average_precision(rankings: Mapping[str, Sequence[str]], gold: Mapping[str, Iterable[str]]) -> float:
    docs = [d for d in gold if set(gold[d])]
    return sum(average_precision(rankings.get(d, ()), gold[d]) for d in docs) / len(docs) if docs else 0.0


def micro_prf(emitted: Mapping[str, Iterable[str]], gold: Mapping[str, Iterable[str]]) -> dict[str, float]:
    tp = fp = fn = 0
    for d, g in gold.items():
        gs, es = set(g), set(emitted.get(d, ()))
        tp += len(gs & es)
        fp += len(es - gs)
        fn += len(gs - es)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "emitted": tp + fp}


def lexical_baseline(kg: Any, text: str) -> list[tuple[str, float]]:
    """Codes of the knowledge graph's ICD-10-CM lexicon matches, ranked by best match score then count."""
    score: dict[str, float] = {}
    count: Counter[str] = Counter()
    for m in kg.matcher(("ICD10CM",)).find(text):
        for cid in m.concept_ids[:2]:
            code = cid.split(":", 1)[1]
            score[code] = max(score.get(code, 0.0), m.score)
            count[code] += 1
    return sorted(((c, s + 0.01 * min(count[c], 10)) for c, s in score.items()), key=lambda x: -x[1])


def _latency(xs: list[float]) -> dict[str, float]:
    ys = sorted(xs)
    if not ys:
        return {}
    return {"p50_ms": round(1000 * statistics.median(ys), 1), "p95_ms": round(1000 * ys[min(len(ys) - 1, int(0.95 * len(ys)))], 1)}


def _invalid(kg: Any, codes: Iterable[str]) -> int:
    return sum(1 for c in codes if kg.get(c, "ICD10CM") is None)


def evaluate_icd(data_dir: str | Path | None = None, split: str = "dev", limit: int | None = None, *,
                 model: Any = "embedded", systems: Sequence[str] = ("lexical", "agent"),
                 with_ner: bool = True, threshold: float | None = None) -> dict[str, Any]:
    """CodiEsp-D: MAP, micro-P/R/F1 at the threshold and invalid-code count, baseline and agent side by side."""
    from medslm.knowledge import KnowledgeGraph
    from medslm.records import Note

    docs = read_codiesp(data_dir, split, limit)
    gold = {d.id: d.codes for d in docs}
    kg = KnowledgeGraph.default()
    out: dict[str, Any] = {"split": split, "documents": len(docs), "gold_codes": sum(len(d.codes) for d in docs),
                           "gold_not_icd10cm": _invalid(kg, {c for d in docs for c in d.codes})}
    if "lexical" in systems:
        t = time.perf_counter()
        ranked = {d.id: [c for c, _ in lexical_baseline(kg, d.text)] for d in docs}
        out["lexical"] = {
            "map": round(mean_average_precision(ranked, gold), 4),
            **{f"all_{k}": v for k, v in micro_prf(ranked, gold).items()},
            "invalid_codes": _invalid(kg, {c for r in ranked.values() for c in r}),
            "seconds": round(time.perf_counter() - t, 2),
        }
    if "agent" in systems:
        from medslm.agents.icd import IcdAgent

        agent = IcdAgent(model=model, kg=kg, **({"threshold": threshold} if threshold is not None else {}))
        agent.load()
        ner = None
        if with_ner:
            from medslm.agents.ner import NerAgent

            ner = NerAgent(model=model, kg=kg).load()
        ranked, emitted, lat_icd, lat_ner, confs, emitted_all = {}, {}, [], [], [], []
        for d in docs:
            note = Note(id=d.id, text=d.text)
            state: dict[str, Any] = {}
            if ner is not None:
                t = time.perf_counter()
                state["entities"] = ner.run(note, {})
                lat_ner.append(time.perf_counter() - t)
            t = time.perf_counter()
            ents = state["entities"].output if "entities" in state else None
            coding = agent.code(note.text, ents)
            lat_icd.append(time.perf_counter() - t)
            ranked[d.id] = [c.code for c in coding.ranked]
            emitted[d.id] = [c.code for c in coding.chosen]
            emitted_all.extend(emitted[d.id])
            confs.extend((c.confidence, c.code in d.codes) for c in coding.chosen)
        out["agent"] = {
            "map": round(mean_average_precision(ranked, gold), 4),
            "threshold": agent.threshold,
            **micro_prf(emitted, gold),
            "invalid_codes": _invalid(kg, set(emitted_all) | {c for r in ranked.values() for c in r}),
            "codes_per_note": round(len(emitted_all) / max(1, len(docs)), 2),
            "icd_latency": _latency(lat_icd),
            "ner_latency": _latency(lat_ner),
        }
        if confs:
            out["agent"]["ece"] = round(_ece(confs), 4)
    return out


def ablation(data_dir: str | Path | None = None, *, limit: int | None = None, seed: int = 0) -> Any:
    """Classical-only vs SLM-only vs combined ICD coding on CodiEsp **dev** (never fitted or tuned on).

    The three systems rank the same candidates (lexicon, Alphabetic Index, order-free matches and their
    completions, and the ranker's top codes): *classical* by the stacker without the SLM, *slm* by the
    reranker's probability alone, *combined* by the stacker with the reranker's scores (what the agent
    ships). Items are documents; the headline metric is MAP (the CodiEsp-D metric); each item also
    carries its emitted codes' true/false positives and misses (micro P/R/F1 at each system's own
    threshold, tuned on train folds), and the count of emitted or ranked codes outside ICD-10-CM (0).
    """
    from medslm.agents.icd import IcdAgent
    from medslm.evals.ablation import Ablation
    from medslm.knowledge import KnowledgeGraph

    del seed  # deterministic: no sampling
    docs = read_codiesp(data_dir, "dev", limit)
    kg = KnowledgeGraph.default()
    agent = IcdAgent(model=None, kg=kg).load()
    systems = ("classical", "slm", "combined")
    items: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    latency: list[float] = []
    covered = n_gold = n_cand = 0
    for d in docs:
        gold = set(d.codes)
        for system in systems:
            t = time.perf_counter()
            coding = agent.code(d.text, system=system)
            if system == "combined":
                latency.append(time.perf_counter() - t)
            ranked = [c.code for c in coding.ranked]
            emitted = {c.code for c in coding.chosen}
            items[system].append({
                "ap": average_precision(ranked, gold), "tp": len(emitted & gold), "fp": len(emitted - gold),
                "fn": len(gold - emitted), "invalid": _invalid(kg, emitted | set(ranked))})
            if system == "combined":
                valid_gold = {c for c in gold if kg.get(c, "ICD10CM") is not None}
                covered += len(valid_gold & set(ranked))
                n_gold += len(valid_gold)
                n_cand += len(ranked)

    def metric(entries: Sequence[dict[str, float]]) -> float:
        return float(sum(e["ap"] for e in entries) / len(entries)) if entries else 0.0

    micro = {}
    for s in systems:
        tp, fp, fn = (sum(e[k] for e in items[s]) for k in ("tp", "fp", "fn"))
        p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
        micro[s] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                    "invalid_codes": int(sum(e["invalid"] for e in items[s]))}
    return Ablation(
        agent="icd", split=f"CodiEsp dev ({len(docs)} documents)", metric_name="MAP", metric=metric, items=items,
        notes=[f"candidate gold coverage {covered / max(1, n_gold):.3f} ({n_cand / max(1, len(docs)):.0f} candidates "
               f"per document; gold codes that are valid ICD-10-CM 2026)",
               "micro P/R/F1 at each system's threshold (tuned on CodiEsp train folds): " + "; ".join(
                   f"{s} {v['precision']:.3f}/{v['recall']:.3f}/{v['f1']:.3f}, invalid {v['invalid_codes']}"
                   for s, v in micro.items())],
        extra={"micro": micro, "coverage": covered / max(1, n_gold), "candidates_per_doc": n_cand / max(1, len(docs)),
               "icd_latency": _latency(latency)},
    )


def _ece(pairs: Sequence[tuple[float, bool]], bins: int = 10) -> float:
    tot = len(pairs)
    err = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(c, y) for c, y in pairs if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if sel:
            err += len(sel) / tot * abs(sum(c for c, _ in sel) / len(sel) - sum(y for _, y in sel) / len(sel))
    return err


__all__ = ["CodiespDoc", "ablation", "average_precision", "codiesp_files", "evaluate_icd", "lexical_baseline",
           "mean_average_precision", "micro_prf", "normalize_code", "read_codiesp"]
