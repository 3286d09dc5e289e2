"""The transformers backend on the real embedded model: prefix-shared batched generation and LoRA adapters."""

from __future__ import annotations

import re

import pytest

from medslm.agents.section_writer import SECTION_REGEX, section_messages
from medslm.errors import ModelError
from medslm.models.base import Regex

NOTE = ("58-year-old man with two weeks of chest pressure on exertion. BP 150/90, HR 88. Lungs clear. "
        "Likely stable angina. Plan: stress test and aspirin 81 mg daily.")


def test_generate_many_matches_the_plain_batch_and_shares_the_note(embedded_lm) -> None:
    prompts = [section_messages(NOTE, t, dialogue=False) for t in ("Chief complaint", "Plan")]
    many = embedded_lm.generate_many(prompts, Regex(SECTION_REGEX), max_tokens=[12, 20])
    plain = embedded_lm.generate_batch(prompts, Regex(SECTION_REGEX), max_tokens=20)
    # greedy decoding under the same grammar: the same tokens, each row stopped at its own budget
    assert many[1].text == plain[1].text
    assert plain[0].text.startswith(many[0].text) and many[0].tokens_out <= 12
    for g in many:
        assert g.tokens_out == len(g.token_logprobs) > 0 and all(lp <= 0 for lp in g.token_logprobs)
        assert re.fullmatch(SECTION_REGEX, g.text) or g.tokens_out in (12, 20)  # complete, or cut at the budget
    assert many[0].tokens_in == plain[0].tokens_in


def test_an_adapter_is_merged_and_its_base_checked(tmp_path) -> None:
    import json

    import torch
    from safetensors.torch import save_file

    from medslm.models import embedded
    from medslm.models.transformers_backend import TransformersModel

    base = embedded.converted_dir()
    a = torch.zeros((2, 576))
    a[0, 0] = 1.0
    b = torch.zeros((576, 2))
    b[3, 0] = 0.5
    save_file({"model.layers.0.self_attn.q_proj.lora_A": a, "model.layers.0.self_attn.q_proj.lora_B": b},
              str(tmp_path / "adapter.safetensors"))
    cfg = {"format": "causal-lora-1", "r": 2, "alpha": 4, "target_modules": ["q_proj"],
           "base_sha256": embedded.weights_sha256(base)}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    plain = TransformersModel(base).load()
    merged = TransformersModel(base, adapter=tmp_path, revision="r").load()
    w0 = plain._model.model.layers[0].self_attn.q_proj.weight.detach()
    w1 = merged._model.model.layers[0].self_attn.q_proj.weight.detach()
    assert float(w1[3, 0] - w0[3, 0]) == pytest.approx(0.5 * 4 / 2)  # alpha / r * B @ A
    assert torch.equal(w1[4:], w0[4:]) and merged.info.revision == "r+adapter:" + tmp_path.name
    cfg["base_sha256"] = "0" * 64  # trained against other weights: refused, and nothing half-loaded
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    other = TransformersModel(base, adapter=tmp_path)
    with pytest.raises(ModelError, match="retrain the adapter"):
        other.load()
    assert other._model is None


def test_calls_from_notes_in_flight_share_a_batch_and_keep_their_answers(embedded_lm) -> None:
    """generate_many and score_choices from 3 threads at once (3 notes in flight) = each alone."""
    import threading

    from medslm.models.batching import note_in_flight

    notes = [NOTE, "Cough and fever for 3 days. SpO2 91 %. Crackles at the right base. Plan: chest X-ray.",
             "Follow-up of type 2 diabetes, HbA1c 8.1 %. Plan: add metformin 500 mg twice daily."]
    prompts = [[section_messages(n, t, dialogue=False) for t in ("Chief complaint", "Plan")] for n in notes]
    choice = [[{"role": "user", "content": f"{n}\nIs this note urgent? Answer yes or no."}] for n in notes]
    options = ["yes", "no", "maybe not"]
    alone = [embedded_lm.generate_many(p, Regex(SECTION_REGEX), max_tokens=[8, 10]) for p in prompts]
    alone_scores = [embedded_lm.score_choices(c, options) for c in choice]
    many_stats = embedded_lm._batchers["generate_many"].stats
    multi_before = sum(c for size, c in many_stats.sizes.items() if size > 1)
    together: list = [None] * 3
    scores: list = [None] * 3
    start = threading.Barrier(3)

    def note(i: int) -> None:
        with note_in_flight():
            start.wait()
            together[i] = embedded_lm.generate_many(prompts[i], Regex(SECTION_REGEX), max_tokens=[8, 10])
            scores[i] = embedded_lm.score_choices(choice[i], options)

    threads = [threading.Thread(target=note, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [[g.text for g in gens] for gens in together] == [[g.text for g in gens] for gens in alone]
    for a, b in zip(alone_scores, scores, strict=True):
        assert b.options == a.options
        assert b.logprobs == pytest.approx(a.logprobs, abs=1e-3)
        assert max(range(3), key=lambda k: b.logprobs[k]) == max(range(3), key=lambda k: a.logprobs[k])
    assert sum(c for size, c in many_stats.sizes.items() if size > 1) > multi_before  # the notes' calls did meet
