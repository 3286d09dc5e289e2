"""`medslm train all` wall time per component on this machine, next to the size of what it writes.

    python bench/train.py [--data ../shared/data] [--out /tmp/medslm-train] [--threads 2] [--device cpu]
    python bench/train.py --manifests medslm/data/artifacts     # just read the shipped manifests

Trains every component from scratch into ``--out`` (never into the package), then prints one row per
component: wall time, share of the total, artifact size and the headline figure with its split. The
ratio column is each component's time against the fastest, so rows compare within the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="/tmp/medslm-train")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--target", nargs="*", default=["all"])
    ap.add_argument("--manifests", default=None, help="only read the manifests in this folder")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from medslm.artifacts import list_artifacts

    if args.manifests:
        manifests = [m for _, _, m in list_artifacts(args.manifests)]
        total = None
    else:
        from medslm.evals.datasets import resolve_data_dir
        from medslm.training import train

        t0 = time.perf_counter()
        manifests = train(args.target, data_dir=resolve_data_dir(args.data), out_dir=args.out,
                          device=args.device, threads=args.threads)
        total = time.perf_counter() - t0
    fastest = min(m.wall_time_s for m in manifests) or 1e-9
    sum_wall = sum(m.wall_time_s for m in manifests)
    print(f"{'component':22s} {'wall s':>8s} {'x fastest':>9s} {'share':>6s} {'MB':>6s} device  headline figure")
    for m in manifests:
        size = sum(f.bytes for f in m.files.values()) / 1e6
        fig = next(iter(m.figures.items()), ("", 0.0))
        print(f"{m.component:22s} {m.wall_time_s:8.1f} {m.wall_time_s / fastest:9.1f} "
              f"{m.wall_time_s / sum_wall:6.1%} {size:6.2f} {m.device:7s} {fig[0]}={fig[1]:.3f}")
    print(f"{'all':22s} {sum_wall:8.1f}" + (f"   (driver wall {total:.1f} s)" if total else ""))
    if args.json:
        Path(args.json).write_text(json.dumps([m.model_dump(mode="json") for m in manifests], indent=1))


if __name__ == "__main__":
    main()
