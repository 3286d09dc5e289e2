"""NER latency per sample note: the shipped agent (ner-slm fused with the CRF, assertion-slm + ConText,
abbreviations in context) next to the classical one (CRF, ConText rules) in the same run.

    python bench/ner.py                    # torch's default threads
    python bench/ner.py --threads 1        # one intra-op thread (faster on a loaded 2-core machine)
    python bench/ner.py --repeat 20

Prints p50 / p95 per system over every sample note x repeats (after one warm-up run each), the ratio of
the p50s, and the share of the shipped agent's time spent in its parts (tagger, assertion, the rest).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import medslm
    from medslm.agents.ner import NerAgent
    from medslm.knowledge import KnowledgeGraph

    kg = KnowledgeGraph.default()
    notes = medslm.load_samples()
    systems = {"shipped": NerAgent(kg=kg), "classical": NerAgent(kg=kg, slm=None, assertion_model=None)}
    p50 = {}
    for name, agent in systems.items():
        t = time.perf_counter()
        agent.load()
        load_s = time.perf_counter() - t
        for n in notes:  # warm-up
            agent.run(n, {})
        times, parts = [], {"tagger": 0.0, "assertion": 0.0}
        orig_tag, orig_assert = agent._tagged, agent._assertions().classify

        def timed_tag(*a, _f=orig_tag, parts=parts, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                parts["tagger"] += time.perf_counter() - t0

        def timed_assert(*a, _f=orig_assert, parts=parts, **k):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                parts["assertion"] += time.perf_counter() - t0

        agent._tagged = timed_tag  # type: ignore[method-assign]
        agent._assertions().classify = timed_assert  # type: ignore[method-assign]
        for _ in range(args.repeat):
            for n in notes:
                t = time.perf_counter()
                agent.run(n, {})
                times.append(time.perf_counter() - t)
        times.sort()
        p50[name] = statistics.median(times)
        total = sum(times)
        print(f"{name:9s} p50 {1000 * p50[name]:7.1f} ms  p95 {1000 * times[int(0.95 * (len(times) - 1))]:7.1f} ms  "
              f"(n={len(times)}, {len(notes)} notes, load {load_s:.1f} s; tagger {parts['tagger'] / total:.0%}, "
              f"assertion {parts['assertion'] / total:.0%}, rest {1 - (parts['tagger'] + parts['assertion']) / total:.0%})")
    print(f"shipped / classical p50: {p50['shipped'] / p50['classical']:.2f}x  (torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
