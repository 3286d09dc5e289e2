"""Fit the triage acuity model on all of KTAS data_dev.csv and write it as package data.

    python bench/fit_triage_model.py [--data-dir ../shared/data] [--slm-weight W]

The cross-validated figures come from ``medslm.evals.triage.evaluate_triage`` (bench/agents_triage_summarize.py);
this script only refits on every row for shipping. ``--slm-weight`` records the SLM combination weight
(chosen by the cross-validation) in the file's metadata.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from medslm.evals.triage import fit_triage_model, read_ktas, write_triage_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--slm-weight", type=float, default=0.5)
    ap.add_argument("--C", type=float, default=0.3)
    args = ap.parse_args()
    rows = read_ktas(args.data_dir)
    params = fit_triage_model(rows, C=args.C)
    params["meta"]["slm_weight"] = args.slm_weight
    out = Path(str(resources.files("medslm"))) / "data" / "triage" / "acuity_logreg.json"
    write_triage_model(params, out)
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(params['features'])} features, {len(rows)} rows)")


if __name__ == "__main__":
    main()
