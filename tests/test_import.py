import subprocess
import sys


def test_import_medslm_is_light():
    code = ("import sys, medslm, medslm.models.catalog, medslm.records; "
            "print(sorted(m for m in ('torch','transformers','vllm','ray','spacy','outlines') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
