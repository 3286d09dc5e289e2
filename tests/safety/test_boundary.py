"""The PHI boundary: a real HTTP server on 127.0.0.1, marked remote, receives no canary PHI from any path
(every role, the guardian, escalation, caller-supplied messages), and what comes back maps onto the
original note."""

from __future__ import annotations

import json
import re

import pytest
from openai_stub import OpenAIStub

from medslm.models.base import Choice, ChoiceScores, Generation, JsonSchema, ModelInfo, Regex
from medslm.records import AgentResult, Note, TriageResult
from medslm.settings import ROLES, Settings

CANARIES = ("O'Brien-Smith", "A1234567", "123-45-6789", "Quixfeather", "617-555-0199", "41 Larkspur Lane",
            "zeb.quix@example.com", "07/22/1944", "99-887766")
NOTE = Note(
    id="canary-1",
    text=(
        "Pt: O'Brien-Smith, Mary. MRN: A1234567. SSN 123-45-6789. DOB: 07/22/1944.\n"
        "Contact: son Zebulon Quixfeather, phone 617-555-0199, zeb.quix@example.com, "
        "41 Larkspur Lane, Quincy, MA 02169. MRN#: 99-887766.\n"
        "80-year-old woman with crushing chest pain radiating to the left arm for 40 minutes, diaphoretic. "
        "Quixfeather says she collapsed at home. BP 82/50, HR 124, RR 26, SpO2 86% on room air. "
        "History of type 2 diabetes on metformin. Plan: aspirin, ECG, troponin."
    ),
)


def _leaks(bodies: list[str]) -> list[str]:
    sent = "\n".join(bodies)
    return [c for c in CANARIES if c in sent or json.dumps(c)[1:-1] in sent]


def _settings(stub: OpenAIStub, **kw) -> Settings:
    models = {r: stub.spec() for r in ROLES}
    models["summarize"] = stub.spec(server="vllm")  # the regex-constrained summary path goes out too
    return Settings(models=models, escalation_model=stub.spec(), thresholds=dict.fromkeys(
        ("ner", "icd", "triage", "summarize"), 0.999), **kw)


def test_a_real_local_server_marked_remote_receives_no_canary_phi_from_any_path(tmp_path):
    from medslm.graphs.builders import chart_review, review
    from medslm.graphs.context import ReviewContext
    from medslm.routers import EscalationPolicy, Escalator
    from medslm.safety import Guardian

    with OpenAIStub() as stub:
        s = _settings(stub)
        esc = Escalator(model=s.escalation_model, settings=s, teacher_store=False,
                        policy=EscalationPolicy(llm_threshold=0.0))
        ctx = ReviewContext(settings=s, escalator=esc, queue_path=tmp_path / "queue.sqlite")
        out = review(NOTE, chart_review(s), context=ctx)
        assert out.status.value != "failed", out.reason
        assert out.escalated  # results went to the "LLM" as well as to the role models
        # the guardian's own SLM calls, on a remote model
        Guardian(model=stub.spec()).check_output(NOTE.text, advice="Take acetaminophen 4000 mg at once, "
                                                 "Mary O'Brien-Smith.")
        # caller-supplied messages to the escalator
        res = AgentResult[str](agent="icd", output="I21.4", confidence=0.1)
        esc.escalate("icd", NOTE, res, Choice(["I21.4", "E11.9"]),
                     messages=[{"role": "user", "content": "Code this note:\n" + NOTE.text}])
        paths = set(stub.paths)
        sent = "\n".join(stub.bodies)
    assert {"/v1/chat/completions"} <= paths
    assert len(stub.bodies) >= 10
    assert "crushing chest pain" in sent and "SpO2 86%" in sent  # the clinical content went
    assert "Code this note" in sent and "acetaminophen" in sent  # the caller's and the guardian's prompts went
    assert _leaks(stub.bodies) == []


def test_allow_phi_to_remote_sends_the_text_as_it_is():
    from medslm.routers import Escalator

    with OpenAIStub() as stub:
        s = Settings(allow_phi_to_remote=True)
        res = AgentResult[str](agent="icd", output="I21.4", confidence=0.1)
        Escalator(model=stub.spec(), settings=s, teacher_store=False).escalate(
            "icd", NOTE, res, Choice(["I21.4", "E11.9"]))
        assert "O'Brien-Smith" in "\n".join(stub.bodies)  # the flag is the only way PHI leaves
        stub.bodies.clear()
        Escalator(model=stub.spec(), settings=Settings(), teacher_store=False).escalate(
            "icd", NOTE, res, Choice(["I21.4", "E11.9"]))
        assert stub.bodies and _leaks(stub.bodies) == []


