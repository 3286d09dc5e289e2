"""Batch runner: throughput of the full chart-review graph and the cost of orchestration.

    nice -n 10 python bench/runner.py -n 36 --rounds 2      # the figures (minutes per round on 2 cores)
    nice -n 5 python bench/runner.py --concurrency 1,4,8 -n 18 --rounds 1   # notes in flight (docs/batching.md)
    nice -n 5 python bench/runner.py --concurrency 1 -n 2 --profile prof.out  # what bounds a note, per agent
    python bench/runner.py -n 3 --rounds 2                  # a quick check that it works
    python bench/runner.py --graph medslm.graphs.builders:ed_queue -n 100

Two ways to make *the same model calls* with the same agents, guardian, knowledge graph and policy
(one :class:`ReviewContext`, so one model in the process):

- ``plain``: a Python loop that calls the graph's node functions in stage order on a dict state (a
  stage's nodes see the state before the stage, like LangGraph's parallel branches);
- ``graph+runner``: :func:`medslm.review_batch` with the compiled graph: per-note isolation, SQLite
  results store (a fresh one per round, so nothing is skipped), audit records, atomic JSONL output.

``--concurrency 1,4,8``: throughput with N notes in flight instead (``review_batch(concurrency=N)``:
threads, the local models gathering their calls into one batch, :mod:`medslm.models.batching`), each N
over the same notes, next to a plain loop (one note at a time, no graph) as the baseline of the same
run; per N: notes/min, p50/p95 per note, the process's peak RSS while it ran, the 1-minute load
average before and after, the batches the models ran, and how many reviews differ from N = 1 (the
discrete outputs: entities, codes, triage level, summary text, routes; and the whole review).

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


class _RssPeak:
    """The highest resident set size of this process while the block runs (sampled every 20 ms), MiB."""

    def __enter__(self) -> _RssPeak:
        import threading

        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mib())


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def discrete(review: Any) -> str:
    """What a reviewer acts on (status, entities, codes, triage level, summary text, routes), as JSON."""
    ents, codes, triage, summary = review.entities, review.codes, review.triage, review.summary
    return json.dumps({
        "status": review.status.value,
        "entities": [(e.start, e.end, e.type.value, e.assertion.value) for e in ents.output] if ents else None,
        "codes": [c.code for c in codes.output] if codes else None,
        "triage": triage.output.level if triage else None,
        "summary": summary.output.text if summary else None,
        "routes": {k: (r.route.value if r.route else None) for k, r in review.results.items()},
    }, sort_keys=True)


def per_agent_profile(path: str, stats: Any) -> list[tuple[str, float]]:
    """Cumulative seconds of each agent's ``run`` (and the guardian, the KG lookup, verify) in a cProfile."""
    import pstats

    st = stats if isinstance(stats, pstats.Stats) else pstats.Stats(path)
    out: dict[str, float] = {}
    for (file, _, fn), (_, _, _, cum, _) in st.stats.items():  # type: ignore[attr-defined]
        f = file.replace("\\", "/")
        if "/medslm/agents/" in f and fn == "run":
            out[f"agent {Path(f).stem}"] = out.get(f"agent {Path(f).stem}", 0.0) + cum
        elif "/medslm/safety/guardian.py" in f and fn in ("check_input", "check_output"):
            out[f"guardian {fn}"] = out.get(f"guardian {fn}", 0.0) + cum
        elif "/medslm/graphs/nodes.py" in f and fn in ("verify", "kg_lookup", "route"):
            out[f"node {fn}"] = out.get(f"node {fn}", 0.0) + cum
        elif "/medslm/graphs/builders.py" in f and fn == "run_note":
            out["run_note (all)"] = out.get("run_note (all)", 0.0) + cum
        elif "/medslm/models/" in f and fn in ("_many_rows", "_score_rows", "_batch_rows", "_predict_now", "_tokens_now"):
            out[f"model {Path(f).stem}.{fn}"] = out.get(f"model {Path(f).stem}.{fn}", 0.0) + cum
    return sorted(out.items(), key=lambda kv: -kv[1])


