"""The causal-LM LoRA trainer's pieces: loss only on the answer, length batches, the adapter's file layout."""

from __future__ import annotations

import random

from medslm.agents.section_writer import section_messages
from medslm.training.causal_lora import CausalExample, encode, length_batches


def test_batches_respect_the_token_budget_and_cover_every_example() -> None:
    lengths = [random.Random(i).randint(20, 600) for i in range(200)]
    batches = length_batches(lengths, 1280, 16, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 16 and (len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1280)
    assert batches == length_batches(lengths, 1280, 16, random.Random(0))  # seeded


def test_the_answer_follows_the_rendered_prompt_and_ends_the_turn() -> None:
    from medslm.models import embedded
    from medslm.models._hf import require_transformers

    tok = require_transformers().AutoTokenizer.from_pretrained(str(embedded.converted_dir()))
    ex = CausalExample.of(section_messages("Doctor: Any fever?\nPatient: No.", "Review of systems", dialogue=True),
                          "Denies fever.")
    e = encode(tok, ex, 512)
    assert e is not None
    prompt = tok.apply_chat_template(ex.chat(), tokenize=False, add_generation_prompt=True)
    assert tok.decode(e.ids[: e.n_prompt]) == prompt  # the loss starts where generation starts at run time
    assert tok.decode(e.ids[e.n_prompt:]) == "Denies fever." + tok.eos_token
    assert encode(tok, ex, e.n_prompt) is None  # too long for max_length: dropped, not cut
