"""Top-layer LoRA with cached frozen states: training sees exactly what the shipped (merged) model computes."""

from __future__ import annotations

import json

import pytest


def test_cached_lower_layers_plus_top_layers_equal_the_merged_model(tmp_path) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from medslm.models.encoder import FORMAT, EncoderClassifier, build, pool
    from medslm.training.encoder_lora import FrozenStates, _pad_states, _state, top_forward

    config = {"format": FORMAT, "kind": "sequence", "labels": ["a", "b", "c"], "base": "minilm", "max_length": 32,
              "pooling": "mean", "extra": {},
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value", "dense"], "layers": [4, 5]}}
    _, model, head = build(config, None, merge=False)
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert names and all(".layer.4." in n or ".layer.5." in n for n in names)  # LoRA on the top layers only
    torch.manual_seed(0)
    with torch.no_grad():  # a non-trivial adapter (B starts at zero, which would make the check vacuous)
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.05)
    model.eval()
    texts = ["Chest pain radiating to the left arm.", "Sore throat for two days, afebrile, eating and drinking."]
    frozen = FrozenStates(4, 32)
    with torch.no_grad():
        h0, mask = _pad_states(frozen.get(texts))
        cached = torch.softmax(head(pool(top_forward(model, h0, mask, 4), mask, "mean")), -1).numpy()
    save_file(_state(model, head), str(tmp_path / "adapter.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    merged = EncoderClassifier(tmp_path).predict(texts)
    assert np.abs(cached - merged).max() < 1e-4
    assert np.abs(merged[0] - merged[1]).max() > 1e-4  # the two texts really differ


def test_frozen_states_are_computed_once_per_text() -> None:
    from medslm.training.encoder_lora import FrozenStates

    frozen = FrozenStates(4, 16)
    a = frozen.get(["one text", "another text"])
    b = frozen.get(["another text"])
    assert len(frozen) == 2 and b[0] is a[1]
    assert a[0].shape[-1] == 384 and a[0].shape[0] <= 16


@pytest.mark.parametrize("layers,expected", [((4, 5), 4), ((0, 1, 2, 3, 4, 5), None), ((2, 4), None), (None, None)])
def test_only_a_contiguous_top_block_is_cached(layers, expected) -> None:
    from medslm.training.encoder_lora import EncoderTask, LoraSettings, _cache_start

    task = EncoderTask("sequence", ["a", "b"])
    assert _cache_start(task, LoraSettings(layers=layers), 6) == expected
    assert _cache_start(EncoderTask("token", ["X"]), LoraSettings(layers=(4, 5)), 6) is None
