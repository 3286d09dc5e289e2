"""Knowledge graph: cold build, warm load, lookup latency, memory, matcher speed and NCBI-disease recall@10.

    python bench/kg.py                      # everything but embedding encoding (minutes on 2 cores)
    python bench/kg.py --embedding          # also: MiniLM encoding rate and embedding recall (slow)
    python bench/kg.py --skip-cold          # reuse the graph already in the cache

Cold build and warm load run in subprocesses with a fresh cache folder, so their time and peak RSS are
their own. Recall@10: for every mention of the NCBI-disease test set (960 mentions, gold MeSH / OMIM ids),
with DOID (TSV reports) and MONDO (SSSOM) loaded beside the embedded graph, is a gold id the id of one
of the top-10 candidates or reachable from one through ``maps_to`` cross-walks (at most 3 hops)?
Abbreviations a document defines ("ataxia-telangiectasia (A-T)") are expanded first (Schwartz-Hearst).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("MEDSLM_DATA_DIR") or REPO.parent / "shared" / "data")


def _child(code: str, cache: str) -> dict:
    env = {**os.environ, "MEDSLM_CACHE_DIR": cache, "PYTHONPATH": str(REPO)}
    wrapped = (
        "import json, resource, time, sys\n"
        "t0 = time.perf_counter()\n"
        f"{code}\n"
        "out['process_s'] = time.perf_counter() - t0\n"
        "out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run([sys.executable, "-c", wrapped], env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


LOAD = (
    "from medslm.knowledge import KnowledgeGraph\n"
    "kg = KnowledgeGraph.default()\n"
    "t = time.perf_counter(); kg.load(); load_s = time.perf_counter() - t\n"
    "out = {'load_s': load_s, 'built': kg.built, 'concepts': len(kg), 'edges': kg.graph.number_of_edges(),\n"
    "       'cache_mb': kg.cache_path.stat().st_size / 2**20}\n"
)


def ncbi_mentions(path: Path) -> list[tuple[str, str, str]]:
    """``(pmid, mention, gold)`` from the NCBI-disease PubTator-style corpus; also returns documents."""
    docs: dict[str, str] = {}
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if "|t|" in line[:20] or "|a|" in line[:20]:
            pmid, _, text = line.split("|", 2)
            docs[pmid] = docs.get(pmid, "") + " " + text[2:]
            continue
        parts = line.split("\t")
        if len(parts) == 6:
            out.append((parts[0], parts[3], parts[5]))
    ncbi_mentions.docs = docs  # type: ignore[attr-defined]
    return out


def gold_ids(gold: str) -> set[str]:
    ids = set()
    for part in gold.replace("+", "|").split("|"):
        part = part.strip()
        if part:
            ids.add(part if ":" in part else f"MESH:{part}")
    return ids


def percentiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50_ms": 1000 * xs[len(xs) // 2], "p95_ms": 1000 * xs[int(len(xs) * 0.95)],
            "mean_ms": 1000 * statistics.fmean(xs)}


def recall_at_k(kg, mentions, k: int = 10, systems=None, search=None, hops: int = 3) -> dict:  # type: ignore[no-untyped-def]
    from medslm.knowledge.abbreviations import expand, find_abbreviations

    docs = ncbi_mentions.docs  # type: ignore[attr-defined]
    defined = {pmid: find_abbreviations(text) for pmid, text in docs.items()}
    cache: dict[str, set[str]] = {}

    def reach(cid: str) -> set[str]:
        r = cache.get(cid)
        if r is None:
            r = cache[cid] = {cid} | {c.id for s in ("MESH", "OMIM") for c in kg.crosswalk(cid, to=s, hops=hops)}
        return r

    hits, times, misses = 0, [], []
    rows = kg._ensure().rows
    reachable_gold = sum(1 for _, _, g in mentions if any(x in rows for x in gold_ids(g)))
    for pmid, text, gold in mentions:
        query = expand(text, defined[pmid])
        t = time.perf_counter()
        cands = kg.lookup(query, systems=systems, k=k)
        if search is not None:
            seen = {c.id for c in cands}
            cands += [c for c in kg.search(query, k=k, systems=search) if c.id not in seen]
        times.append(time.perf_counter() - t)
        gs = gold_ids(gold)
        if any(reach(c.id) & gs for c in cands):
            hits += 1
        else:
            misses.append((text, gold))
    return {"recall": hits / len(mentions), "mentions": len(mentions), "gold_in_graph": reachable_gold / len(mentions),
            **percentiles(times), "misses_sample": misses[:15]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--embedding", action="store_true", help="encode with MiniLM (slow on 2 cores)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    data = data_dir(args.data_dir)
    report: dict = {"cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}

    with tempfile.TemporaryDirectory() as tmp:
        cache = tmp if not args.skip_cold else os.environ.get("MEDSLM_CACHE_DIR", tmp)
        if not args.skip_cold:
            report["cold"] = _child(LOAD, cache)
            print("cold build:", json.dumps(report["cold"]))
        report["warm"] = [_child(LOAD, cache) for _ in range(3)]
        print("warm load:", json.dumps(report["warm"]))
        report["import_s"] = _child("import medslm.knowledge\nout = {}", cache)["process_s"]

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from medslm.knowledge import KnowledgeGraph
    from medslm.knowledge.doid import DoidReports
    from medslm.knowledge.sssom import SssomSource
    from medslm.knowledge.terms import TermListSource

    mentions = ncbi_mentions(data / "ncbi-disease" / "original" / "NCBItestset_corpus.txt")
    kg = KnowledgeGraph.default().load()
    texts = [m[1] for m in mentions]
    for q in texts[:50]:
        kg.lookup(q, systems=("ICD10CM", "HPO"), k=10)  # warm-up
    times = []
    for q in texts:
        t = time.perf_counter()
        kg.lookup(q, systems=("ICD10CM", "HPO"), k=10)
        times.append(time.perf_counter() - t)
    report["lookup_embedded"] = {"queries": len(texts), **percentiles(times)}
    print("lookup (embedded, ICD10CM+HPO):", json.dumps(report["lookup_embedded"]))
    times = []
    for q in ("heart attack", "MI", "HTN", "shortness of breath", "type 2 diabetes", "pnuemonia", "chest pain") * 50:
        t = time.perf_counter()
        kg.lookup(q, systems=("ICD10CM",), k=10)
        times.append(time.perf_counter() - t)
    report["lookup_clinical_icd"] = percentiles(times)
    print("lookup (clinical queries, ICD10CM):", json.dumps(report["lookup_clinical_icd"]))

    t = time.perf_counter()
    matcher = kg.matcher(("ICD10CM", "HPO"))
    report["matcher_build_s"] = time.perf_counter() - t
    note = ("72M with h/o HTN, type 2 diabetes mellitus and CKD presents with SOB and substernal chest pain "
            "radiating to the left arm. Troponin elevated; rule out MI. Denies fevers or cough. Father had a "
            "heart attack at 60. Exam: bilateral lower extremity edema, crackles at the bases. ") * 10
    t = time.perf_counter()
    for _ in range(20):
        found = matcher.find(note)
    per_note = (time.perf_counter() - t) / 20
    report["matcher"] = {"terms": len(matcher), "chars": len(note), "ms_per_note": 1000 * per_note,
                         "matches": len(found)}
    print("matcher:", json.dumps(report["matcher"]), f"build {report['matcher_build_s']:.1f} s")

    doid, mondo = DoidReports(data / "doid"), SssomSource(sorted((data / "mondo").glob("*.sssom.tsv")), name="mondo")
    t = time.perf_counter()
    big = KnowledgeGraph.default().with_sources(doid, mondo).load()
    report["with_doid_mondo"] = {"load_s": time.perf_counter() - t, "built": big.built, "concepts": len(big)}
    report["recall_lexical"] = recall_at_k(big, mentions)
    print("recall@10 lexical (embedded + DOID + MONDO):", {k: v for k, v in report["recall_lexical"].items()
                                                           if k != "misses_sample"})
    report["recall_lexical_disease_systems"] = recall_at_k(big, mentions, systems=("DOID", "MONDO", "HPO", "ICD10CM"))
    print("recall@10 lexical, disease systems only:", report["recall_lexical_disease_systems"]["recall"])

    # a lexicon from the training and development annotations (mention -> gold id), as DNorm/TaggerOne use
    pairs = []
    for split in ("NCBItrainset_corpus.txt", "NCBIdevelopset_corpus.txt"):
        for _, text, gold in ncbi_mentions(data / "ncbi-disease" / "original" / split):
            if "+" not in gold and "|" not in gold:
                pairs.extend((g, text) for g in gold_ids(gold))
    ncbi_mentions(data / "ncbi-disease" / "original" / "NCBItestset_corpus.txt")  # restore test documents
    trained = big.with_sources(TermListSource(pairs, name="ncbi-train-dev")).load()
    report["recall_with_train_lexicon"] = recall_at_k(trained, mentions)
    report["recall_with_train_lexicon"]["lexicon_pairs"] = len(pairs)
    print("recall@10 + train/dev lexicon:", report["recall_with_train_lexicon"]["recall"])

    if args.embedding:
        from medslm.knowledge.embedding import EmbeddingIndex, encoder

        names = [c.label for c in kg.concepts("HPO")][:2000]
        t = time.perf_counter()
        encoder().encode(names)
        rate = len(names) / (time.perf_counter() - t)
        report["embedding_names_per_s"] = rate
        n_icd = len(EmbeddingIndex.texts_for(kg, "ICD10CM")[0])
        report["embedding_estimate_s"] = {"ICD10CM": n_icd / rate, "HPO": kg.count("HPO") / rate}
        print("MiniLM:", f"{rate:.0f} names/s", json.dumps(report["embedding_estimate_s"]))
        t = time.perf_counter()
        for system in ("DOID", "MONDO"):
            EmbeddingIndex.for_graph(big, system)
        report["embedding_index_s"] = time.perf_counter() - t
        report["recall_lexical_plus_embedding"] = recall_at_k(big, mentions, search=("DOID", "MONDO"))
        print("recall@10 lexical + embedding(DOID, MONDO):", report["recall_lexical_plus_embedding"]["recall"])

    report["loadavg_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("recall")}, default=str)[:2000])


if __name__ == "__main__":
    main()