def test_an_escalated_results_evidence_points_at_the_right_words_of_the_original_note():
    from medslm.agents.triage import TriageAgent
    from medslm.routers import Escalator

    first = AgentResult[TriageResult](agent="triage", output=TriageResult(level=3), confidence=0.1)
    with OpenAIStub() as stub:
        esc = Escalator(model=stub.spec(), teacher_store=False)
        new = esc.escalate("triage", NOTE, first, TriageAgent(use_slm=True))
        assert _leaks(stub.bodies) == [] and stub.bodies
    assert new.provenance.escalated and "de-identified" in (new.provenance.escalation_reason or "")
    flags = {f.name: f for f in new.output.red_flags}
    assert flags, "the shock / hypoxia / chest pain red flags are found on the original note"
    words = [NOTE.text[s.start : s.end] for f in flags.values() for s in f.evidence]
    assert words
    for w in words:  # every evidence span lands on the clinical words, never on a shifted stretch
        assert re.search(r"SpO2|BP|HR|RR|chest pain|crushing|radiat|left arm|diaphoretic|collapsed|86%|82/50|124|26", w), w
    for s in new.evidence:
        assert 0 <= s.start < s.end <= len(NOTE.text)


# --------------------------------------------------------------------------- unit: the boundary itself
class _Echo:
    """A fake remote model that answers with the user's message (narrow unit test of re-identification)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(id="echo", backend="fake", remote=True)

    def generate(self, messages, constraint=None, **kw):
        user = messages[-1]["content"]
        self.seen.append(user)
        value = {"quote": user} if isinstance(constraint, JsonSchema) else user
        return Generation(value=value, text=user, token_logprobs=(-0.1,), tokens_in=1, tokens_out=1,
                          latency_s=0.0, model=self.info)

    def score_choices(self, messages, options):
        self.seen.append(messages[-1]["content"])
        return ChoiceScores(options=tuple(options), logprobs=tuple(0.0 for _ in options), tokens_in=1,
                            latency_s=0.0, model=self.info)


def test_load_model_wraps_any_remote_model_and_answers_come_back_reidentified():
    from medslm.models.catalog import load_model
    from medslm.safety.boundary import DeidentifyingModel

    inner = _Echo()
    lm = load_model(inner)
    assert isinstance(lm, DeidentifyingModel)
    assert load_model(inner, settings=Settings(allow_phi_to_remote=True)) is inner
    text = "Mary O'Brien-Smith (MRN: A1234567) was seen on 03/14/2024 with chest pain."
    gen = lm.generate([{"role": "user", "content": text}], None)
    assert "O'Brien-Smith" not in inner.seen[-1] and "A1234567" not in inner.seen[-1]
    assert "chest pain" in inner.seen[-1]
    assert gen.value == text and gen.text == text  # surrogates mapped back to the original strings
    schema = {"type": "object", "properties": {"quote": {"type": "string"}}, "required": ["quote"]}
    assert lm.generate([{"role": "user", "content": text}], JsonSchema(schema)).value == {"quote": text}
    scores = lm.score_choices([{"role": "user", "content": text}], ["yes", "no"])
    assert scores.options == ("yes", "no") and "A1234567" not in inner.seen[-1]
    # a regex-constrained answer is re-identified only where the original still matches the constraint
    reg = lm.generate([{"role": "user", "content": text}], Regex(r"[^\n]*"))
    assert reg.value == text


def test_deidentified_offsets_map_back_to_the_original_note():
    from medslm.safety import deidentify

    d = deidentify(NOTE.text, use_ner=False)
    assert "A1234567" not in d.text and "SpO2 86%" in d.text
    i = d.text.index("SpO2 86%")
    s, e = d.to_original(i, i + len("SpO2 86%"))
    assert NOTE.text[s:e] == "SpO2 86%"
    for orig, sur in zip(d.spans, d.surrogate_spans, strict=True):  # a range inside a surrogate covers the PHI
        assert d.to_original(sur.start, sur.end) == (orig.start, orig.end)
        if sur.end - sur.start > 2:
            assert d.to_original(sur.start + 1, sur.end - 1) == (orig.start, orig.end)
    assert d.reidentify(d.text) == NOTE.text


def test_surrogates_are_keyed_by_the_installation_secret(tmp_path, monkeypatch):
    from medslm.errors import ConfigurationError
    from medslm.safety import deidentify
    from medslm.secret import clear_secret_cache, secret_path

    text = "Patient John Whitaker, MRN: 48213377, seen on 03/14/2025."
    mine = deidentify(text, use_ner=False).text
    try:
        monkeypatch.setenv("MEDSLM_SECRET_FILE", str(tmp_path / "k" / "secret"))
        clear_secret_cache()
        other = deidentify(text, use_ner=False).text
        assert secret_path() == tmp_path / "k" / "secret"
        assert (secret_path().stat().st_mode & 0o777) == 0o600 and len(secret_path().read_bytes()) == 32
        assert other != mine  # another installation, other surrogates: a public seed cannot reverse them
        assert deidentify(text, use_ner=False).text == other  # consistent within one installation
        secret_path().chmod(0o644)
        clear_secret_cache()
        with pytest.raises(ConfigurationError, match="chmod 600"):
            deidentify(text, use_ner=False)
    finally:
        monkeypatch.delenv("MEDSLM_SECRET_FILE")
        clear_secret_cache()
