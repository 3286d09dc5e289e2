"""Latency of the summarization agent on the bundled sample notes: p50 / p95 per note, with the extractive
selection alone (the classical system) as the baseline in the same run.

    python bench/summarize.py                 # every sample note, 3 rounds after one warm-up round
    python bench/summarize.py --rounds 5 --threads 2

The agent writes each section in one constrained pass, all sections of a note in one batch that shares
the note's tokens (``TransformersModel.generate_many``); the first call of a process also builds the
output grammar's automaton (a warm-up round runs first and is not counted). Measure on a quiet machine:
figures on an oversubscribed CPU say more about the neighbours than about the agent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--notes", type=int, default=None, help="the first N sample notes (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--artifacts", default=None, help="a folder of retrained artifacts (default: the shipped ones)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from medslm.agents.summarize import SummarizeAgent
    from medslm.samples import load_samples

    notes = load_samples(args.notes)
    systems = {"extractive (classical)": SummarizeAgent(abstractive=False),
               "agent (SLM + check)": SummarizeAgent(artifacts=args.artifacts)}
    for agent in systems.values():  # warm-up: model load, adapter merge, grammar automaton
        agent.run(notes[0], {})
    rows = {}
    for name, agent in systems.items():
        lat = []
        for _ in range(args.rounds):
            for n in notes:
                t0 = time.perf_counter()
                agent.run(n, {})
                lat.append(time.perf_counter() - t0)
        lat.sort()
        rows[name] = {"n": len(lat), "p50_s": statistics.median(lat), "p95_s": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
                      "mean_s": statistics.fmean(lat)}
    base = rows["extractive (classical)"]["p50_s"]
    print(f"## Summarization latency per sample note ({len(notes)} notes x {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()})\n")
    print("| system | p50 s | p95 s | mean s | p50 / extractive p50 |\n|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['mean_s']:.3f} | {r['p50_s'] / base:.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
