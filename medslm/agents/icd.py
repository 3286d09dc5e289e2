"""The ICD-10-CM coding agent: ranked, evidence-backed codes for a note, all of them knowledge-graph nodes.

It works like a coder with the Alphabetic Index open:

1. **Candidates** (:mod:`medslm.agents.icd_candidates`): the graph's names *and* the Alphabetic Index
   paths ("Sprain, ankle -> S93.40-") matched in the text, order-free matches, abbreviations only where
   their sense is clear ("SpO2 95% on RA" is room air), categories completed from the note (laterality,
   7th character, the unspecified child), and the codes a train-split ranker suggests.
2. **Scores**: a classical stacker (ranker, lexicon, index and rule features) and the SLM reranker
   (all-MiniLM-L6-v2 + a head trained on CodiEsp train, :mod:`medslm.agents.icd_reranker`) over every
   candidate; the combined stacker fuses both (:mod:`medslm.agents.icd_model`), and its probability is
   the code's confidence.
3. **Guidelines** (:mod:`medslm.agents.icd_guidelines`): negated findings, another person's and family
   members' findings are never coded as the patient's; uncertain diagnoses ("r/o", "possible", "likely",
   "vs") are coded only at an inpatient discharge, not in outpatient or emergency notes; family history
   becomes Z80-Z84, personal history Z85-Z87, long-term drug therapy Z79.x, stated statuses their Z
   codes; a category is emitted only as the billable code the note supports; Excludes1 pairs keep the
   better-supported code.

**A code outside ICD-10-CM cannot be produced**: every candidate is looked up in the graph (ICD-10-CM 2026)
before it is scored, rule tables name only graph codes (tests check them), and an emitted code is a
graph concept's own code. ``model``: ``"embedded"`` (or None) uses the MiniLM reranker as the SLM; any
other model (e.g. an escalation LLM) also chooses among an ambiguous mention's codes by choice scoring.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medslm.agents.icd_candidates import (
    best_sentence,
    complete,
    find_mentions,
    sentence_of,
    sentences,
    stems,
)
from medslm.agents.icd_guidelines import (
    FAMILY_HISTORY,
    UNKNOWN,
    Finding,
    codable_as_present,
    encounter_setting,
    family_history_code,
    long_term_drug_codes,
    refine_assertion,
    status_codes,
)
from medslm.agents.icd_model import ORIGIN, CodingModel, Evidence
from medslm.models.base import prompt_hash
from medslm.records import AgentResult, Assertion, CodeAssignment, Entity, EntityType, Note, Provenance, Span
from medslm.routers.confidence import CHOICE_PROB, KG_VERIFIED, kg_verification
from medslm.routers.confidence import combine as fuse

if TYPE_CHECKING:
    from medslm.agents.icd_reranker import CodeReranker
    from medslm.knowledge import KnowledgeGraph
    from medslm.models.base import LanguageModel

log = logging.getLogger(__name__)

_SYSTEM = (
    "You are a clinical coder. Pick the ICD-10-CM description that best matches the mention as it is used "
    "in the sentence."
)
_USER = "Sentence: {sentence}\nMention: \"{mention}\"\nBest ICD-10-CM description:"
PROMPT_HASH = prompt_hash(_SYSTEM, _USER)
SYSTEMS = ("combined", "classical", "slm")

_HISTORY_Z = ("Z85", "Z86", "Z87")
_MAX_SLM_OPTIONS = 6
_MAX_DESCENDANTS = 12
_MAX_SIBLINGS = 15
#: external causes of morbidity (V00-Y99): ranked, never emitted
_EXTERNAL_CAUSE = ("V", "W", "X", "Y")
#: words that name a code alone in the index or the tabular but state no diagnosis on their own
_GENERIC_WORDS = frozenset({"injury", "pain", "disease", "disorder", "syndrome", "lesion", "mass", "history", "infection"})
_CANCER_WORDS = frozenset({"cancer", "carcinoma", "tumor", "tumour", "malignancy", "neoplasm", "adenocarcinoma"})
#: a past condition of these chapters is history (Z85-Z87), not a present condition
_RESOLVED_WHEN_PAST = ("C", "S", "T", "I21", "I26", "I63", "J18", "N39", "O")
#: a sentence that cannot be a ranker-only code's evidence: it negates, doubts or plans
_HEDGED = re.compile(r"\b(?:no|not|denies|denied|without|negative|free of|absence of|ruled out|rule out|r/o|"
                     r"possible|possibly|probable|likely|suspected|concern for|history of|family history|"
                     r"mother|father|sister|brother|if|plan|consider)\b", re.I)


@dataclass(frozen=True)
class Coding:
    """What :meth:`IcdAgent.code` found: the emitted codes, the whole ranking and the raw signals."""

    chosen: list[CodeAssignment]
    ranked: list[CodeAssignment]
    signals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Mention:
    """A problem mention that is not present: a family member's, or the patient's past one."""

    start: int
    end: int
    assertion: Assertion
    codes: tuple[str, ...]  # its ICD-10-CM codes (lexicon or entity concepts), best first
    confidence: float


@dataclass
class _Analysis:
    """The note read once: sentences, evidence per code, history mentions, encounter setting."""

    spans: list[tuple[int, int]]
    evidence: dict[str, Evidence]
    history: list[_Mention]
    setting: str
    codable: dict[str, int] = field(default_factory=dict)  # code -> mentions that may code it as present


class IcdAgent:
    """ICD-10-CM codes of a note: ``IcdAgent().run(note, state) -> AgentResult[list[CodeAssignment]]``.

    ``model``: ``"embedded"``/None (the MiniLM reranker is the SLM) or a generative model spec /
    :class:`LanguageModel` that also disambiguates mentions; ``kg``: graph (``None``: default);
    ``threshold``: minimum confidence of an emitted code (``None``: the one fitted on train, best
    out-of-fold micro-F1); ``coder`` / ``reranker``: the trained artifacts (``None``: without them);
    ``artifacts``: a folder of retrained artifacts (default ``$MEDSLM_ARTIFACTS``, else the shipped ones);
    ``setting``: force the encounter setting (else ``note.metadata["encounter"]`` or the note's words);
    ``require_evidence``: emit only codes with an evidence span in the note (a mention, or a sentence
    holding two thirds of the words of the code's description); ranker-only codes still rank.
    """

    name = "icd"

    def __init__(
        self,
        model: str | LanguageModel | None = "embedded",
        kg: KnowledgeGraph | None = None,
        *,
        threshold: float | None = None,
        coder: str | None = "icd-coder",
        reranker: str | None = "icd-reranker",
        artifacts: str | Path | None = None,
        setting: str | None = None,
        max_slm_calls: int = 3,
        max_codes: int = 25,
        require_evidence: bool = True,
    ) -> None:
        self.model = model
        self._kg = kg
        self._threshold = threshold
        self.coder_name = coder
        self.reranker_name = reranker
        self.artifacts = artifacts
        self.setting = setting
        self.max_slm_calls = max_slm_calls
        self.max_codes = max_codes
        self.require_evidence = require_evidence
        self._lm: LanguageModel | None = None
        self._coder: CodingModel | None = None
        self._reranker: CodeReranker | None = None
        self._loaded: set[str] = set()
        self._assert: Any = None
        self._lock = threading.Lock()
        self._memo: tuple[str, _Analysis] | None = None  # the last note's analysis, keyed by a hash (no text)

    # ------------------------------------------------------------------ lazy parts
    @property
    def kg(self) -> KnowledgeGraph:
        if self._kg is None:
            from medslm.knowledge import KnowledgeGraph

            self._kg = KnowledgeGraph.default()
        return self._kg

    @property
    def lm(self) -> LanguageModel | None:
        """The generative model that disambiguates mentions (None for the embedded default)."""
        if self.model is None or self.model == "embedded":
            return None
        if self._lm is None:
            from medslm.models.catalog import load_model

            self._lm = load_model(self.model)
        return self._lm

    @property
    def coder(self) -> CodingModel | None:
        """The train-split ranker and stackers (the ``icd-coder`` artifact); None when ``coder=None``."""
        with self._lock:
            if "coder" not in self._loaded:
                if self.coder_name is not None:
                    from medslm.artifacts import artifact_dir

                    self._coder = CodingModel.load(artifact_dir(self.coder_name, self.artifacts))
                self._loaded.add("coder")
        return self._coder

    @property
    def reranker(self) -> CodeReranker | None:
        """The SLM reranker (the ``icd-reranker`` artifact); None when ``reranker=None``."""
        with self._lock:
            if "reranker" not in self._loaded:
                if self.reranker_name is not None:
                    from medslm.agents.icd_reranker import CodeReranker
                    from medslm.artifacts import artifact_dir

                    self._reranker = CodeReranker(artifact_dir(self.reranker_name, self.artifacts)).load()
                self._loaded.add("reranker")
        return self._reranker

    def threshold_for(self, system: str = "combined") -> float:
        if self._threshold is not None:
            return self._threshold
        coder = self.coder
        if system == "slm" and self.reranker is not None:
            return self.reranker.threshold
        if coder is None:
            return 0.5
        if system == "combined" and coder.stacker is not None and self.reranker is not None:
            return coder.threshold
        return coder.threshold_classical

    @property
    def threshold(self) -> float:
        return self.threshold_for("combined")

    def load(self) -> IcdAgent:
        self.kg.matcher(("ICD10CM",))
        _ = self.coder
        if self.reranker is not None:
            from medslm.knowledge.embedding import encoder

            encoder().loaded()
        _ = self.lm
        return self

    def with_model(self, lm: Any) -> IcdAgent:
        """The same agent with another model (escalation re-runs it with the LLM)."""
        return type(self)(lm, self._kg, threshold=self._threshold, coder=self.coder_name, reranker=self.reranker_name,
                        artifacts=self.artifacts, setting=self.setting, max_slm_calls=self.max_slm_calls,
                        max_codes=self.max_codes, require_evidence=self.require_evidence)

    def _billable(self, code: str) -> bool:
        c = self.kg.get(code, "ICD10CM")
        return bool(c and c.billable)

    # ------------------------------------------------------------------ reading the note
    def evidence(self, text: str, entities: Sequence[Entity] | None = None, setting: str = UNKNOWN) -> dict[str, Evidence]:
        """Lexicon, index and completion evidence per candidate code, with each mention's assertion."""
        return self._analyse(text, entities, setting).evidence

    def _analyse(self, text: str, entities: Sequence[Entity] | None, setting: str) -> _Analysis:
        kg = self.kg
        spans = sentences(text)
        mentions = find_mentions(kg, text, spans)
        raw = self._assertions(text, [(m.start, m.end) for m in mentions], entities)
        out: dict[str, Evidence] = {}
        codable: dict[str, int] = {}
        history: list[_Mention] = []

        def add(code: str, m: Any, finding: Finding, origin: float, ambiguity: int, past: bool = False) -> None:
            if kg.get(code, "ICD10CM") is None:
                return
            ev = out.get(code)
            if ev is None:
                ev = out[code] = Evidence(origin=origin, bag=m.source == "bag")
            elif origin > ev.origin:
                ev.origin = origin
            if m.source != "bag":
                ev.bag = False
            ev.spans.append((m.start, m.end))
            ev.lex_score = max(ev.lex_score, m.score)
            ev.count += 1
            ev.ambiguity = max(ev.ambiguity, ambiguity)
            present = codable_as_present(finding, UNKNOWN) and not past  # negated / family / other person / past
            ev.negated += int(not present and finding.assertion is not Assertion.POSSIBLE)
            ev.possible += int(finding.assertion is Assertion.POSSIBLE)
            codable[code] = codable.get(code, 0) + int(codable_as_present(finding, setting) and not past)

        for m, a in zip(mentions, raw, strict=True):
            sent = sentence_of(spans, m.start, m.end)
            finding = refine_assertion(text, m.start, m.end, sent, a)
            codes = m.codes[:3]
            # a past cancer, injury or acute event is personal history (Z85-Z87), not the condition
            past = finding.assertion is Assertion.HISTORICAL and any(c.startswith(_RESOLVED_WHEN_PAST) for c in codes)
            if past:
                history.append(_Mention(m.start, m.end, Assertion.HISTORICAL, codes, m.score))
            if finding.assertion is Assertion.FAMILY and not finding.other_person:
                history.append(_Mention(m.start, m.end, Assertion.FAMILY, codes, m.score))
            window = text[max(sent[0], m.start - 60) : min(sent[1], m.end + 60)]
            for code in codes:
                add(code, m, finding, ORIGIN["direct"], len(codes), past)
                concept = kg.get(code, "ICD10CM")
                if concept is None:
                    continue
                if concept.billable:  # its siblings: the same category, other specificity
                    for parent in kg.parents(code):
                        if parent.kind in ("category", "subcategory"):
                            for sib in [d.code for d in kg.descendants(parent.code) if d.billable][:_MAX_SIBLINGS]:
                                if sib != code:
                                    add(sib, m, finding, ORIGIN["sibling"], len(codes), past)
                    continue
                chosen, others = complete(kg, code, window, text)
                if chosen:
                    add(chosen, m, finding, ORIGIN["completion"], len(codes), past)
                for other in others[:_MAX_DESCENDANTS]:
                    add(other, m, finding, ORIGIN["descendant"], len(codes), past)
        for e in entities or ():
            if e.type is not EntityType.PROBLEM or e.assertion not in (Assertion.FAMILY, Assertion.HISTORICAL):
                continue
            codes_e = [ref.id.partition(":")[2] for ref in e.concepts if ref.id.startswith("ICD10CM:")]
            if not codes_e:
                codes_e = [c.concept.code for c in kg.lookup(e.text, systems=("ICD10CM",), k=2, fuzzy=True)
                           if c.score >= 0.75]
            if codes_e:  # the entity's span (e.g. "breast cancer") over a shorter lexicon match ("cancer")
                history = [h for h in history if not (h.start < e.end and e.start < h.end)]
                history.append(_Mention(e.start, e.end, e.assertion, tuple(codes_e), e.confidence))
        history = [self._widen(text, h) for h in history]
        return _Analysis(spans, out, history, setting, codable)

    def _widen(self, text: str, h: _Mention) -> _Mention:
        """A family or history mention with the one or two words before it, where the graph knows the longer
        name ("breast" + "cancer" -> C50.919 rather than the lexicon's C80.1 for "cancer")."""
        if h.assertion not in (Assertion.FAMILY, Assertion.HISTORICAL):
            return h
        family = h.assertion is Assertion.FAMILY
        words = list(re.finditer(r"[A-Za-z][\w-]*", text[max(0, h.start - 40) : h.start]))
        for n in (2, 1):
            if len(words) < n:
                continue
            start = max(0, h.start - 40) + words[-n].start()
            if re.search(r"[.;:\n]", text[start : h.start]):
                continue
            site = text[start : h.start].strip()
            queries = [text[start : h.end]]
            if text[h.start : h.end].lower() in _CANCER_WORDS:  # "colon cancer" -> "malignant neoplasm of colon"
                queries.append(f"malignant neoplasm of {site}")
            for q in queries:
                for cand in self.kg.lookup(q, systems=("ICD10CM",), k=1):
                    code = cand.concept.code
                    if cand.score >= 0.9 and (family_history_code(code) if family else code.startswith(_RESOLVED_WHEN_PAST)):
                        return _Mention(start, h.end, h.assertion, (cand.concept.code, *h.codes), h.confidence)
        return h

    def _assertions(self, text: str, spans: list[tuple[int, int]], entities: Sequence[Entity] | None) -> list[Assertion]:
        """ConText rules (what the stackers were fitted with); an overlapping NER entity's assertion where the
        rules find nothing (present) and the entity does: a mention is coded as present only when neither
        says otherwise (the learned assertion model of ``medslm.agents.assertion`` reads "father has type 2
        diabetes" and "r/o PE" as present; the rules do not)."""
        if not spans:
            return []
        if self._assert is None:
            from medslm.agents.assertion import ContextRules

            self._assert = ContextRules()
        out = list(self._assert.classify(text, spans))
        for i, (s, e) in enumerate(spans):
            hit = next((x for x in entities or () if x.start < e and s < x.end), None)
            if hit is not None and out[i] is Assertion.PRESENT:
                out[i] = hit.assertion
        return out

    # ------------------------------------------------------------------ ranking
    def rank(self, text: str, entities: Sequence[Entity] | None = None, *, system: str = "combined"
             ) -> tuple[list[CodeAssignment], dict[str, float]]:
        """Every candidate code, best first, with its confidence and evidence; and the raw signals."""
        items, signals, _ = self._rank(text, entities, UNKNOWN, system)
        return items, signals

    def _extras(self, text: str, spans: Sequence[tuple[int, int]]) -> Any:
        kg = self.kg
        sent_stems = [stems(text[s:e]) for s, e in spans]

        def extras(codes: Sequence[str]) -> list[tuple[float, float]]:
            out = []
            for c in codes:
                concept = kg.get(c, "ICD10CM")
                words = stems(concept.label) if concept is not None else set()
                best = max((len(words & ss) for ss in sent_stems), default=0)
                out.append((best / len(words) if words else 0.0, float(bool(kg.index_paths(c)))))
            return out

        return extras

    def _rank(self, text: str, entities: Sequence[Entity] | None, setting: str, system: str
              ) -> tuple[list[CodeAssignment], dict[str, float], _Analysis]:
        if system not in SYSTEMS:
            raise ValueError(f"system {system!r}: expected one of {', '.join(SYSTEMS)}")
        t0 = time.perf_counter()
        kg = self.kg
        ents = ";".join(f"{e.start}:{e.end}:{e.type}:{e.assertion}" for e in entities or ())
        key = hashlib.sha256(f"{setting}|{ents}|{text}".encode()).hexdigest()
        memo = self._memo
        if memo is not None and memo[0] == key:
            an = memo[1]
        else:
            an = self._analyse(text, entities, setting)
            self._memo = (key, an)
        evidence = an.evidence
        coder = self.coder
        slm_calls = 0.0
        if coder is not None:
            codes, rows = coder.candidate_features(coder.ridge.scores(text), evidence, self._billable,  # type: ignore[union-attr]
                                                   self._extras(text, an.spans))
            reranker = self.reranker if system != "classical" else None
            if reranker is not None and (system == "slm" or coder.stacker is not None):
                slm = reranker.score(kg, text, an.spans, codes, evidence)
                slm_calls = 1.0
                if system == "slm":
                    probs = [0.0 if math.isnan(p) else p for p, _ in slm]
                else:
                    probs = coder.predict([[*r, p, c] for r, (p, c) in zip(rows, slm, strict=True)])
            else:
                probs = coder.predict_classical(rows)
        else:  # coder=None: the lexicon alone
            codes = list(evidence)
            probs = [0.6 * evidence[c].lex_score * evidence[c].origin * (1 - evidence[c].negated / max(1, evidence[c].count))
                     for c in codes]  # a code the note names before its completions, descendants, siblings
        scored = {c: p for c, p in zip(codes, probs, strict=True) if kg.get(c, "ICD10CM") is not None}
        lm_probs, calls, tokens, agreement = self._disambiguate(text, evidence, scored)
        floor = 0.5 * self.threshold_for(system)
        items: list[CodeAssignment] = []
        for code, p in scored.items():
            concept = kg.get(code, "ICD10CM")
            assert concept is not None
            ev = evidence.get(code)
            conf = p * (0.9 + 0.1 * lm_probs[code]) if code in lm_probs else p
            spans = tuple(Span(start=s, end=e, label=code) for s, e in (ev.spans if ev else [])[:5])
            if not spans and p >= floor:  # ranked far below the threshold: no emission, no evidence search
                spans = self._label_evidence(text, an.spans, concept.label, code)
            items.append(CodeAssignment(code=concept.code, description=concept.label, billable=bool(concept.billable),
                                        evidence=spans, confidence=round(max(0.0, min(1.0, conf)), 4),
                                        score=round(p + 0.001 * lm_probs.get(code, 0.0), 6)))
        items.sort(key=lambda c: (-c.score, c.code))
        signals = {
            "candidates": float(len(items)),
            "lexicon_codes": float(len(evidence)),
            "reranker_calls": slm_calls,
            "slm_calls": float(calls),
            "slm_tokens_in": float(tokens),
            "slm_agreement": agreement,
            "seconds": time.perf_counter() - t0,
        }
        return items, signals, an

    def _disambiguate(self, text: str, evidence: dict[str, Evidence], scored: dict[str, float]
                      ) -> tuple[dict[str, float], int, int, float]:
        """For mentions naming several codes, a generative model's probability of each code's description
        (only when the agent runs on a generative model: an escalation LLM or a user's choice)."""
        lm = self.lm
        if lm is None or self.max_slm_calls <= 0:
            return {}, 0, 0, 1.0
        by_span: dict[tuple[int, int], list[str]] = {}
        for code, ev in evidence.items():
            if ev.origin < ORIGIN["direct"]:
                continue
            for sp in ev.spans:
                by_span.setdefault(sp, []).append(code)
        ambiguous = [(sp, cs) for sp, cs in by_span.items() if len(cs) > 1 and any(c in scored for c in cs)]
        ambiguous.sort(key=lambda x: -max(scored.get(c, 0.0) for c in x[1]))
        out: dict[str, float] = {}
        agree = calls = tokens = 0
        for (s, e), cs in ambiguous[: self.max_slm_calls]:
            cs = [c for c in cs if c in scored][:_MAX_SLM_OPTIONS]
            if len(cs) < 2:
                continue
            labels = [self.kg.get(c, "ICD10CM").label for c in cs]  # type: ignore[union-attr]
            if len(set(labels)) < len(labels):
                labels = [f"{lab} ({c})" for lab, c in zip(labels, cs, strict=True)]
            s0 = text.rfind("\n", 0, s) + 1
            s1 = text.find("\n", e)
            sentence = text[max(s0, s - 200) : (s1 if s1 >= 0 else len(text))][:400]
            scores = lm.score_choices(
                [{"role": "system", "content": _SYSTEM},
                 {"role": "user", "content": _USER.format(sentence=sentence, mention=text[s:e])}],
                labels,
            )
            calls += 1
            tokens += scores.tokens_in
            for c, p in zip(cs, scores.probs, strict=True):
                out[c] = max(out.get(c, 0.0), p)
            best_stack = max(cs, key=lambda c: scored[c])
            agree += int(cs[labels.index(scores.best)] == best_stack)
        return out, calls, tokens, (agree / calls if calls else 1.0)

    @staticmethod
    def _label_evidence(text: str, spans: Sequence[tuple[int, int]], label: str, code: str) -> tuple[Span, ...]:
        """For a ranker-only code: the sentence sharing most content words with the code's description,
        provided it holds two thirds of them; else none."""
        words = stems(label)
        if not words:
            return ()
        best, n = best_sentence(text, spans, words)
        if best is None or 3 * n < 2 * len(words) or _HEDGED.search(text[best[0] : best[1]]):
            return ()  # no sentence says it, or the one that names its words negates or doubts them
        return (Span(start=best[0], end=best[1], label=code),)

    # ------------------------------------------------------------------ rules
    def _z_code(self, text: str, code: str | None, start: int, end: int, conf: float) -> CodeAssignment | None:
        concept = self.kg.get(code, "ICD10CM") if code else None
        if concept is None:
            return None
        if not concept.billable:  # a status category ("Z96.65") completed for laterality
            chosen, _ = complete(self.kg, concept.code, text[max(0, start - 60) : end + 60], "")
            concept = self.kg.get(chosen, "ICD10CM") if chosen else None
            if concept is None:
                return None
        conf = round(max(0.0, min(1.0, conf)), 4)
        return CodeAssignment(code=concept.code, description=concept.label, billable=bool(concept.billable),
                              evidence=(Span(start=start, end=end, label=concept.code),), confidence=conf, score=conf)

    def _history_codes(self, text: str, mentions: Sequence[_Mention], present: set[str]) -> list[CodeAssignment]:
        """Z80-Z84 codes for a family member's diseases, Z85-Z87 for the patient's past ones."""
        kg = self.kg
        out: dict[str, CodeAssignment] = {}
        for h in mentions:
            z: str | None = None
            conf = h.confidence
            if h.assertion is Assertion.FAMILY:
                z = next((fz for c in h.codes if (fz := family_history_code(c))), None)
                conf *= 0.9  # the chapter-level table is coarser than the mention
            else:  # personal history: where the graph (tabular or index) names one
                disease = kg.get(h.codes[0], "ICD10CM")
                if disease is None:
                    continue
                for q in (f"personal history of {disease.label}", f"history of {disease.label}"):
                    for cand in kg.lookup(q, systems=("ICD10CM",), k=3, fuzzy=True):
                        if cand.concept.code.startswith(_HISTORY_Z) and cand.score >= 0.8:
                            z, conf = cand.concept.code, conf * cand.score
                            break
                    if z:
                        break
            item = self._z_code(text, z, h.start, h.end, conf)
            if item is None or item.code in present:
                continue
            prev = out.get(item.code)
            if prev is None or prev.confidence < item.confidence:
                out[item.code] = item
        return list(out.values())

    def _stated_codes(self, text: str, an: _Analysis, present: set[str]) -> list[CodeAssignment]:
        """Long-term drug therapy (Z79.x) and status codes the note states for the patient."""
        found = [(c, s, e, 0.8) for c, s, e in long_term_drug_codes(text, an.spans)]
        found += [(c, s, e, 0.85) for c, s, e in status_codes(text)]
        if not found:
            return []
        raw = self._assertions(text, [(s, e) for _, s, e, _ in found], None)
        out: dict[str, CodeAssignment] = {}
        for (code, s, e, conf), a in zip(found, raw, strict=True):
            finding = refine_assertion(text, s, e, sentence_of(an.spans, s, e), a)
            if finding.assertion not in (Assertion.PRESENT, Assertion.HISTORICAL) or finding.other_person:
                continue
            item = self._z_code(text, code, s, e, conf)
            if item is not None and item.code not in present and item.code not in out:
                out[item.code] = item
        return list(out.values())

    def select(self, ranked: Sequence[CodeAssignment], evidence_negated: Mapping[str, bool],
               threshold: float, lexical: set[str] | None = None, documented: set[str] | None = None,
               preferred: set[str] | None = None) -> list[CodeAssignment]:
        """Apply the threshold, guideline (``evidence_negated``: not codable as present), Excludes1 and
        specificity rules to a ranking. ``documented``: codes the note states outright (see
        :meth:`_documented`), emitted whatever their score; ``preferred``: the note's own
        completions of a category (laterality, 7th character), which a category stands for before its other
        descendants; an external-cause code (V00-Y99) is never emitted (not required by the guidelines;
        ranked only)."""
        kg = self.kg
        chosen: list[CodeAssignment] = []
        used: list[tuple[int, int]] = []
        pool = {c.code: c for c in ranked}
        documented = documented or set()
        # in an Excludes1 conflict (and for the cap), a code the note names beats a ranker-only one
        # "injury, unspecified site" (T14) last: it gives way to any sited injury (an Excludes1 pair)
        order = sorted(ranked, key=lambda c: (c.code.startswith("T14"), c.code not in (lexical or ()), -c.score))
        preferred = preferred or set()

        def billable_kid(code: str) -> CodeAssignment | None:
            """The billable code a category stands for: a completion from the note (laterality, 7th
            character) under it, else under its parent ("S93.402" from the ranker, the note says right:
            S93.401A), else its best-scored billable descendant with evidence."""
            kids = [k for c, k in pool.items() if c != code and c.startswith(code) and k.billable
                    and k.evidence and not evidence_negated.get(c, False)]
            pref = [k for k in kids if k.code in preferred]
            if not pref and len(code.replace(".", "")) > 3:
                parent = code[:-1].rstrip(".")
                pref = [k for c, k in pool.items() if c.startswith(parent) and c in preferred and k.billable
                        and k.evidence and not evidence_negated.get(c, False)]
            return max(pref or kids, key=lambda k: k.score, default=None)

        for item in order:
            if item.code.startswith(_EXTERNAL_CAUSE) or len(chosen) >= self.max_codes:
                continue
            if item.confidence < threshold and item.code not in documented:
                continue
            if evidence_negated.get(item.code, False):
                continue
            if not item.billable:  # a category: only as the billable code the note supports
                kid = billable_kid(item.code)
                if kid is None:
                    continue
                item = kid
            if self.require_evidence and not item.evidence:
                continue
            if any(item.code == c.code or kg.excluded_together(item.code, c.code) for c in chosen):
                continue
            if any(item.code.startswith(c.code) or c.code.startswith(item.code) for c in chosen):
                continue  # a code and its own ancestor or descendant: the first (better supported) stays
            spans = [(sp.start, sp.end) for sp in item.evidence]
            if spans and all(any(s < b and a < e for a, b in used) for s, e in spans):
                continue  # every words it stands on already support a better-scored code
            used.extend(spans)
            chosen.append(item)
        if any(c.code[0] == "S" or "T00" <= c.code[:3] <= "T34" for c in chosen if not c.code.startswith("T14")):
            chosen = [c for c in chosen if not c.code.startswith("T14")]  # "injury, unspecified site" beside a sited one
        return chosen

    @staticmethod
    def _documented(an: _Analysis, text: str) -> set[str]:
        """Codes the note states outright: a present (codable) mention names the code, or the category whose
        completion it is, by an exact name of the graph or the index (not an order-free match, not an
        abbreviation) that names nothing else; billable; not a symptom (R), whose coding depends on the
        diagnosis it belongs to, nor a Z code (the rules give those)."""
        out = set()
        for code, ev in an.evidence.items():
            words = {text[s:e].lower() for s, e in ev.spans}
            if any(len(w) < 4 or w in _GENERIC_WORDS for w in words):
                continue  # "old", "injury": a word that names a code in the index, not a diagnosis stated
            if (ev.origin >= ORIGIN["completion"] and ev.lex_score >= 0.9 and not ev.bag and ev.ambiguity == 1
                    and an.codable.get(code, 0) > 0 and not code.startswith(("R", "Z", *_EXTERNAL_CAUSE))):
                out.add(code)
        return out

    @staticmethod
    def _not_codable(an: _Analysis, ranked: Sequence[CodeAssignment]) -> dict[str, bool]:
        """Codes not to emit as the patient's: no mention may code them (negated, another person's, a
        family member's, hypothetical, or uncertain outside an inpatient discharge); for a code with no
        mention of its own (a ranker suggestion), when every mention of its category is so."""
        by_cat: dict[str, list[int]] = {}
        for code, n in an.codable.items():
            by_cat.setdefault(code[:3], []).append(n)
        out: dict[str, bool] = {}
        for item in ranked:
            ev = an.evidence.get(item.code)
            if ev is not None and ev.count:
                out[item.code] = an.codable.get(item.code, 0) == 0
            else:
                ns = by_cat.get(item.code[:3], [])
                out[item.code] = bool(ns) and not any(ns)
        return out

    def code(self, text: str, entities: Sequence[Entity] | None = None, *, setting: str | None = None,
             metadata: Mapping[str, Any] | None = None, system: str = "combined") -> Coding:
        """The codes of a text (and its NER entities, when there are), the whole ranking and signals.

        ``setting``: the encounter setting (default: the agent's, else from ``metadata`` and the text);
        ``system``: ``"combined"`` (what ships), ``"classical"`` (no SLM) or ``"slm"`` (SLM scores alone).
        """
        t0 = time.perf_counter()
        setting = setting or self.setting or encounter_setting(text, metadata)
        ranked, signals, an = self._rank(text, entities, setting, system)
        threshold = self.threshold_for(system)
        chosen = self.select(ranked, self._not_codable(an, ranked), threshold, set(an.evidence),
                             self._documented(an, text) if system != "slm" else set(),
                             {c for c, ev in an.evidence.items() if ev.origin == ORIGIN["completion"]})
        present = {c.code for c in chosen}
        chosen.extend(self._history_codes(text, an.history, present))
        present = {c.code for c in chosen}
        chosen.extend(self._stated_codes(text, an, present))
        confs = [c.confidence for c in chosen]
        chosen_codes = {c.code for c in chosen}
        top_left = max((c.confidence for c in ranked if c.code not in chosen_codes and c.confidence < threshold),
                       default=0.0)
        signals.update({
            "emitted": float(len(chosen)),
            "history_codes": float(sum(c.code.startswith(("Z8",)) for c in chosen)),
            "z_codes": float(sum(c.code.startswith("Z") for c in chosen)),
            "inpatient": float(setting == "inpatient"),
            "mean_code_confidence": sum(confs) / len(confs) if confs else 0.0,
            "min_code_confidence": min(confs, default=0.0),
            "best_rejected_confidence": top_left,
            "threshold": threshold,
            "seconds": time.perf_counter() - t0,
        })
        return Coding(chosen=chosen, ranked=ranked, signals=signals)

    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[list[CodeAssignment]]:
        state = state or {}
        text = state.get("text") or note.text
        ents_result = state.get("entities")
        entities: list[Entity] | None = list(ents_result.output) if ents_result is not None else None
        coding = self.code(text, entities, metadata=note.metadata)
        chosen, signals = coding.chosen, coding.signals
        # a note is as certain as its weakest emitted code and the strongest code left out
        if coding.ranked or chosen:
            signals[CHOICE_PROB] = min(signals["min_code_confidence"] if chosen else 1.0,
                                       1.0 - signals["best_rejected_confidence"])
        else:
            signals[CHOICE_PROB] = 0.5  # nothing in the text the graph knows: no evidence either way
        # the KG's say: the share of emitted codes that are billable leaves of ICD-10-CM
        signals[KG_VERIFIED] = kg_verification(sum(c.billable for c in chosen), len(chosen))
        conf = fuse(signals)
        lm = self._lm
        info = lm.info if lm is not None else None
        model_id = info.id if info else ("sentence-transformers/all-MiniLM-L6-v2+icd-reranker"
                                         if self._reranker is not None else None)
        log.debug("icd note=%s emitted=%d candidates=%d", note.id, len(chosen), len(coding.ranked))
        return AgentResult[list[CodeAssignment]](
            agent=self.name,
            output=chosen,
            confidence=round(max(0.0, min(1.0, conf)), 4),
            evidence=tuple(sp for c in chosen for sp in c.evidence),
            provenance=Provenance(
                model_id=model_id, model_revision=info.revision if info else None,
                backend=info.backend if info else ("transformers" if self._reranker is not None else None),
                prompt_hash=PROMPT_HASH, tokens_in=int(signals["slm_tokens_in"]), tokens_out=int(signals["slm_calls"]),
                latency_ms=round(signals["seconds"] * 1000, 2),
            ),
            signals=signals,
        )


__all__ = ["FAMILY_HISTORY", "PROMPT_HASH", "SYSTEMS", "Coding", "IcdAgent", "family_history_code"]
