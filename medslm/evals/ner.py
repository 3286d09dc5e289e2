"""NER evaluation on public corpora: strict-span P/R/F1 of the NER agent next to a lexicon-only baseline.

- NCBI-disease test: the 100 abstracts of ``ncbi-disease/original/NCBItestset_corpus.txt`` (the same
  documents and 960 mentions as ``conll/test.tsv``), scored on exact character spans, so that the agent
  runs on whole documents as it does on notes.
- BC5CDR devel (``bc5cdr/devel.tsv``, chemicals and diseases): the IOB file has no document boundaries;
  tokens are joined by single spaces and consecutive sentences grouped by ten into pseudo-documents.

``evaluate_ner(data_dir, limit=None, systems=("lexicon", "agent"))`` returns every figure in one dict;
:func:`ablation` (``bench/ablation.py --agent ner``) scores classical-only (CRF + lexicon + rules), the NER
specialist alone and the shipped combination per document, for bootstrap intervals.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medslm.evals.datasets import resolve_data_dir
from medslm.training.ner_crf import CORPORA

#: corpus name -> IOB label -> the agent's entity type value
LABEL_TYPES = {"Disease": "problem", "Chemical": "medication"}


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    spans: tuple[tuple[int, int, str], ...]  # (start, end, label)


def read_ncbi(data_dir: str | Path | None = None, split: str = "test") -> list[Doc]:
    """NCBI-disease documents (title + abstract) with their disease mentions as character spans."""
    name = {"test": "NCBItestset_corpus.txt", "devel": "NCBIdevelopset_corpus.txt", "train": "NCBItrainset_corpus.txt"}[split]
    path = resolve_data_dir(data_dir) / "ncbi-disease" / "original" / name
    docs: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            if "|t|" in line[:20] or "|a|" in line[:20]:
                pmid, part, body = line.split("|", 2)
                d = docs.setdefault(pmid, {"t": "", "a": "", "spans": []})
                d[part] = body
                continue
            cols = line.split("\t")
            if len(cols) >= 4:
                docs[cols[0]]["spans"].append((int(cols[1]), int(cols[2]), "Disease"))
    out = []
    for pmid, d in docs.items():
        text = d["t"] + " " + d["a"]
        out.append(Doc(pmid, text, tuple(sorted(set(d["spans"])))))
    return out


def read_iob_docs(path: Path, sentences_per_doc: int = 10) -> list[Doc]:
    """An IOB file as pseudo-documents: tokens joined by spaces, ``sentences_per_doc`` sentences each."""
    from medslm.agents.crf_tagger import iob_spans, read_iob

    sents = read_iob(path)
    docs = []
    for k in range(0, len(sents), sentences_per_doc):
        text = ""
        spans: list[tuple[int, int, str]] = []
        for toks, tags in sents[k : k + sentences_per_doc]:
            offs = []
            for t in toks:
                if text and not text.endswith("\n"):
                    text += " "
                offs.append((len(text), len(text) + len(t)))
                text += t
            text += "\n"
            for s, e, lab in iob_spans(tags):
                spans.append((offs[s][0], offs[e - 1][1], lab))
        docs.append(Doc(f"{path.stem}-{k // sentences_per_doc}", text, tuple(spans)))
    return docs


def prf(gold: set[Any], pred: set[Any]) -> dict[str, float]:
    tp = len(gold & pred)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(gold) if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "gold": len(gold), "pred": len(pred), "tp": tp}


def _score(docs: Sequence[Doc], preds: Sequence[Iterable[tuple[int, int, str]]], labels: Sequence[str]) -> dict[str, Any]:
    gold = {(d.id, s, e, lab) for d in docs for s, e, lab in d.spans if lab in labels}
    pred = {(d.id, s, e, lab) for d, ps in zip(docs, preds, strict=True) for s, e, lab in ps if lab in labels}
    out: dict[str, Any] = {"overall": prf(gold, pred)}
    if len(labels) > 1:
        for lab in labels:
            out[lab] = prf({g for g in gold if g[3] == lab}, {p for p in pred if p[3] == lab})
    return out


class LexiconBaseline:
    """Lexicon-only NER: train-split mentions plus knowledge-graph names (diseases), longest match."""

    def __init__(self, corpus: str, data_dir: Path, kg: Any = None) -> None:
        from medslm.agents.crf_tagger import iob_spans, read_iob

        self.labels = CORPORA[corpus][1]
        table: dict[tuple[str, ...], str] = {}
        for rel in CORPORA[corpus][0]:
            for toks, tags in read_iob(data_dir / rel):
                for s, e, lab in iob_spans(tags):
                    if lab in self.labels:
                        table.setdefault(tuple(t.lower() for t in toks[s:e]), lab)
        self.table = table
        self.max_len = max((len(k) for k in table), default=1)
        self.kg = kg

    def predict(self, text: str) -> list[tuple[int, int, str]]:
        from medslm.agents.crf_tagger import tokenize

        toks = tokenize(text)
        low = [text[a:b].lower() for a, b in toks]
        out: list[tuple[int, int, str]] = []
        i = 0
        while i < len(toks):
            for n in range(min(self.max_len, len(toks) - i), 0, -1):
                lab = self.table.get(tuple(low[i : i + n]))
                if lab:
                    out.append((toks[i][0], toks[i + n - 1][1], lab))
                    i += n
                    break
            else:
                i += 1
        if self.kg is not None and "Disease" in self.labels:
            from medslm.agents.ner import _NOT_MENTIONS

            taken = [(s, e) for s, e, _ in out]
            for m in self.kg.matcher(("ICD10CM", "HPO")).find(text):
                if m.text.lower() in _NOT_MENTIONS or any(a < m.end and m.start < b for a, b in taken):
                    continue
                out.append((m.start, m.end, "Disease"))
        return sorted(out)


def _agent_predict(agent: Any, text: str, labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """The agent's spans of ``text`` as ``(start, end, corpus label)``."""
    entities, _ = agent.extract(text)
    type_to_label = {v: k for k, v in LABEL_TYPES.items() if k in labels}
    return [(e.start, e.end, type_to_label[e.type.value]) for e in entities if e.type.value in type_to_label]


