"""``medslm train``: fit every trained component from the public train splits and write artifacts.

Each component has a **recipe** (:class:`Recipe`): a function that reads its data through a
:class:`TrainContext` (which records every file it reads, with its sha256, split and licence), fits with a
fixed seed, tunes thresholds or weights on dev data or cross-validation folds, measures its figures on
data it was not fitted on, and writes its files into the artifact folder. The driver (:func:`train`)
times the recipe and writes the folder's :class:`~medslm.artifacts.Manifest`; a folder appears only when
the whole recipe succeeded (it is written to a temporary folder first and renamed).

    medslm train all --data ../shared/data --out medslm/data/artifacts     # what ships with medslm
    medslm train ner-crf --data my_corpus/ --out my_artifacts/             # a user's retrained tagger

Recipes register with :func:`recipe`; ``quick=True`` fits each on a tiny slice in seconds (the smoke
test that proves the training code runs; never ship such an artifact).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medslm.artifacts import (
    BaseModelRecord,
    DataRecord,
    FileRecord,
    Manifest,
    now_iso,
    sha256_file,
    write_manifest,
)
from medslm.errors import ConfigurationError, UnknownNameError

log = logging.getLogger(__name__)

#: Modules that define recipes; imported on first use of the registry.
RECIPE_MODULES = (
    "medslm.training.ner_crf",
    "medslm.training.ner_slm",
    "medslm.training.assertion_slm",
    "medslm.training.icd_index",
    "medslm.training.icd_reranker",
    "medslm.training.icd_coder",
    "medslm.training.triage_acuity",
    "medslm.training.triage_slm",
    "medslm.training.guardian_heads",
    "medslm.training.summarize_lora",
    "medslm.training.guardian_slm",
    "medslm.training.calibration",  # last: calibrations run the agents with the components fitted before them
)


@dataclass
class TrainResult:
    """What a recipe reports back to the driver (the files are whatever it wrote into ``ctx.out``)."""

    hyperparameters: dict[str, Any] = field(default_factory=dict)
    tuning: str = ""
    figures: dict[str, float] = field(default_factory=dict)
    base_model: BaseModelRecord | None = None
    licences: tuple[str, ...] = ()


@dataclass
class TrainContext:
    """What a recipe gets: where the data is, where to write, the seed, the device and the data it read."""

    component: str
    data_dir: Path
    out: Path
    seed: int = 0
    device: str = "cpu"
    quick: bool = False
    threads: int | None = None
    data: list[DataRecord] = field(default_factory=list)

    def data_file(self, rel: str, *, split: str, use: str = "fit", licence: str = "") -> Path:
        """The path of a data file under the data folder, recorded (with its sha256) in the manifest."""
        path = self.data_dir / rel
        if not path.is_file():
            raise ConfigurationError(
                f"training {self.component!r} needs {path}; pass --data pointing at the folder that holds "
                f"the public data sets (e.g. ../shared/data), or your own data in the same layout"
            )
        if not any(d.path == rel for d in self.data):
            self.data.append(DataRecord(path=rel, sha256=sha256_file(path), split=split, use=use, licence=licence))
        return path

    def data_files(self, rels: Iterable[str], **kw: Any) -> list[Path]:
        return [self.data_file(r, **kw) for r in rels]

    def record_folder(self, rel: str, pattern: str, *, split: str, use: str = "fit", licence: str = "") -> Path:
        """A folder of data files (``pattern`` under ``rel``), recorded as one entry hashing all of them."""
        import hashlib

        folder = self.data_dir / rel
        files = sorted(folder.glob(pattern))
        if not files:
            raise ConfigurationError(f"training {self.component!r} needs files {pattern!r} in {folder}; pass --data")
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
        if not any(d.path == f"{rel}/{pattern}" for d in self.data):
            self.data.append(DataRecord(path=f"{rel}/{pattern}", sha256=h.hexdigest(), split=split, use=use,
                                        licence=licence))
        return folder

    def rng(self) -> random.Random:
        return random.Random(self.seed)


RecipeFn = Callable[[TrainContext], TrainResult]


@dataclass(frozen=True)
class Recipe:
    """How one component is trained."""

    component: str
    agent: str
    fn: RecipeFn
    description: str
    data: tuple[str, ...] = ()  # the public data sets it reads (names under the data folder)


_RECIPES: dict[str, Recipe] = {}
_LOADED = False


def recipe(component: str, *, agent: str, description: str, data: Sequence[str] = ()) -> Callable[[RecipeFn], RecipeFn]:
    """Register a training recipe for ``component`` (used as a decorator)."""

    def register(fn: RecipeFn) -> RecipeFn:
        _RECIPES[component] = Recipe(component, agent, fn, description, tuple(data))
        return fn

    return register


def recipes() -> dict[str, Recipe]:
    """Every registered recipe, by component name (imports the recipe modules once)."""
    global _LOADED
    if not _LOADED:
        for mod in RECIPE_MODULES:
            importlib.import_module(mod)
        from importlib.metadata import entry_points

        for ep in entry_points(group="medslm.recipes"):
            ep.load()
        _LOADED = True
    return dict(_RECIPES)


def resolve_targets(target: str | Sequence[str]) -> list[str]:
    """Component names for ``"all"``, an agent name (``"ner"``: every component of that agent), a group
    (``"calibration"``: every ``calibration-*`` component) or names; calibrations always come last."""
    table = recipes()
    names = [target] if isinstance(target, str) else list(target)
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(table)
        elif name in table:
            out.append(name)
        elif any(r.agent == name for r in table.values()):
            out.extend(c for c, r in table.items() if r.agent == name)
        elif any(c.startswith(name + "-") for c in table):
            out.extend(c for c in table if c.startswith(name + "-"))
        else:
            agents = sorted({r.agent for r in table.values()})
            raise UnknownNameError("training component or agent", name, ["all", *table, *agents])
    found = list(dict.fromkeys(out))
    return [c for c in found if not c.startswith("calibration-")] + [c for c in found if c.startswith("calibration-")]


def _limit_threads(n: int | None) -> None:
    if n is None:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def train_component(component: str, *, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    seed: int = 0, device: str = "cpu", quick: bool = False,
                    threads: int | None = None, recipe_fn: RecipeFn | None = None) -> Manifest:
    """Fit one component and write ``<out_dir>/<component>/`` with its manifest. Returns the manifest.

    ``recipe_fn`` replaces the component's registered recipe (``medslm distill`` refits with extra data).
    """
    from medslm import __version__

    table = recipes()
    if component not in table:
        raise UnknownNameError("training component", component, list(table))
    rec = table[component]
    if recipe_fn is not None:
        from dataclasses import replace as _replace

        rec = _replace(rec, fn=recipe_fn, description=rec.description + " (distilled)")
    out_root = Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{component}-", dir=out_root))
    ctx = TrainContext(component, Path(data_dir), tmp, seed=seed, device=device, quick=quick, threads=threads)
    _limit_threads(threads)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
        t0 = time.perf_counter()
        log.info("training %s (seed %d, device %s%s)", component, seed, device, ", quick" if quick else "")
        result = rec.fn(ctx)
        wall = time.perf_counter() - t0
        files = {
            str(p.relative_to(tmp)): FileRecord(sha256=sha256_file(p), bytes=p.stat().st_size)
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        if not files:
            raise ConfigurationError(f"recipe {component!r} wrote no files")
        licences = tuple(dict.fromkeys([*(d.licence for d in ctx.data if d.licence), *result.licences]))
        hyper = {**result.hyperparameters, "python": platform.python_version()}
        manifest = Manifest(
            component=component, agent=rec.agent, description=rec.description, created=now_iso(),
            medslm_version=__version__, files=files, data=tuple(ctx.data), base_model=result.base_model,
            hyperparameters=hyper, seed=seed, device=device, wall_time_s=round(wall, 2),
            tuning=result.tuning, figures={k: round(float(v), 6) for k, v in result.figures.items()},
            licences=licences, quick=quick,
        )
        write_manifest(tmp, manifest)
        final = out_root / component
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        log.info("trained %s in %.1f s -> %s", component, wall, final)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train(target: str | Sequence[str] = "all", *, data_dir: str | os.PathLike[str],
          out_dir: str | os.PathLike[str], seed: int = 0, device: str = "cpu", quick: bool = False,
          threads: int | None = None, on_done: Callable[[Manifest], None] | None = None) -> list[Manifest]:
    """Fit ``target`` (``"all"``, an agent name, a component name or a list) into ``out_dir``."""
    out = []
    for component in resolve_targets(target):
        m = train_component(component, data_dir=data_dir, out_dir=out_dir, seed=seed, device=device,
                            quick=quick, threads=threads)
        out.append(m)
        if on_done is not None:
            on_done(m)
    return out


def write_json(path: Path, obj: Any) -> Path:
    """Compact, deterministic JSON (sorted keys) for artifact files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":"), sort_keys=True), encoding="utf-8")
    return path


__all__ = [
    "RECIPE_MODULES",
    "Recipe",
    "TrainContext",
    "TrainResult",
    "recipe",
    "recipes",
    "resolve_targets",
    "train",
    "train_component",
    "write_json",
]
