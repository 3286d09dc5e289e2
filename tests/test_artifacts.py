"""The trained artifacts that ship inside the package: one per recipe, each complete, verified against its
manifest, in safe formats, within the size budget, fitted on full data (not a smoke-test slice), with
figures measured on data the artifact was not fitted on."""

from __future__ import annotations

from medslm.artifacts import list_artifacts, shipped_root, verify
from medslm.training import recipes

SAFE_SUFFIXES = (".json", ".safetensors", ".crfsuite")


def shipped() -> dict:
    return {name: (folder, m) for name, folder, m in list_artifacts(shipped_root()) if folder.parent == shipped_root()}


def test_every_recipe_has_a_shipped_artifact() -> None:
    assert set(recipes()) <= set(shipped())


def test_shipped_artifacts_verify_and_are_safe_and_small() -> None:
    total = 0
    for name, (folder, m) in shipped().items():
        assert verify(folder) == m
        assert not m.quick, f"{name} is a smoke-test artifact"
        for rel, rec in m.files.items():
            assert rel.endswith(SAFE_SUFFIXES), f"{name}/{rel}: not a safe, reviewable format"
            assert rec.bytes <= 8 * 1024 * 1024, f"{name}/{rel} is over 8 MB"
            total += rec.bytes
        # only manifest-listed files (and the manifest) in the folder
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert on_disk == {*m.files, "manifest.json"}
    assert total <= 40 * 1024 * 1024


def test_manifests_describe_data_splits_and_out_of_sample_figures() -> None:
    for name, (_, m) in shipped().items():
        assert m.data and all(len(d.sha256) == 64 for d in m.data), name
        assert any(d.use == "fit" for d in m.data), name
        assert m.licences, name
        assert m.tuning, name
        assert m.figures, name
        # a figure names its split; fit-split figures must be cross-validated / out-of-fold
        for fig in m.figures:
            assert any(k in fig for k in ("devel", "dev_", "test", "cv_", "oof", "heldout", "loco", "valid")), (name, fig)


def test_cli_lists_and_verifies_the_artifacts() -> None:
    from typer.testing import CliRunner

    from medslm.cli import app

    r = CliRunner().invoke(app, ["artifacts", "verify"])
    assert r.exit_code == 0, r.output
    assert "ok       icd-coder" in r.output
    r = CliRunner().invoke(app, ["artifacts", "list"])
    assert "ner-crf" in r.output and "shipped" in r.output
