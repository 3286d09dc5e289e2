"""Batch runner: throughput of the full chart-review graph and the cost of orchestration.

    nice -n 10 python bench/runner.py -n 36 --rounds 2      # the figures (minutes per round on 2 cores)
    python bench/runner.py -n 3 --rounds 2                  # a quick check that it works
    python bench/runner.py --graph medslm.graphs.builders:ed_queue -n 100

Two ways to make *the same model calls* with the same agents, guardian, knowledge graph and policy
(one :class:`ReviewContext`, so one model in the process):

- ``plain``: a Python loop that calls the graph's node functions in stage order on a dict state (a
  stage's nodes see the state before the stage, like LangGraph's parallel branches);
- ``graph+runner``: :func:`medslm.review_batch` with the compiled graph: per-note isolation, SQLite
  results store (a fresh one per round, so nothing is skipped), audit records, atomic JSONL output.

A warm-up pass loads everything first. The notes then run in batches (``--chunk``), each batch both
ways, the way that goes first alternating from batch to batch, so that drift in machine load falls on
both alike. Every graph+runner batch is its own job (fresh store, output and audit files), so its
fixed costs count once per batch: a conservative figure for one long job. ``overhead = graph+runner
time / plain time - 1``, summed over all batches and rounds, measured in this one process, in wall
time and in process CPU time (the latter moves less when other processes share the cores).
Throughput (notes/min) and p50/p95 per note are those of graph+runner. The reviews of both ways are
compared (timings aside): they must be equal. Last, the same graph with do-nothing nodes (its "null
twin": same stages, gates and conditions) gives the orchestration floor per note, free of model noise.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
import typing
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class _Runtime:
    """What node functions read from LangGraph's runtime: the context."""

    def __init__(self, context: Any) -> None:
        self.context = context


def plain_runner(graph: Any) -> Any:
    """``run(note, ctx) -> ChartReview``: the graph's node functions called in a plain loop."""
    from medslm.graphs.nodes import review_from_state

    pipe = graph.medslm_pipeline
    specs = {s.name: s for s in pipe.specs()}
    hints = typing.get_type_hints(pipe._state_class(), include_extras=True)
    reducers = {k: typing.get_args(v)[1] for k, v in hints.items() if typing.get_origin(v) is typing.Annotated}
    takes_runtime = {n: "runtime" in inspect.signature(s.fn).parameters for n, s in specs.items()}
    stages = [(st.when, st.gate, [d.name for d in st.nodes]) for st in pipe._stages]

    def run(note: Any, ctx: Any) -> Any:
        t0 = time.perf_counter()
        rt = _Runtime(ctx)
        state: dict[str, Any] = {"note": note}
        for when, gate, names in stages:
            if when is not None and not when(state):
                continue
            snapshot = dict(state)
            updates = [specs[n].fn(snapshot, rt) if takes_runtime[n] else specs[n].fn(snapshot) for n in names]
            for upd in updates:
                for k, v in (upd or {}).items():
                    state[k] = reducers[k](state[k], v) if k in reducers and k in state else v
            if gate is not None and not gate(state):
                break
        return review_from_state(state, config_hash=ctx.config_hash, latency_ms=(time.perf_counter() - t0) * 1000)

    return run


def null_twin(graph: Any) -> Any:
    """A graph of the same stages, gates and conditions whose nodes do nothing (the orchestration floor)."""
    from medslm import Pipeline

    pipe = graph.medslm_pipeline
    twin = Pipeline(name=f"{pipe.name}-null", settings=pipe.settings)
    for st in pipe._stages:
        fns = []
        for d in st.nodes:
            def nothing(state: Any) -> dict[str, Any]:
                return {}

            nothing.__name__ = d.name
            fns.append(nothing)
        twin.add(*fns, writes=[], when=st.when, gate=st.gate)
    return twin.compile()


def orchestration_floor(graph: Any, ctx: Any, n: int, tmp: Path) -> tuple[float, float]:
    """ms per note of (plain loop, graph+runner) on the graph's null twin: what orchestration alone costs."""
    from medslm import review_batch
    from medslm.samples import sample_batch

    twin = null_twin(graph)
    notes = sample_batch(n, seed=1)
    plain = plain_runner(twin)
    review_batch(notes[:5], tmp / "floor-warm.jsonl", graph=twin, context=ctx, progress=False)
    t0 = time.perf_counter()
    for note in notes:
        plain(note, ctx)
    t1 = time.perf_counter()
    review_batch(notes, tmp / "floor.jsonl", graph=twin, context=ctx, progress=False)
    t2 = time.perf_counter()
    return 1000 * (t1 - t0) / n, 1000 * (t2 - t1) / n


