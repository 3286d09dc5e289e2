"""What the specialist SLM adds: classical-only vs SLM-only vs combined, on held-out data, with 95 % CIs.

    python bench/ablation.py --agent ner            # NCBI-disease test + BC5CDR devel
    python bench/ablation.py --agent icd            # CodiEsp dev
    python bench/ablation.py --agent triage         # KTAS 5-fold CV
    python bench/ablation.py --agent summarize      # MTS-Dialog valid, ACI-Bench valid
    python bench/ablation.py --agent guardian       # held-out MedSafetyBench categories vs benign questions
    python bench/ablation.py --agent all --json out/ablation.json

Each system is scored on the same items; the paired bootstrap interval of "slm - classical" and
"combined - classical" says whether the SLM adds something (the interval excludes 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from medslm.evals.ablation import ABLATIONS, format_table, run, summarize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="all", help=f"one of {', '.join(ABLATIONS)} or all")
    ap.add_argument("--data", default=None, help="public data folder (default $MEDSLM_DATA_DIR or ../shared/data)")
    ap.add_argument("--limit", type=int, default=None, help="items per split (a quick run)")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    agents = list(ABLATIONS) if args.agent == "all" else [args.agent]
    results = []
    for agent in agents:
        abl = run(agent, args.data, limit=args.limit, seed=args.seed)
        for ab in abl if isinstance(abl, list) else [abl]:  # an agent may score several held-out splits
            res = summarize(ab, n_boot=args.boot, seed=args.seed)
            results.append(res)
            print(format_table(res), "\n", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