def sweep(args: Any) -> dict[str, Any]:
    """Notes in flight: the figures of ``--concurrency`` (see the module doc)."""
    import os

    from medslm import review_batch
    from medslm.graphs.context import ReviewContext
    from medslm.graphs.runner import load_graph
    from medslm.models.batching import all_batch_stats
    from medslm.samples import sample_batch
    from medslm.settings import Settings

    levels = [int(x) for x in args.concurrency.split(",")]
    settings = Settings.from_env()
    graph = load_graph(args.graph, settings)
    notes = sample_batch(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="medslm-bench-sweep-"))
    ctx = ReviewContext(settings=settings, queue_path=tmp / "queue.sqlite")
    plain = plain_runner(graph)
    import torch

    print(f"graph {args.graph}; {len(notes)} notes (sample_batch), {args.rounds} round(s); levels {levels}{'' if args.no_plain else ' and a plain loop'}"
          f"; torch threads {torch.get_num_threads()}, MEDSLM_LM_THREADS={os.environ.get('MEDSLM_LM_THREADS', '1')}, "
          f"cores {os.cpu_count()}", flush=True)
    t = time.perf_counter()
    review_batch(notes[:2], context=ctx, progress=False, concurrency=min(2, max(levels)))
    plain(notes[0], ctx)
    print(f"warm-up {time.perf_counter() - t:.1f} s; RSS {_rss_mib():.0f} MiB", flush=True)

    ways: list[Any] = ["plain", *levels] if not args.no_plain else list(levels)
    rows: dict[Any, dict[str, Any]] = {w: {"wall": 0.0, "cpu": 0.0, "lat": [], "rss": 0.0, "load": [], "out": None,
                                           "batches": {}} for w in ways}
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    for r in range(args.rounds):
        for w in (ways if r % 2 == 0 else ways[::-1]):
            before = {k: (v.batches, v.rows) for k, v in all_batch_stats().items()}
            load0 = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            with _RssPeak() as rss:
                if prof is not None:
                    prof.enable()
                if w == "plain":
                    reviews = [plain(n, ctx) for n in notes]
                else:
                    reviews = review_batch(notes, context=ctx, progress=False, concurrency=w).reviews
                if prof is not None:
                    prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            row = rows[w]
            row["wall"] += wall
            row["cpu"] += cpu
            row["lat"] += [x.latency_ms for x in reviews]
            row["rss"] = max(row["rss"], rss.peak)
            row["load"] += [load0, os.getloadavg()[0]]
            row["out"] = row["out"] or ([discrete(x) for x in reviews], [canonical(x) for x in reviews])
            for k, v in all_batch_stats().items():
                b0, r0 = before.get(k, (0, 0))
                if v.batches > b0:
                    nb, nr = row["batches"].get(k, (0, 0))
                    row["batches"][k] = (nb + v.batches - b0, nr + v.rows - r0)
            print(f"  round {r} {'plain loop' if w == 'plain' else f'N={w}'}: {wall:.1f} s, "
                  f"{60 * len(notes) / wall:.1f} notes/min, load {load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)

    ref = rows[levels[0]]["out"]
    res: dict[str, Any] = {"notes": len(notes), "rounds": args.rounds, "levels": {}, "peak_rss_process_mib": _hwm_mib()}
    base_wall = rows["plain"]["wall"] if "plain" in rows else None
    print(f"\n{'way':>10} {'notes/min':>9} {'p50 s':>7} {'p95 s':>7} {'peak RSS':>9} {'load':>11} {'vs plain':>9} "
          f"{'diff vs N=' + str(levels[0]):>14}  mean rows per batch")
    for w in ways:
        row = rows[w]
        n_total = len(notes) * args.rounds
        d_disc = sum(a != b for a, b in zip(ref[0], row["out"][0], strict=True))
        d_full = sum(a != b for a, b in zip(ref[1], row["out"][1], strict=True))
        fig = {
            "notes_per_min": 60 * n_total / row["wall"],
            "p50_s": pct(row["lat"], 0.5) / 1000,
            "p95_s": pct(row["lat"], 0.95) / 1000,
            "peak_rss_mib": row["rss"],
            "load_1min": [min(row["load"]), max(row["load"])],
            "speedup_vs_plain": base_wall / row["wall"] if base_wall else None,
            "cpu_s": row["cpu"],
            "differ_discrete": d_disc,
            "differ_full_review": d_full,
            "batches": {k: {"batches": nb, "rows": nr, "mean": nr / nb} for k, (nb, nr) in row["batches"].items()},
        }
        res["levels"][str(w)] = fig
        mean = ", ".join(f"{k.split('.', 1)[-1] if '.' in k else k}={v['mean']:.1f}"
                         for k, v in sorted(fig["batches"].items()) if v["mean"] > 0)
        vs = f"{fig['speedup_vs_plain']:.2f}x" if fig["speedup_vs_plain"] else "-"
        print(f"{('plain' if w == 'plain' else f'N={w}'):>10} {fig['notes_per_min']:9.1f} {fig['p50_s']:7.1f} "
              f"{fig['p95_s']:7.1f} {fig['peak_rss_mib']:7.0f}Mi {fig['load_1min'][0]:5.1f}-{fig['load_1min'][1]:<5.1f} "
              f"{vs:>9} {d_disc:>5} / {d_full:<5}   {mean}")
    if "plain" in rows and 1 in rows:
        res["orchestration_overhead_wall"] = rows[1]["wall"] / rows["plain"]["wall"] - 1
        res["orchestration_overhead_cpu"] = rows[1]["cpu"] / rows["plain"]["cpu"] - 1
        print(f"orchestration overhead (graph+runner at N=1 / plain loop - 1): wall "
              f"{res['orchestration_overhead_wall']:+.2%}, CPU {res['orchestration_overhead_cpu']:+.2%}")
    print(f"peak RSS of the process (VmHWM, warm-up included): {res['peak_rss_process_mib']:.0f} MiB")
    if prof is not None:
        import pstats

        prof.dump_stats(args.profile)
        st = pstats.Stats(prof)
        total = sum(rows[w]["wall"] for w in ways)
        print(f"\nprofile ({args.profile}; wall {total:.1f} s over {len(ways)} way(s) x {args.rounds} round(s)), "
              "cumulative seconds:")
        for name, sec in per_agent_profile(args.profile, st):
            print(f"  {name:<45} {sec:8.1f} s")
        res["profile"] = per_agent_profile(args.profile, st)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=36, help="notes per round (sample notes, each copy with its own vitals)")
    ap.add_argument("--rounds", type=int, default=2, help="measured passes over the notes per way")
    ap.add_argument("--chunk", type=int, default=6, help="notes per batch; the way that goes first alternates by batch")
    ap.add_argument("--graph", default="medslm.graphs.builders:chart_review", help="graph builder module:function")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--concurrency", default=None, help="notes in flight to compare, e.g. 1,4,8 (see the module doc)")
    ap.add_argument("--no-plain", action="store_true", help="with --concurrency: no plain-loop baseline")
    ap.add_argument("--profile", default=None, help="with --concurrency: cProfile the runs into this file; per agent")
    args = ap.parse_args(argv)
    if args.concurrency:
        return sweep(args)

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
