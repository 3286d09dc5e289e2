"""``medslm train``: every recipe runs end to end on a tiny slice of the public data (a smoke test that
proves the training code works in CI), writes a manifest that describes what it read, and a run picks up a
retrained artifact from the user's folder instead of the shipped one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medslm.artifacts import artifact_dir, read_manifest, sha256_file, verify
from medslm.training import recipes, resolve_targets, train


@pytest.fixture(scope="module")
def quick(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("artifacts")
    manifests = {m.component: m for m in train("all", data_dir=data_dir, out_dir=out, quick=True, seed=3)}
    return out, manifests


def test_every_recipe_trains_on_a_slice(quick, data_dir) -> None:
    out, manifests = quick
    assert set(manifests) == set(recipes())
    for name, m in manifests.items():
        folder = out / name
        assert verify(folder) == m  # files on disk match the manifest's sha256 and sizes
        assert m.quick and m.seed == 3 and m.wall_time_s > 0
        assert m.data, f"{name} recorded no data files"
        for d in m.data:  # the manifest's data hashes are the real files' hashes
            if "*" not in d.path:
                assert sha256_file(data_dir / d.path) == d.sha256
        assert m.figures, f"{name} reported no figures"
        assert all(not p.endswith((".pkl", ".pickle", ".joblib")) for p in m.files)


def test_targets_resolve_agent_names_and_typos() -> None:
    # the agent's components, then its calibration (fitted on what they give)
    assert resolve_targets("ner") == ["ner-crf", "ner-crf-ncbi", "ner-slm", "assertion-slm", "calibration-ner"]
    assert "icd-coder" in resolve_targets("all")
    from medslm.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'icd-coder'"):
        resolve_targets("icd-codr")


def test_a_fit_job_is_data_and_a_fitted_adapter_is_reused_by_its_key(quick, tmp_path, monkeypatch, data_dir) -> None:
    """The NER specialist's fit job round-trips through JSON with the same key, and with $MEDSLM_FIT_CACHE
    holding an adapter for that key the recipe reuses it (as after a fit on a GPU machine)."""
    import shutil

    from medslm.training import TrainContext
    from medslm.training.encoder_lora import FitJob
    from medslm.training.ner_slm import prepare

    out, manifests = quick
    job, _ = prepare(TrainContext("ner-slm", data_dir, tmp_path / "x", seed=3, quick=True))
    again = FitJob.from_json(json.loads(json.dumps(job.to_json())))
    assert again.key() == job.key() == manifests["ner-slm"].hyperparameters["fit_key"]
    cache = tmp_path / "cache" / job.key()
    cache.mkdir(parents=True)
    for name in ("adapter.safetensors", "config.json"):
        shutil.copyfile(out / "ner-slm" / name, cache / name)
    (cache / "history.json").write_text(json.dumps({"epochs": [], "trainable_params": 1, "device": "cuda",
                                                    "seconds": 1.0, "best_dev": 0.0}))
    monkeypatch.setenv("MEDSLM_FIT_CACHE", str(tmp_path / "cache"))
    m = train("ner-slm", data_dir=data_dir, out_dir=tmp_path / "again", quick=True, seed=3)[0]
    assert m.hyperparameters["fit_reused"].endswith(job.key()) and m.hyperparameters["fit_device"] == "cuda"
    assert sha256_file(tmp_path / "again" / "ner-slm" / "adapter.safetensors") == m.files["adapter.safetensors"].sha256


def test_a_run_loads_the_users_retrained_artifact(quick, kg, monkeypatch) -> None:
    from medslm.agents.ner import NerAgent
    from medslm.records import Note

    out, _ = quick
    agent = NerAgent(model=None, kg=kg, artifacts=out).load()
    assert agent._tagger is not None and agent._tagger.folder == out / "ner-crf"
    assert agent._slm is not None and agent._slm.model.folder == out / "ner-slm"
    r = agent.run(Note(id="n1", text="Cisplatin-induced nephrotoxicity was treated."), {})
    assert all(r.output[i].text == "Cisplatin-induced nephrotoxicity was treated."[e.start:e.end]
               for i, e in enumerate(r.output))
    # the environment variable does the same for every component it holds, the rest stay shipped
    monkeypatch.setenv("MEDSLM_ARTIFACTS", str(out))
    assert artifact_dir("icd-coder") == out / "icd-coder"
    monkeypatch.delenv("MEDSLM_ARTIFACTS")
    assert artifact_dir("icd-coder").parent.name == "artifacts" and artifact_dir("icd-coder") != out / "icd-coder"


def test_retrained_artifacts_change_the_config_hash(quick) -> None:
    from medslm.settings import Settings

    out, _ = quick
    assert Settings(artifacts=out).config_hash() != Settings().config_hash()
    assert Settings(artifacts=out).config_hash() == Settings(artifacts=out).config_hash()


def test_a_tampered_artifact_fails_verification(quick, tmp_path) -> None:
    import shutil

    from medslm.artifacts import ArtifactError

    out, _ = quick
    copy = tmp_path / "triage-acuity"
    shutil.copytree(out / "triage-acuity", copy)
    params = json.loads((copy / "model.json").read_text())
    params["intercept"][0] += 1.0
    (copy / "model.json").write_text(json.dumps(params))
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        verify(copy)
    assert read_manifest(copy).component == "triage-acuity"


def test_missing_training_data_is_a_clear_error(tmp_path) -> None:
    from medslm.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="pass --data"):
        train("ner-crf", data_dir=tmp_path / "nowhere", out_dir=tmp_path / "out", quick=True)
    assert not (tmp_path / "out" / "ner-crf").exists()  # nothing half-written
