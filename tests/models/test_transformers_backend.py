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
