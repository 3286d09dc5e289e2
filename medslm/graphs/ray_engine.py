"""``--engine ray``: the same graph over Ray Data (extra ``ray``); no scheduler of our own.

Notes become a Ray dataset; ``map_batches`` runs a pool of :class:`GraphWorker` actors, each of which
builds the graph once from its ``"module:function"`` spec (so each worker loads its models once) and
reviews its batches with the same :func:`~medslm.graphs.builders.run_note` as the local engine. The
driver streams finished reviews back and commits each to the results store, so the store, the resume
logic and the output are the same as with ``--engine local``.

On a cluster: ``ray start --head`` on the head node, ``ray start --address=HEAD:6379`` on each worker,
install ``medslm[ray,vllm]`` everywhere, point the roles at the vLLM backend
(``MEDSLM_MODEL=vllm:/models/slm``) and pass ``ray_options={"address": "auto", "num_gpus": 1}``; each
actor then holds one GPU and one vLLM engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medslm.errors import ConfigurationError, MissingExtraError
from medslm.records import ChartReview, Note
from medslm.settings import Settings


class GraphWorker:
    """A Ray Data actor: builds the graph once, then reviews batches of notes."""

    def __init__(self, graph_spec: str, settings_json: str, job_key: str) -> None:
        from medslm.graphs.builders import load_graph
        from medslm.graphs.context import ReviewContext

        self.settings = Settings.model_validate_json(settings_json)
        self.graph = load_graph(graph_spec, self.settings)
        self.context = ReviewContext(settings=self.settings)
        self.job_key = job_key

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from medslm.graphs.audit import audit_record
        from medslm.graphs.builders import run_note

        reviews, audits = [], []
        for nid, text, meta in zip(batch["id"], batch["text"], batch["metadata"], strict=True):
            note = Note(id=str(nid), text=str(text), metadata=json.loads(str(meta)))
            review = run_note(self.graph, note, self.context, None, self.job_key)
            reviews.append(review.model_dump_json())
            audits.append(json.dumps(audit_record(review, job_key=self.job_key,
                                                  settings_hash=self.settings.config_hash(),
                                                  graph=getattr(self.graph, "name", None), kg=self.context.kg,
                                                  engine="ray"), default=str))
        return {"review": reviews, "audit": audits}


def _spec_of(graph: Any) -> str:
    if isinstance(graph, str):
        return graph
    mod, name = getattr(graph, "__module__", None), getattr(graph, "__qualname__", None)
    if callable(graph) and mod and name and "<" not in name and mod != "__main__":
        return f"{mod}:{name}"
    raise ConfigurationError(
        "--engine ray needs the graph as a 'module:function' spec (or an importable builder function), "
        "so that each Ray worker can build it; a compiled graph object cannot be shipped"
    )


def run_ray(
    notes: Sequence[Note],
    graph: Any,
    settings: Settings,
    job_key: str,
    *,
    num_cpus: int | None = None,
    workers: int | None = None,
    batch_size: int = 4,
    address: str | None = None,
    num_gpus: float = 0,
) -> Iterator[tuple[ChartReview, dict[str, Any]]]:
    """Review ``notes`` on Ray; yield each ``(review, audit record)`` as it arrives."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError(package="ray", extra="ray", feature="--engine ray") from exc
    spec = _spec_of(graph)
    if not notes:
        return
    if not ray.is_initialized():
        root = str(Path(__file__).resolve().parents[2])
        pythonpath = os.pathsep.join(p for p in (root, os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "TOKENIZERS_PARALLELISM": "false"}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_progress = False
    n_workers = workers or max(1, int(ray.available_resources().get("CPU", 1)))
    ds = ray.data.from_items(
        [{"id": n.id, "text": n.text, "metadata": json.dumps(n.metadata, default=str)} for n in notes],
        override_num_blocks=max(1, min(len(notes), n_workers * 4)),
    )
    out = ds.map_batches(
        GraphWorker,
        fn_constructor_args=(spec, settings.model_dump_json(), job_key),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_workers),
        num_cpus=1,
        num_gpus=num_gpus or None,
    )
    for row in out.iter_rows():
        yield ChartReview.model_validate_json(row["review"]), json.loads(row["audit"])


__all__ = ["GraphWorker", "run_ray"]