def canonical(review: Any) -> str:
    """A review without timings (everything else must be the same whichever way it ran)."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("latency_ms", "config_hash") and not k.endswith("seconds")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return json.dumps(strip(review.model_dump(mode="json")), sort_keys=True)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=36, help="notes per round (sample notes, each copy with its own vitals)")
    ap.add_argument("--rounds", type=int, default=2, help="measured passes over the notes per way")
    ap.add_argument("--chunk", type=int, default=6, help="notes per batch; the way that goes first alternates by batch")
    ap.add_argument("--graph", default="medslm.graphs.builders:chart_review", help="graph builder module:function")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from medslm import review_batch
    from medslm.graphs.context import ReviewContext
    from medslm.graphs.runner import load_graph
    from medslm.samples import sample_batch
    from medslm.settings import Settings

    settings = Settings.from_env()
    graph = load_graph(args.graph, settings)
    notes = sample_batch(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="medslm-bench-runner-"))
    ctx = ReviewContext(settings=settings, queue_path=tmp / "queue.sqlite")
    plain = plain_runner(graph)

    def run_plain(batch: list[Any]) -> tuple[float, float, list[Any]]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = [plain(n, ctx) for n in batch]
        return time.perf_counter() - t0, time.process_time() - c0, out

    def run_graph(batch: list[Any], tag: str) -> tuple[float, float, list[Any]]:
        t0, c0 = time.perf_counter(), time.process_time()
        rep = review_batch(batch, tmp / f"{tag}.jsonl", graph=graph, context=ctx, progress=False)
        return time.perf_counter() - t0, time.process_time() - c0, rep.reviews

    chunks = [notes[i : i + args.chunk] for i in range(0, len(notes), args.chunk)]
    print(f"graph {args.graph}: {' -> '.join(graph.medslm_pipeline.node_names)}; {len(notes)} notes x "
          f"{args.rounds} rounds per way, in batches of {args.chunk}; models: {settings.models}", flush=True)
    t = time.perf_counter()
    _, _, warm_plain = run_plain(notes)
    _, _, warm_graph = run_graph(notes, "warmup")
    print(f"warm-up (loads models, KG, guardian; both ways once) {time.perf_counter() - t:.1f} s", flush=True)
    expected = {"plain": [canonical(r) for r in warm_plain], "graph": [canonical(r) for r in warm_graph]}

    wall: dict[str, list[float]] = {"plain": [], "graph": []}
    cpu: dict[str, list[float]] = {"plain": [], "graph": []}
    latencies: dict[str, list[float]] = {"plain": [], "graph": []}
    unstable = 0
    k = 0
    for r in range(args.rounds):
        for c, batch in enumerate(chunks):
            first = notes.index(batch[0])
            for way in (("plain", "graph") if k % 2 == 0 else ("graph", "plain")):
                if way == "plain":
                    w, p, reviews = run_plain(batch)
                else:
                    w, p, reviews = run_graph(batch, f"r{r}c{c}")
                wall[way].append(w)
                cpu[way].append(p)
                latencies[way] += [x.latency_ms for x in reviews]
                unstable += [canonical(x) for x in reviews] != expected[way][first : first + len(batch)]
            k += 1
        print(f"round {r}: plain {sum(wall['plain']):.1f} s, graph+runner {sum(wall['graph']):.1f} s so far; "
              f"overhead {sum(wall['graph']) / sum(wall['plain']) - 1:+.2%} (wall), "
              f"{sum(cpu['graph']) / sum(cpu['plain']) - 1:+.2%} (CPU)", flush=True)

    floor_plain, floor_graph = orchestration_floor(graph, ctx, 300, tmp)
    mismatches = sum(a != b for a, b in zip(expected["plain"], expected["graph"], strict=True))
    n_total = len(notes) * args.rounds
    ratios = sorted(g / p for g, p in zip(wall["graph"], wall["plain"], strict=True))
    res = {
        "graph": args.graph,
        "notes": len(notes),
        "rounds": args.rounds,
        "batch": args.chunk,
        "notes_per_min": 60 * n_total / sum(wall["graph"]),
        "notes_per_min_plain": 60 * n_total / sum(wall["plain"]),
        "p50_ms": pct(latencies["graph"], 0.5),
        "p95_ms": pct(latencies["graph"], 0.95),
        "p50_ms_plain": pct(latencies["plain"], 0.5),
        "p95_ms_plain": pct(latencies["plain"], 0.95),
        "overhead_wall": sum(wall["graph"]) / sum(wall["plain"]) - 1,
        "overhead_cpu": sum(cpu["graph"]) / sum(cpu["plain"]) - 1,
        "overhead_wall_batch_median": ratios[len(ratios) // 2] - 1,
        "overhead_wall_batch_range": [ratios[0] - 1, ratios[-1] - 1],
        "overhead_ms_per_note": 1000 * (sum(wall["graph"]) - sum(wall["plain"])) / n_total,
        "floor_ms_per_note_plain": floor_plain,
        "floor_ms_per_note_graph": floor_graph,
        "floor_share_of_p50": (floor_graph - floor_plain) / pct(latencies["plain"], 0.5) if latencies["plain"] else None,
        "review_mismatches": mismatches,
        "unstable_batches": unstable,
        "statuses": dict(Counter(json.loads(r)["status"] for r in expected["graph"])),
    }
    print(f"\ngraph+runner: {res['notes_per_min']:.1f} notes/min, p50 {res['p50_ms']:.0f} ms, p95 {res['p95_ms']:.0f} ms "
          f"per note; statuses {res['statuses']}")
    print(f"plain loop:   {res['notes_per_min_plain']:.1f} notes/min, p50 {res['p50_ms_plain']:.0f} ms, "
          f"p95 {res['p95_ms_plain']:.0f} ms")
    print(f"orchestration overhead (graph+runner / plain - 1): wall {res['overhead_wall']:+.2%} "
          f"({res['overhead_ms_per_note']:+.1f} ms per note), CPU time {res['overhead_cpu']:+.2%}; per batch: median "
          f"{res['overhead_wall_batch_median']:+.2%}, range {ratios[0] - 1:+.2%} .. {ratios[-1] - 1:+.2%}; goal <= 2 %")
    print(f"orchestration floor (same graph, nodes that do nothing, 300 notes): graph+runner {floor_graph:.2f} ms "
          f"vs plain loop {floor_plain:.2f} ms per note = {res['floor_share_of_p50']:.2%} of the plain p50 note")
    print(f"reviews that differ between the two ways: {mismatches} of {len(notes)}; "
          f"batches whose reviews differ from the warm-up run: {unstable}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
