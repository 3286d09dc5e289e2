"""Share of notes sent to human review and of agent calls escalated or reviewed, from a review output file.

    medslm review medslm/data/samples/notes.jsonl -o out/samples/reviews.jsonl --no-show
    python bench/review_share.py out/samples/reviews.jsonl            # what the run routed
    python bench/review_share.py out/samples/reviews.jsonl --reroute  # the calibrations shipped now

``--reroute`` applies the calibrations and thresholds in force now (:class:`medslm.routers.Calibrations`)
to each result's recorded ``raw_confidence``, as the ``route`` node does, keeping every route that did
not come from the confidence (verification issues, a blocked note): the figure for refitted calibrations
without re-running the agents (they do not change the agents' outputs or raw confidences).
Prints per agent and per note; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reviews", type=Path, help="a medslm review output file (JSON lines of ChartReview)")
    ap.add_argument("--reroute", action="store_true", help="route again with the calibrations in force now")
    args = ap.parse_args(argv)

    from medslm.records import ChartReview
    from medslm.routers.thresholds import Calibrations
    from medslm.settings import Settings

    cals = Calibrations(Settings())
    reviews = [ChartReview.model_validate(json.loads(line)) for line in args.reviews.read_text().splitlines()
               if line.strip()]
    calls: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    notes_flagged = 0
    statuses: Counter[str] = Counter(r.status.value for r in reviews)
    for r in reviews:
        any_flag = r.status.value == "blocked"
        for name, res in r.results.items():
            calls[name] += 1
            route = res.route.value if res.route is not None else "accept"
            if args.reroute and res.raw_confidence is not None and res.human is None:
                from_checks = any(i.split(":", 1)[0] == name for i in r.issues)
                conf = cals.apply(res.model_copy(update={"confidence": res.raw_confidence,
                                                          "raw_confidence": None})).confidence
                route = "review" if (from_checks or conf < cals.threshold(name).threshold) else "accept"
            if route != "accept" or res.provenance.escalated:
                flagged[name] += 1
                any_flag = True
        notes_flagged += any_flag
    n = len(reviews)
    total_calls, total_flagged = sum(calls.values()), sum(flagged.values())
    print(f"{n} notes; statuses as run: {dict(statuses)}; routes {'re-applied' if args.reroute else 'as run'}")
    for name in sorted(calls):
        t = cals.threshold(name)
        print(f"  {name:<11} {flagged[name]:>2}/{calls[name]:<2} calls escalated or to review "
              f"({flagged[name] / calls[name]:.0%}); threshold {t.threshold:.3f} ({t.source})")
    print(f"agent calls escalated or to review: {total_flagged}/{total_calls} ({total_flagged / max(1, total_calls):.1%})")
    print(f"notes sent to human review (or blocked): {notes_flagged}/{n} ({notes_flagged / max(1, n):.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
