"""``--engine ray``: the same graph on Ray Data (local instance, 2 CPUs) gives identical results."""

from __future__ import annotations

import json

import pytest

from medslm import Settings, load_samples
from medslm.graphs.runner import review_batch

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

CHEAP = Settings().with_models(guardian="rules")


def _canonical(r):
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "latency_ms"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return json.dumps(strip(json.loads(r.model_dump_json())), sort_keys=True)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_engine_matches_local(local_ray, tmp_path):
    notes = load_samples()
    spec = "medslm.graphs.builders:triage_rules"
    local = review_batch(notes, tmp_path / "local.jsonl", graph=spec, settings=CHEAP, progress=False)
    on_ray = review_batch(notes, tmp_path / "ray.jsonl", graph=spec, settings=CHEAP, engine="ray", progress=False)
    assert on_ray.processed == len(notes)
    assert [r.note_id for r in on_ray.reviews] == [n.id for n in notes]
    assert [_canonical(r) for r in on_ray.reviews] == [_canonical(r) for r in local.reviews]
    audit = [json.loads(x) for x in on_ray.audit.read_text().splitlines()]
    assert {a["engine"] for a in audit} == {"ray"} and [a["input_index"] for a in audit] == list(range(len(notes)))
    # resuming works the same: nothing left to do
    again = review_batch(notes, tmp_path / "ray.jsonl", graph=spec, settings=CHEAP, engine="ray", progress=False)
    assert (again.processed, again.skipped) == (0, len(notes))


def test_ray_needs_an_importable_graph(local_ray, tmp_path):
    from medslm.errors import ConfigurationError
    from medslm.graphs.builders import triage_rules

    with pytest.raises(ConfigurationError, match="module:function"):
        review_batch(load_samples(2), graph=triage_rules(CHEAP), settings=CHEAP, engine="ray", progress=False)
