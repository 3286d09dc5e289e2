"""Pipeline builder: its compiled graph vs the same nodes wired by hand in raw LangGraph.

    nice -n 10 python bench/builder.py -n 100                  # full chart review, 100 notes (long on 2 cores)
    nice -n 10 python bench/builder.py -n 100 --pipeline ed    # ED queue: guard_in -> triage -> route -> review
    python bench/builder.py -n 4 --pipeline ed                 # a quick check that it works

Both graphs run the same node functions (taken from the builder's own specs, so the same agents,
policies and model calls) on one shared :class:`ReviewContext`. The hand-wired graph is what a user
would write with ``StateGraph``: ``add_node`` of the bare functions, ``add_edge`` and
``add_conditional_edges`` for the guard_in gate and the escalate/review routing. The builder's graph
adds what the builder adds: per-note isolation wrappers and its own conditional routing.

After a warm-up note, every note runs through both graphs, the order alternating note by note, so
load drift falls on both alike. ``overhead = builder time / hand-wired time - 1``, summed over the
notes, in this one process (goal: <= 5 %). The final states of the two graphs must be equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def builder_graph(pipeline: str, settings: Any) -> Any:
    from medslm.graphs import builders

    if pipeline == "chart":
        return builders.chart_review(settings)
    if pipeline == "ed":
        return builders.ed_queue(settings)
    raise SystemExit(f"unknown pipeline {pipeline!r}: chart or ed")


def hand_wired(pipeline: str, built: Any) -> Any:
    """The same node functions as ``built``, wired by hand with LangGraph's StateGraph."""
    from langgraph.graph import END, START, StateGraph

    from medslm.graphs.context import ReviewContext
    from medslm.graphs.nodes import allowed, needs
    from medslm.graphs.state import ReviewState
    from medslm.records import Route

    fns = {s.name: s.fn for s in built.medslm_pipeline.specs()}
    g = StateGraph(ReviewState, context_schema=ReviewContext)
    for name, fn in fns.items():
        g.add_node(name, fn)
    g.add_edge(START, "guard_in")
    escalate, review = needs(Route.ESCALATE), needs(Route.REVIEW)
    if pipeline == "ed":
        g.add_conditional_edges("guard_in", lambda s: "triage" if allowed(s) else END, ["triage", END])
        g.add_edge("triage", "route")
        g.add_conditional_edges("route", lambda s: "review" if review(s) else END, ["review", END])
        g.add_edge("review", END)
        return g.compile()
    g.add_conditional_edges("guard_in", lambda s: "ner" if allowed(s) else END, ["ner", END])
    for agent in ("icd", "triage", "summarize"):
        g.add_edge("ner", agent)
    g.add_edge(["icd", "triage", "summarize"], "verify")
    g.add_edge("verify", "route")
    g.add_conditional_edges(
        "route", lambda s: "escalate" if escalate(s) else "review" if review(s) else "guard_out",
        ["escalate", "review", "guard_out"],
    )
    g.add_conditional_edges("escalate", lambda s: "review" if review(s) else "guard_out", ["review", "guard_out"])
    g.add_edge("review", "guard_out")
    g.add_edge("guard_out", END)
    return g.compile()


def canonical(state: dict[str, Any]) -> str:
    from medslm.graphs.nodes import review_from_state

    def strip(x: Any) -> Any:  # timings differ run to run; nothing else may
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "latency_ms" and not k.endswith("seconds")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return json.dumps(strip(review_from_state(state).model_dump(mode="json")), sort_keys=True, default=str)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=100, help="notes (sample notes, each copy with its own vitals)")
    ap.add_argument("--pipeline", default="chart", choices=["chart", "ed"])
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from medslm.graphs.context import ReviewContext
    from medslm.samples import sample_batch
    from medslm.settings import Settings

    settings = Settings.from_env()
    built = builder_graph(args.pipeline, settings)
    hand = hand_wired(args.pipeline, built)
    b_nodes, h_nodes = set(built.get_graph().nodes), set(hand.get_graph().nodes)
    assert b_nodes == h_nodes, (b_nodes ^ h_nodes)
    ctx = ReviewContext(settings=settings, queue_path=Path(tempfile.mkdtemp(prefix="medslm-bench-builder-")) / "q.sqlite")
    notes = sample_batch(args.n)

    def timed(graph: Any, note: Any) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        state = graph.invoke({"note": note}, context=ctx)
        return time.perf_counter() - t0, state

    print(f"pipeline {args.pipeline}: {' -> '.join(built.medslm_pipeline.node_names)}; {len(notes)} notes", flush=True)
    t = time.perf_counter()
    timed(hand, notes[0])
    timed(built, notes[0])
    print(f"warm-up {time.perf_counter() - t:.1f} s", flush=True)
    sums = {"builder": 0.0, "hand": 0.0}
    mismatches = 0
    for i, note in enumerate(notes):
        order = (("hand", hand), ("builder", built)) if i % 2 == 0 else (("builder", built), ("hand", hand))
        states = {}
        for name, graph in order:
            sec, states[name] = timed(graph, note)
            sums[name] += sec
        mismatches += canonical(states["builder"]) != canonical(states["hand"])
        if (i + 1) % 10 == 0 or i + 1 == len(notes):
            print(f"{i + 1:4d}/{len(notes)} notes: builder {sums['builder']:.2f} s, hand-wired {sums['hand']:.2f} s, "
                  f"overhead {sums['builder'] / sums['hand'] - 1:+.2%}", flush=True)
    res = {
        "pipeline": args.pipeline,
        "notes": len(notes),
        "builder_s": sums["builder"],
        "hand_wired_s": sums["hand"],
        "overhead": sums["builder"] / sums["hand"] - 1,
        "overhead_ms_per_note": 1000 * (sums["builder"] - sums["hand"]) / len(notes),
        "state_mismatches": mismatches,
    }
    print(f"\nbuilder graph vs hand-wired LangGraph: {res['overhead']:+.2%} "
          f"({res['overhead_ms_per_note']:+.2f} ms per note); goal <= 5 %; final states that differ: {mismatches}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