def _latency(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    ys = sorted(xs)
    return {"p50_ms": round(1000 * statistics.median(ys), 1), "p95_ms": round(1000 * ys[min(len(ys) - 1, int(0.95 * len(ys)))], 1)}


#: the NER agent's configuration on the public corpora (abstracts: no clinical lexicon spans, no rule
#: types, no abbreviations, no assertion or concepts) for each system of the ablation
SYSTEM_OPTIONS: dict[str, dict[str, Any]] = {
    "classical": {"slm": None, "propagate": True},    # the corpus's CRF (+ its lexicon features) + propagation rules
    "slm": {"fusion": False, "tagger": None, "propagate": False},  # the NER specialist alone
    "combined": {"propagate": False},                 # what ships: the specialist fused with the CRF (propagation
                                                      # off: chosen on NCBI-disease devel, 0.844 vs 0.835 with it)
}


def corpus_agent(corpus: str, system: str = "combined", *, kg: Any = None, model: Any = None, **kw: Any) -> Any:
    """The NER agent configured for a public corpus (``ncbi``: the ncbi head and ``ner-crf-ncbi``;
    ``bc5cdr``: the bc5cdr head and ``ner-crf``) as one system of the ablation."""
    from medslm.agents.ner import NerAgent

    opts: dict[str, Any] = {"lexicon_spans": False, "rule_types": False, "assertion": False, "concepts": False,
                            "abbreviations": False, "head": corpus, "tagger": "auto", **SYSTEM_OPTIONS[system], **kw}
    return NerAgent(model=model, kg=kg, **opts).load()


def evaluate_corpus(corpus: str, docs: Sequence[Doc], data_dir: Path, systems: Sequence[str], *,
                    model: Any = None, kg: Any = None, tagger: str | None = None) -> dict[str, Any]:
    labels = CORPORA[corpus][1]
    out: dict[str, Any] = {"documents": len(docs), "mentions": sum(len(d.spans) for d in docs)}
    if "lexicon" in systems:
        base = LexiconBaseline(tagger or corpus, data_dir, kg=kg)
        t = time.perf_counter()
        preds = [base.predict(d.text) for d in docs]
        out["lexicon"] = {**_score(docs, preds, labels), "seconds": round(time.perf_counter() - t, 2)}
    for system in systems:
        if system == "lexicon":
            continue
        name = "combined" if system == "agent" else system
        extra = {"tagger": tagger} if tagger is not None and name != "slm" else {}
        agent = corpus_agent(corpus, name, kg=kg, model=model, **extra)
        preds, lat = [], []
        for d in docs:
            t = time.perf_counter()
            preds.append(_agent_predict(agent, d.text, labels))
            lat.append(time.perf_counter() - t)
        out[system] = {**_score(docs, preds, labels), **_latency(lat)}
    return out


def evaluate_ner(data_dir: str | Path | None = None, limit: int | None = None,
                 systems: Sequence[str] = ("lexicon", "agent"), *, model: Any = None,
                 corpora: Sequence[str] = ("ncbi", "bc5cdr")) -> dict[str, Any]:
    """Strict-span F1 on NCBI-disease test and BC5CDR devel, lexicon baseline and agent side by side."""
    from medslm.knowledge import KnowledgeGraph

    root = resolve_data_dir(data_dir)
    kg = KnowledgeGraph.default()
    results: dict[str, Any] = {}
    if "ncbi" in corpora:
        docs = read_ncbi(root, "test")[:limit]
        results["ncbi_disease_test"] = evaluate_corpus("ncbi", docs, root, systems, model=model, kg=kg)
    if "bc5cdr" in corpora:
        docs = read_iob_docs(root / "bc5cdr" / "devel.tsv")[:limit]
        results["bc5cdr_devel"] = evaluate_corpus("bc5cdr", docs, root, systems, model=model, kg=kg)
    from medslm.agents.assertion import AssertionClassifier, evaluate_assertion

    clf = AssertionClassifier().load()
    a = evaluate_assertion(clf)
    results["assertion_synthetic"] = {k: a[k] for k in ("n", "accuracy", "per_class")}
    a = evaluate_assertion(clf, "ownership-test")
    results["assertion_ownership_test"] = {k: a[k] for k in ("n", "accuracy", "per_class")}
    return results


def _counts(doc: Doc, pred: Sequence[tuple[int, int, str]], labels: Sequence[str]) -> tuple[int, int, int]:
    gold = {(s, e, lab) for s, e, lab in doc.spans if lab in labels}
    got = {(s, e, lab) for s, e, lab in pred if lab in labels}
    return len(gold & got), len(got - gold), len(gold - got)


def ablation(data_dir: str | Path | None = None, *, limit: int | None = None, seed: int = 0,
             corpora: Sequence[str] = ("ncbi", "bc5cdr")) -> list[Any]:
    """Classical-only (the corpus's CRF with its lexicon features + propagation rules), the NER specialist
    alone, and the combination that ships, on NCBI-disease test and BC5CDR devel (neither fitted nor tuned
    on): per-document ``(tp, fp, fn)`` of strict spans, for :func:`medslm.evals.ablation.summarize`."""
    from medslm.evals.ablation import Ablation, micro_f1
    from medslm.knowledge import KnowledgeGraph

    root = resolve_data_dir(data_dir)
    kg = KnowledgeGraph.default()
    out = []
    for corpus in corpora:
        if corpus == "ncbi":
            docs, split = read_ncbi(root, "test"), "NCBI-disease test (abstracts)"
        else:
            docs, split = read_iob_docs(root / "bc5cdr" / "devel.tsv"), "BC5CDR devel (10-sentence pseudo-documents)"
        docs = docs[:limit]
        labels = CORPORA[corpus][1]
        items: dict[str, list[Any]] = {}
        latency: dict[str, Any] = {}
        for system in SYSTEM_OPTIONS:
            agent = corpus_agent(corpus, system, kg=kg)
            rows, lat = [], []
            for d in docs:
                t = time.perf_counter()
                rows.append(_counts(d, _agent_predict(agent, d.text, labels), labels))
                lat.append(time.perf_counter() - t)
            items[system] = rows
            latency[system] = _latency(lat)
        notes = [f"items = documents ({len(docs)}); metric = micro strict span F1 over {'/'.join(labels)}",
                 "classical: the CRF trained on the corpus's train split with its lexicon and knowledge-graph "
                 "features, plus propagation rules; slm: ner-slm alone (its " + corpus + " head); combined: "
                 "ner-slm fused with that CRF (weight tuned on NCBI-disease devel; no propagation, also "
                 "chosen there)"]
        out.append(Ablation("ner", split, "strict span F1", micro_f1, items, notes, {"latency": latency}))
    return out


__all__ = ["SYSTEM_OPTIONS", "Doc", "LexiconBaseline", "ablation", "corpus_agent", "evaluate_corpus", "evaluate_ner",
           "prf", "read_iob_docs", "read_ncbi"]
