"""Fit encoder adapters (the expensive step of ``medslm train ner-slm assertion-slm …``) on a GPU machine
that has torch, transformers and peft but not medslm's other dependencies, the public data or the base
model package, then finish the recipes here.

    # 1. here: the recipes' fit jobs (examples, settings, dev data) as JSON, medslm's code, the base
    #    encoder's weights (fp16; only the embedding rows the jobs' texts use) and the pydantic wheels
    python scripts/device_fit.py pack ner-slm assertion-slm --data ../shared/data --dir out/device-fit
    # 2. there (the folder travels with the command): fit every job on the GPU into $OUT/<job key>/
    python3 out/device-fit/device_fit.py fit out/device-fit --out $OUT --device cuda
    # 3. here: the recipes find their adapters by job key and finish (fusion / combination tuning on dev
    #    data, figures on report splits, manifest); the manifest's hyperparameters say where it was fitted
    MEDSLM_FIT_CACHE=<the fetched $OUT> medslm train ner-slm assertion-slm --data ../shared/data --out medslm/data/artifacts

The key of a job is the sha256 of its examples, settings, seed and dev data (:meth:`FitJob.key`): an
adapter is only reused for exactly the job that the recipe builds here. The base weights travel in fp16
because the fit runs under bf16 autocast (the matrix products see bf16 values either way); run time
merges the adapter into the fp32 base it always loads.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
WHEELS = ("pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5",
          "typing-extensions==4.16.0")
BASE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _job_texts(job: dict) -> list[str]:
    texts = [e[0] if isinstance(e[0], str) else " ".join(e[0]) for e in job["examples"]]
    dev = job.get("dev", {})
    texts += [d[1] for d in dev.get("docs", [])] + list(dev.get("inputs", []))
    return texts


def pack(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE.parents[1]))
    import tempfile

    import numpy as np
    from safetensors.numpy import save_file
    from safetensors.torch import load_file

    from medslm.models.encoder import base_dir
    from medslm.training import TrainContext, recipes

    out = Path(args.dir)
    if out.exists():
        shutil.rmtree(out)
    (out / "jobs").mkdir(parents=True)
    table = recipes()
    texts: list[str] = []
    for comp in args.components:
        module = sys.modules[table[comp].fn.__module__]
        with tempfile.TemporaryDirectory() as tmp:
            ctx = TrainContext(comp, Path(args.data), Path(tmp), seed=args.seed, quick=args.quick)
            job, _ = module.prepare(ctx)
        d = job.to_json()
        (out / "jobs" / f"{comp}.json").write_text(json.dumps(d), encoding="utf-8")
        texts += _job_texts(d)
        print(f"{comp}: key {d['key']}, {len(d['examples'])} examples")
    # the base encoder: fp16, word-embedding rows the texts use (others zero)
    src = base_dir("minilm")
    (out / "base").mkdir()
    for name in BASE_FILES:
        shutil.copyfile(src / name, out / "base" / name)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src))
    used = set(tok.all_special_ids)
    for k in range(0, len(texts), 512):
        for ids in tok(texts[k : k + 512], add_special_tokens=False)["input_ids"]:
            used.update(ids)
    state = load_file(str(src / "model.safetensors"))
    emb_key = next(k for k in state if k.endswith("word_embeddings.weight"))
    keep = np.asarray(sorted(used), dtype=np.int64)
    arrays = {k: v.numpy().astype(np.float16) for k, v in state.items() if k != emb_key}
    arrays["__rows__"] = state[emb_key].numpy()[keep].astype(np.float16)
    arrays["__row_ids__"] = keep
    save_file(arrays, str(out / "base" / "weights.safetensors"),
              metadata={"embedding_key": emb_key, "vocab_size": str(state[emb_key].shape[0])})
    # medslm's code (no artifacts) and this script
    shutil.copytree(HERE.parents[1] / "medslm", out / "code" / "medslm",
                    ignore=shutil.ignore_patterns("__pycache__", "artifacts", "*.pyc"))
    shutil.copyfile(HERE, out / "device_fit.py")
    (out / "wheels").mkdir()
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                    "-d", str(out / "wheels"), *WHEELS], check=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {out}: {size / 1e6:.1f} MB ({len(keep)} of {state[emb_key].shape[0]} embedding rows)")


def fit(args: argparse.Namespace) -> None:
    folder = Path(args.dir).resolve()
    site = Path("/tmp/device-fit-site")
    try:
        import pydantic  # noqa: F401  (a machine with medslm's environment needs no wheels)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--upgrade", "--target", str(site), *map(str, (folder / "wheels").glob("*.whl"))], check=True)
        sys.path.insert(0, str(site))
    sys.path.insert(0, str(folder / "code"))
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    # the base: fp32 again, full embedding table (rows no text uses are zero; checked below)
    base = Path("/tmp/device-fit-minilm")
    base.mkdir(exist_ok=True)
    for name in BASE_FILES:
        shutil.copyfile(folder / "base" / name, base / name)
    from safetensors import safe_open

    with safe_open(str(folder / "base" / "weights.safetensors"), "np") as fh:
        meta = fh.metadata()
    arrays = load_file(str(folder / "base" / "weights.safetensors"))
    rows, ids = arrays.pop("__rows__"), arrays.pop("__row_ids__")
    emb = np.zeros((int(meta["vocab_size"]), rows.shape[1]), dtype=np.float32)
    emb[ids] = rows.astype(np.float32)
    tensors = {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}
    tensors[meta["embedding_key"]] = torch.from_numpy(emb)
    save_file(tensors, str(base / "model.safetensors"))
    os.environ["MEDSLM_MINILM_DIR"] = str(base)
    os.environ["MEDSLM_FIT_CACHE"] = str(Path(args.out).resolve())
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from transformers import AutoTokenizer

    from medslm.training.encoder_lora import FitJob, fit_job

    tok = AutoTokenizer.from_pretrained(str(base))
    kept = set(ids.tolist())
    print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, device {args.device}", flush=True)
    for path in sorted((folder / "jobs").glob("*.json")):
        d = json.loads(path.read_text(encoding="utf-8"))
        texts = _job_texts(d)
        missing = {i for ids_ in tok(texts, add_special_tokens=False)["input_ids"] for i in ids_} - kept
        if missing:
            raise SystemExit(f"{path.name}: {len(missing)} token ids have no embedding row; pack again")
        job = FitJob.from_json(d)
        assert job.key() == d["key"], (job.key(), d["key"])
        t0 = time.perf_counter()
        history = fit_job(job, Path("/tmp/device-fit-out") / d["component"], device=args.device, log_every=200)
        print(f"{d['component']}: key {d['key']}, {time.perf_counter() - t0:.1f} s, best dev {history['best_dev']:.4f}, "
              f"epochs {[(e['epoch'], round(e['dev'], 4), e['seconds']) for e in history['epochs']]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("components", nargs="+")
    p.add_argument("--data", default=os.environ.get("MEDSLM_DATA_DIR", "../shared/data"))
    p.add_argument("--dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    f = sub.add_parser("fit")
    f.add_argument("dir")
    f.add_argument("--out", required=True)
    f.add_argument("--device", default="cuda")
    args = ap.parse_args()
    pack(args) if args.cmd == "pack" else fit(args)


if __name__ == "__main__":
    main()
