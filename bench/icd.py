"""ICD agent speed on the bundled sample notes: per-note latency of NER + ICD, the ICD agent alone, and the
ICD agent without its SLM (the classical stacker) as the baseline of the same run.

    python bench/icd.py                  # 3 rounds over the 18 sample notes, after one warm-up round
    python bench/icd.py --rounds 5 --threads 2

Prints p50 / p95 per configuration and the ratio of each p50 to the classical baseline's. Models, the
knowledge graph and the artifacts are loaded before timing (their load time is printed apart).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from medslm.agents.icd import IcdAgent
    from medslm.agents.ner import NerAgent
    from medslm.knowledge import KnowledgeGraph
    from medslm.samples import load_samples

    notes = load_samples()
    t = time.perf_counter()
    kg = KnowledgeGraph.default().load()
    icd = IcdAgent(kg=kg).load()
    ner = NerAgent(kg=kg).load()
    print(f"load: graph + ICD agent + NER agent {time.perf_counter() - t:.1f} s")
    timings: dict[str, list[float]] = {"icd classical (baseline)": [], "icd combined (ships)": [],
                                       "ner": [], "ner + icd combined": []}
    for r in range(args.rounds + 1):  # round 0 warms caches up (code vectors, tokenizer) and is not timed
        for note in notes:
            t0 = time.perf_counter()
            ents = ner.run(note, {})
            t1 = time.perf_counter()
            icd.run(note, {"entities": ents})
            t2 = time.perf_counter()
            icd.code(note.text, ents.output, metadata=note.metadata, system="classical")
            t3 = time.perf_counter()
            if r:
                timings["ner"].append(t1 - t0)
                timings["icd combined (ships)"].append(t2 - t1)
                timings["ner + icd combined"].append(t2 - t0)
                timings["icd classical (baseline)"].append(t3 - t2)
    base = statistics.median(timings["icd classical (baseline)"])
    print(f"{len(notes)} sample notes x {args.rounds} rounds")
    print(f"{'configuration':28s} {'p50 ms':>8s} {'p95 ms':>8s} {'p50 / classical':>16s}")
    for name, xs in timings.items():
        p50 = statistics.median(xs)
        print(f"{name:28s} {1000 * p50:8.1f} {1000 * pct(xs, 0.95):8.1f} {p50 / base:16.2f}")


if __name__ == "__main__":
    main()
