"""Figures of the triage and summarization agents (issue 5), printed as Markdown tables and saved as JSON.

    python bench/agents_triage_summarize.py --task triage                     # KTAS dev, 5-fold CV, all 887
    python bench/agents_triage_summarize.py --task summarize --mts-slm 40 --aci-slm 10
    python bench/agents_triage_summarize.py --task summarize --limit 20       # quick look

Triage: :func:`medslm.evals.triage.evaluate_triage` (nurses' ``KTAS_RN`` next to the agent and its
parts on the same rows; the triage specialist's nested CV is cached in ``~/.cache/medslm/evals``).
Summarization: :func:`medslm.evals.summarize.evaluate_summarization` (lead baseline of the same length,
extractive agent and SLM agent on MTS-Dialog validation and ACI-Bench train+valid; the SLM runs on the
first ``--mts-slm`` MTS items and the last ``--aci-slm`` ACI items, with the baselines rescored on the
same subset). On a shared CPU set ``OMP_NUM_THREADS=1``: torch's thread pool slows down badly when the
cores are oversubscribed. Latencies in the JSON are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRIAGE_COLS = ("n", "accuracy", "qwk", "under_triage", "over_triage", "ece")
SUMMARY_COLS = ("n", "rouge1", "rouge2", "rougeL", "minilm_cosine", "flagged_fraction", "slm_rejected_fraction",
                "mean_chars", "latency_ms_p50")


def table(rows: dict[str, dict[str, Any]], cols: tuple[str, ...]) -> str:
    present = [c for c in cols if any(c in r for r in rows.values())]
    out = ["| system | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    for name, r in rows.items():
        cells = []
        for c in present:
            v = r.get(c)
            cells.append("" if v is None else (f"{v:.3f}" if isinstance(v, float) and c != "n" else str(v)))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("triage", "summarize", "both"), default="both")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=None, help="items per dataset (default: all)")
    ap.add_argument("--mts-slm", type=int, default=40, help="MTS-Dialog items the SLM agent runs on")
    ap.add_argument("--aci-slm", type=int, default=10, help="ACI-Bench items the SLM agent runs on")
    ap.add_argument("--out", type=Path, default=Path("out"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("medslm.evals").setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.task in ("triage", "both"):
        from medslm.evals.triage import evaluate_triage

        r = evaluate_triage(args.data_dir, args.limit)
        (args.out / "triage-ktas.json").write_text(json.dumps(r, indent=1))
        print(f"## Triage, {r['dataset']}: {r['protocol']}\n")
        print(table(r["rows"], TRIAGE_COLS))
        folds = [(p["fusion_weight"], p["under_triage_cost"]) for p in r.get("fold_params", [])]
        print(f"\n(fusion weight, under-triage cost) per fold: {folds}; agent latency ms: {r.get('latency_ms')}\n")
    if args.task in ("summarize", "both"):
        from medslm.evals.summarize import evaluate_summarization

        s = evaluate_summarization(args.data_dir, args.limit, abstractive_limit=args.mts_slm,
                                   aci_abstractive_limit=args.aci_slm)
        (args.out / "summarize.json").write_text(json.dumps(s, indent=1))
        for key, title in (("mts_dialog", "MTS-Dialog"), ("aci_bench", "ACI-Bench")):
            print(f"## Summarization, {title} ({s[key]['split']})\n")
            print(table(s[key]["rows"], SUMMARY_COLS) + "\n")


if __name__ == "__main__":
    main()
