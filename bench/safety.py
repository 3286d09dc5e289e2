"""Safety guardian figures: MedSafetyBench recall / clinical-text FPR, injection suite, PHI, latency.

    python bench/safety.py                 # all figures (several minutes on 2 cores)
    python bench/safety.py --limit 40      # a quick run on subsets
    python bench/safety.py --train         # refit the harm and injection heads (package data), then measure
    python bench/safety.py --rules-only    # the guardian without its SLM (for comparison)
    python bench/safety.py --fit [--no-slm] # refit the injection calibration (dev pool + train-split text)
    python bench/safety.py --json out.json

The data folder comes from ``--data-dir``, ``$MEDSLM_DATA_DIR`` or ``../shared/data`` beside the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("MEDSLM_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def train(data_dir: Path) -> None:
    from medslm.safety.harm import train_harm_head
    from medslm.safety.heads import load_head, train_injection_head

    out = REPO / "medslm" / "safety" / "data"
    t0 = time.perf_counter()
    from medslm.evals.datasets import clinical_texts

    head, meta = train_injection_head(clinical_texts(data_dir, "train"))
    (out / "injection_head.json").write_text(head.to_json(), encoding="utf-8")
    print(f"injection head: {meta} threshold={head.threshold:.3f} ({time.perf_counter() - t0:.0f}s)")
    t0 = time.perf_counter()
    head, meta = train_harm_head(data_dir)
    (out / "harm_head.json").write_text(head.to_json(), encoding="utf-8")
    print(f"harm head: {meta} threshold={head.threshold:.3f} ({time.perf_counter() - t0:.0f}s)")
    load_head.cache_clear()


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def report(res: dict) -> None:
    print("\n== harmful requests (mode='qa') ==")
    h = res["harm"]
    print(f"MedSafetyBench train: {h['harmful']} requests; recall (in-sample, head fitted on train) {_fmt(h['recall_in_sample'])}; "
          f"out-of-fold CV recall {_fmt(h.get('cv_recall'))}")
    print(f"benign clinical text never trained on ({h['benign_clinical_texts']} MTS-Dialog/ACI-Bench dialogues+notes): FPR {_fmt(h['fpr_clinical_text'])}")
    for k, v in h["fpr_by_source"].items():
        print(f"   FPR {k:26s} {_fmt(v)}")
    print("\n== injection suite ==")
    for name, r in res["injection"].items():
        print(f"{name:8s} pairs={r['pairs']} recall={_fmt(r['recall'])} FPR={_fmt(r['fpr'])} fully_masked={_fmt(r['fully_masked'])} "
              f"p50={r['p50_ms']:.0f}ms p95={r['p95_ms']:.0f}ms")
        print("         per kind: " + ", ".join(f"{k}={v:.2f}" for k, v in r["per_kind_recall"].items()))
    r = res["injection_real_notes"]
    print(f"real clinical text (ACI-Bench valid notes + MTS-Dialog valid sections): {r['texts']} texts, fenced FPR {_fmt(r['fpr'])}")
    for key in ("phi", "phi_rules_only"):
        p = res[key]
        print(f"\n== PHI ({'regex + context rules + spaCy NER' if p['use_ner'] else 'regex + context rules only'}), "
              f"{p['notes']} synthetic notes, seed {p['seed']}, {p['ms_per_note']:.1f} ms/note ==")
        print(f"micro recall {_fmt(p['micro_recall'])} precision {_fmt(p['micro_precision'])}")
        for t, m in p["per_type"].items():
            print(f"   {t:8s} n={m['gold']:5d} recall={_fmt(m['recall'])} precision={_fmt(m['precision'])}")
    lat = res["latency"]
    print(f"\n== guardian latency (check_input) == {lat['notes']} notes, mean {lat['mean_chars']:.0f} chars: "
          f"p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms")
    print(f"\ntotal {res['seconds']:.0f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="cap items per part")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train", action="store_true", help="refit the heads first (writes medslm/safety/data/*.json)")
    ap.add_argument("--rules-only", action="store_true", help="no SLM: rules and heads only")
    ap.add_argument("--fit", action="store_true", help="fit the SLM calibration of injection findings on the dev pool")
    ap.add_argument("--no-slm", action="store_true", help="with --fit: rule/head scores alone (no SLM term)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    data_dir = _data_dir(args.data_dir)
    if args.train:
        train(data_dir)
    from medslm.evals.safety import evaluate_safety

    if args.fit:
        from medslm.evals.safety import fit_injection_calibration
        from medslm.safety import Guardian

        cal, info = fit_injection_calibration(
            Guardian(register_phi=False), data_dir, n=args.limit or 80, real_limit=100, slm=not args.no_slm
        )
        print(f"injection SLM calibration (paste into medslm/safety/guardian.py): {info}")
        return

    res = evaluate_safety(data_dir, limit=args.limit, model=None if args.rules_only else "embedded")
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
