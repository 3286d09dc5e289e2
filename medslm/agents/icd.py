"""The ICD-10-CM coding agent: ranked, evidence-backed codes for a note, all of them knowledge-graph nodes.

Candidates come only from the knowledge graph: lexicon matches of ICD-10-CM names in the text, the ICD
concepts of the NER agent's entities (``state["entities"]``), and codes a train-split ranker suggests
(train codes that are valid ICD-10-CM 2026). A stacker fitted on CodiEsp train scores each candidate
(:mod:`medslm.agents.icd_model`); the SLM chooses among the codes an ambiguous mention names by choice
scoring over their descriptions, so **a code outside ICD-10-CM cannot be produced**.

Rules after scoring: codes whose every mention is negated, hypothetical or a family member's are not
emitted (nor ranker-only codes of a category whose every mention is); a family member's disease becomes
the Z80-Z84 code of its ICD-10-CM chapter/block (:data:`FAMILY_HISTORY`), a personal history a Z85-Z87
code when the graph names one; an Excludes1 pair keeps only the better-supported code; a non-billable
code gives way to a supported billable descendant.

The ranker and stacker are the ``icd-coder`` artifact, fitted on CodiEsp train by ``medslm train
icd-coder`` and shipped with medslm; ``IcdAgent(coder=None)`` ranks by the lexicon alone.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medslm.agents.icd_model import CodingModel, Evidence
from medslm.models.base import prompt_hash
from medslm.records import AgentResult, Assertion, CodeAssignment, Entity, EntityType, Note, Provenance, Span
from medslm.routers.confidence import CHOICE_PROB, KG_VERIFIED, kg_verification
from medslm.routers.confidence import combine as fuse

if TYPE_CHECKING:
    from medslm.knowledge import KnowledgeGraph
    from medslm.models.base import LanguageModel

log = logging.getLogger(__name__)

_SYSTEM = (
    "You are a clinical coder. Pick the ICD-10-CM description that best matches the mention as it is used "
    "in the sentence."
)
_USER = "Sentence: {sentence}\nMention: \"{mention}\"\nBest ICD-10-CM description:"
PROMPT_HASH = prompt_hash(_SYSTEM, _USER)

_NOT_PRESENT = (Assertion.NEGATED, Assertion.FAMILY, Assertion.HYPOTHETICAL)
_FAMILY_Z = ("Z80", "Z81", "Z82", "Z83", "Z84")
_HISTORY_Z = ("Z85", "Z86", "Z87")
_MAX_SLM_OPTIONS = 6
_CANCER_WORDS = frozenset({"cancer", "carcinoma", "tumor", "tumour", "malignancy", "neoplasm", "adenocarcinoma"})
_LABEL_STOP = frozenset({"unspecified", "other", "without", "with", "site", "type", "part", "specified", "organism",
                         "complications", "elsewhere", "classified", "behavior", "uncomplicated", "initial",
                         "encounter", "sequela", "subsequent"})

#: a family member's disease (ICD-10-CM code range, inclusive, on the first three characters) -> the
#: family-history code; the first range that holds the disease's code wins
FAMILY_HISTORY: tuple[tuple[str, str, str], ...] = (
    ("C15", "C26", "Z80.0"), ("C33", "C34", "Z80.1"), ("C30", "C39", "Z80.2"), ("C50", "C50", "Z80.3"),
    ("C56", "C56", "Z80.41"), ("C61", "C61", "Z80.42"), ("C62", "C62", "Z80.43"), ("C51", "C63", "Z80.49"),
    ("C64", "C64", "Z80.51"), ("C67", "C67", "Z80.52"), ("C65", "C68", "Z80.59"), ("C91", "C95", "Z80.6"),
    ("C81", "C96", "Z80.7"), ("C80", "C80", "Z80.9"), ("C00", "C79", "Z80.8"),
    ("E10", "E13", "Z83.3"), ("E00", "E89", "Z83.49"), ("F10", "F10", "Z81.1"), ("F11", "F19", "Z81.3"),
    ("F70", "F79", "Z81.0"), ("F01", "F99", "Z81.8"), ("G00", "G99", "Z82.0"), ("I60", "I69", "Z82.3"),
    ("I00", "I99", "Z82.49"), ("J40", "J47", "Z82.5"), ("M05", "M19", "Z82.61"), ("M00", "M99", "Z82.69"),
    ("N00", "N29", "Z84.1"), ("K00", "K95", "Z83.79"), ("Q00", "Q99", "Z82.79"), ("D50", "D89", "Z83.2"),
    ("L00", "L99", "Z84.0"), ("A00", "B99", "Z83.1"),
)


def family_history_code(code: str) -> str | None:
    """The Z80-Z84 code for a family member's disease coded ``code`` (``"C18.9"`` -> ``"Z80.0"``)."""
    head = code[:3].upper()
    return next((z for lo, hi, z in FAMILY_HISTORY if lo <= head <= hi), None)


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


class IcdAgent:
    """ICD-10-CM codes of a note: ``IcdAgent().run(note, state) -> AgentResult[list[CodeAssignment]]``.

    ``model``: spec or :class:`LanguageModel` (``None``: no SLM); ``kg``: graph (``None``: default);
    ``threshold``: minimum confidence of an emitted code (``None``: the one fitted on train, best
    out-of-fold micro-F1); ``coder``: the trained ranker/stacker artifact (``None``: lexicon only);
    ``artifacts``: a folder of retrained artifacts (default ``$MEDSLM_ARTIFACTS``, else the shipped ones); ``max_slm_calls``: ambiguous mentions the SLM disambiguates per note;
    ``require_evidence``: emit only codes with an evidence span in the note (a lexicon mention, or a
    sentence holding two thirds of the words of the code's description); ranker-only codes still rank.
    """

    name = "icd"

    def __init__(
        self,
        model: str | LanguageModel | None = "embedded",
        kg: KnowledgeGraph | None = None,
        *,
        threshold: float | None = None,
        coder: str | None = "icd-coder",
        artifacts: str | Path | None = None,
        max_slm_calls: int = 3,
        max_codes: int = 25,
        require_evidence: bool = True,
    ) -> None:
        self.model = model
        self._kg = kg
        self._threshold = threshold
        self.coder_name = coder
        self.artifacts = artifacts
        self.max_slm_calls = max_slm_calls
        self.max_codes = max_codes
        self.require_evidence = require_evidence
        self._lm: LanguageModel | None = None
        self._coder: CodingModel | None = None
        self._coder_loaded = False
        self._assert: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lazy parts
    @property
    def kg(self) -> KnowledgeGraph:
        if self._kg is None:
            from medslm.knowledge import KnowledgeGraph

            self._kg = KnowledgeGraph.default()
        return self._kg

    @property
    def lm(self) -> LanguageModel | None:
        if self.model is None:
            return None
        if self._lm is None:
            from medslm.models.catalog import load_model

            self._lm = load_model(self.model)
        return self._lm

    @property
    def threshold(self) -> float:
        if self._threshold is not None:
            return self._threshold
        coder = self.coder
        return coder.threshold if coder is not None else 0.5

    @property
    def coder(self) -> CodingModel | None:
        """The train-split ranker and stacker (the ``icd-coder`` artifact); None when ``coder=None``."""
        with self._lock:
            if not self._coder_loaded:
                if self.coder_name is not None:
                    from medslm.artifacts import artifact_dir

                    self._coder = CodingModel.load(artifact_dir(self.coder_name, self.artifacts))
                self._coder_loaded = True
        return self._coder

    def load(self) -> IcdAgent:
        self.kg.matcher(("ICD10CM",))
        _ = self.coder
        _ = self.lm
        return self

    def _billable(self, code: str) -> bool:
        c = self.kg.get(code, "ICD10CM")
        return bool(c and c.billable)

    # ------------------------------------------------------------------ evidence
    def evidence(self, text: str, entities: Sequence[Entity] | None = None) -> dict[str, Evidence]:
        """Lexicon (and entity) evidence per candidate code, with the assertion of each mention."""
        return self._evidence(text, entities)[0]

    def _evidence(self, text: str, entities: Sequence[Entity] | None
                  ) -> tuple[dict[str, Evidence], list[_Mention]]:
        kg = self.kg
        matches = kg.matcher(("ICD10CM",)).find(text)
        spans = [(m.start, m.end) for m in matches]
        assertions = self._assertions(text, spans, entities)
        out: dict[str, Evidence] = {}
        history: list[_Mention] = []
        for m, a in zip(matches, assertions, strict=True):
            ids = [cid for cid in m.concept_ids if cid.startswith("ICD10CM:")][:3]
            for cid in ids:
                code = cid.partition(":")[2]
                ev = out.setdefault(code, Evidence())
                ev.spans.append((m.start, m.end))
                ev.lex_score = max(ev.lex_score, m.score)
                ev.count += 1
                ev.ambiguity = max(ev.ambiguity, len(ids))
                ev.negated += int(a in _NOT_PRESENT)
            if a in (Assertion.FAMILY, Assertion.HISTORICAL) and ids:
                history.append(_Mention(m.start, m.end, a, tuple(c.partition(":")[2] for c in ids), m.score))
        # NER entities lend their assertions to the lexicon matches they overlap (``_assertions``) and
        # their spans to history mentions; their concepts come from the same lexicon, and the stacker is
        # fitted on lexicon evidence alone, so they add no candidates (``entity_hit`` stays 0)
        for e in entities or ():
            if e.type is not EntityType.PROBLEM:
                continue
            codes = [ref.id.partition(":")[2] for ref in e.concepts if ref.id.startswith("ICD10CM:")]
            if e.assertion in (Assertion.FAMILY, Assertion.HISTORICAL):
                if not codes:
                    codes = [c.concept.code for c in kg.lookup(e.text, systems=("ICD10CM",), k=2, fuzzy=True)
                             if c.score >= 0.75]
                if codes:  # the entity's span (e.g. "breast cancer") over a shorter lexicon match ("cancer")
                    history = [h for h in history if not (h.start < e.end and e.start < h.end)]
                    history.append(_Mention(e.start, e.end, e.assertion, tuple(codes), e.confidence))
        return out, [self._widen(text, h) for h in history]

    def _widen(self, text: str, h: _Mention) -> _Mention:
        """A family mention with the one or two words before it, where the graph knows the longer name
        ("breast" + "cancer" -> C50.919 rather than the lexicon's C80.1 for "cancer")."""
        if h.assertion is not Assertion.FAMILY:
            return h
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
                    if cand.score >= 0.9 and family_history_code(cand.concept.code):
                        return _Mention(start, h.end, h.assertion, (cand.concept.code, *h.codes), h.confidence)
        return h

    def _assertions(self, text: str, spans: list[tuple[int, int]], entities: Sequence[Entity] | None) -> list[Assertion]:
        """The NER entity's assertion where one overlaps the span; ConText rules for the others."""
        out: list[Assertion | None] = []
        for s, e in spans:
            hit = next((x for x in entities or () if x.start < e and s < x.end), None)
            out.append(hit.assertion if hit is not None else None)
        todo = [i for i, a in enumerate(out) if a is None]
        if todo:
            if self._assert is None:
                from medslm.agents.assertion import AssertionClassifier

                self._assert = AssertionClassifier()
            for i, a in zip(todo, self._assert.classify(text, [spans[i] for i in todo]), strict=True):
                out[i] = a
        return [a if a is not None else Assertion.PRESENT for a in out]

    # ------------------------------------------------------------------ ranking
    def rank(self, text: str, entities: Sequence[Entity] | None = None) -> tuple[list[CodeAssignment], dict[str, float]]:
        """Every candidate code, best first, with its confidence and evidence; and the raw signals."""
        items, signals, _, _ = self._rank(text, entities)
        return items, signals

    def _rank(self, text: str, entities: Sequence[Entity] | None
              ) -> tuple[list[CodeAssignment], dict[str, float], dict[str, Evidence], list[_Mention]]:
        t0 = time.perf_counter()
        kg = self.kg
        evidence, history = self._evidence(text, entities)
        coder = self.coder
        if coder is not None:
            codes, rows = coder.candidate_features(coder.ridge.scores(text), evidence, self._billable)  # type: ignore[union-attr]
            probs = coder.predict(rows)
        else:  # coder=None: the lexicon alone
            codes = list(evidence)
            probs = [0.6 * evidence[c].lex_score * (1 - evidence[c].negated / max(1, evidence[c].count)) for c in codes]
        scored = {c: p for c, p in zip(codes, probs, strict=True) if kg.get(c, "ICD10CM") is not None}
        slm, calls, tokens, agreement = self._disambiguate(text, evidence, scored)
        items: list[CodeAssignment] = []
        for code, p in scored.items():
            concept = kg.get(code, "ICD10CM")
            assert concept is not None
            ev = evidence.get(code)
            conf = p
            if code in slm:
                conf = p * (0.9 + 0.1 * slm[code])
            spans = tuple(Span(start=s, end=e, label=code) for s, e in (ev.spans if ev else [])[:5])
            if not spans:
                spans = self._label_evidence(text, concept.label, code)
            items.append(CodeAssignment(code=concept.code, description=concept.label, billable=bool(concept.billable),
                                        evidence=spans, confidence=round(max(0.0, min(1.0, conf)), 4),
                                        score=round(p + 0.001 * slm.get(code, 0.0), 6)))
        items.sort(key=lambda c: (-c.score, c.code))
        signals = {
            "candidates": float(len(items)),
            "lexicon_codes": float(len(evidence)),
            "slm_calls": float(calls),
            "slm_tokens_in": float(tokens),
            "slm_agreement": agreement,
            "seconds": time.perf_counter() - t0,
        }
        return items, signals, evidence, history

    def _disambiguate(self, text: str, evidence: dict[str, Evidence], scored: dict[str, float]
                      ) -> tuple[dict[str, float], int, int, float]:
        """For mentions naming several codes, the SLM's probability of each code's description.

        Returns the probabilities, the number of SLM calls, prompt tokens and the share of calls whose
        choice agreed with the stacker's best code for that mention.
        """
        lm = self.lm
        if lm is None or self.max_slm_calls <= 0:
            return {}, 0, 0, 1.0
        by_span: dict[tuple[int, int], list[str]] = {}
        for code, ev in evidence.items():
            for sp in ev.spans:
                by_span.setdefault(sp, []).append(code)
        ambiguous = [(sp, cs) for sp, cs in by_span.items() if len(cs) > 1 and any(c in scored for c in cs)]
        # the mentions whose best code matters most: highest stacker probability first
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
    def _label_evidence(text: str, label: str, code: str) -> tuple[Span, ...]:
        """For a ranker-only code: the sentence sharing most content words with the code's description,
        provided it holds two thirds of them (word stems: "infection" meets "infectious"); else none."""
        def stems(s: str) -> set[str]:
            return {w[:5] for w in re.findall(r"[a-z]{4,}", s.lower()) if w not in _LABEL_STOP}

        words = stems(label)
        if not words:
            return ()
        best, best_n = None, 0
        for m in re.finditer(r"[^.\n]+", text):
            n = len(words & stems(m.group()))
            if n > best_n:
                best, best_n = (m.start(), m.end()), n
        if best is None or 3 * best_n < 2 * len(words):  # two thirds of the description's words
            return ()
        return (Span(start=best[0], end=best[1], label=code),)

    # ------------------------------------------------------------------ rules and run
    def _history_codes(self, mentions: Sequence[_Mention], present: set[str]) -> list[CodeAssignment]:
        """Z80-Z84 codes for a family member's diseases, Z85-Z87 for the patient's past ones."""
        kg = self.kg
        out: dict[str, CodeAssignment] = {}
        for h in mentions:
            z: str | None = None
            conf = h.confidence
            if h.assertion is Assertion.FAMILY:
                z = next((fz for c in h.codes if (fz := family_history_code(c))), None)
                conf *= 0.9  # the chapter-level table is coarser than the mention
            else:  # personal history: only where the graph names one ("personal history of ...")
                disease = kg.get(h.codes[0], "ICD10CM")
                if disease is None:
                    continue
                for cand in kg.lookup("personal history of " + disease.label, systems=("ICD10CM",), k=3, fuzzy=True):
                    if cand.concept.code.startswith(_HISTORY_Z) and cand.score >= 0.85:
                        z, conf = cand.concept.code, conf * cand.score
                        break
            concept = kg.get(z, "ICD10CM") if z else None
            if concept is None or concept.code in present:
                continue
            conf = round(max(0.0, min(1.0, conf)), 4)
            prev = out.get(concept.code)
            if prev is None or prev.confidence < conf:
                out[concept.code] = CodeAssignment(
                    code=concept.code, description=concept.label, billable=bool(concept.billable),
                    evidence=(Span(start=h.start, end=h.end, label=concept.code),), confidence=conf, score=conf)
        return list(out.values())

    def select(self, ranked: Sequence[CodeAssignment], evidence_negated: Mapping[str, bool],
               threshold: float, lexical: set[str] | None = None) -> list[CodeAssignment]:
        """Apply the threshold, negation, Excludes1 and specificity rules to a ranking."""
        kg = self.kg
        chosen: list[CodeAssignment] = []
        pool = {c.code: c for c in ranked}
        # in an Excludes1 conflict (and for the cap), a code the note names beats a ranker-only one
        order = sorted(ranked, key=lambda c: (c.code not in (lexical or ()), -c.score))
        for item in order:
            if item.confidence < threshold or len(chosen) >= self.max_codes:
                continue
            if evidence_negated.get(item.code, False) or (self.require_evidence and not item.evidence):
                continue
            if not item.billable:
                kids = [pool[k.code] for k in kg.children(item.code) if k.code in pool]
                kid = max(kids, key=lambda k: k.score, default=None)
                if kid is not None and kid.billable and kid.score >= 0.5 * item.score:
                    item = kid
            if any(item.code == c.code or kg.excluded_together(item.code, c.code) for c in chosen):
                continue
            chosen.append(item)
        return chosen

    @staticmethod
    def _negated(evidence: Mapping[str, Evidence], ranked: Sequence[CodeAssignment]) -> dict[str, bool]:
        """Codes not to emit as present: every mention negated/family/hypothetical; for a code with no
        mention of its own (a ranker suggestion), every mention of its three-character category."""
        by_cat: dict[str, list[Evidence]] = {}
        for code, ev in evidence.items():
            by_cat.setdefault(code[:3], []).append(ev)
        out: dict[str, bool] = {}
        for item in ranked:
            ev = evidence.get(item.code)
            if ev is not None and ev.count:
                out[item.code] = ev.negated == ev.count
            else:
                evs = [e for e in by_cat.get(item.code[:3], ()) if e.count]
                out[item.code] = bool(evs) and all(e.negated == e.count for e in evs)
        return out

    def code(self, text: str, entities: Sequence[Entity] | None = None) -> Coding:
        """The codes of a text (and its NER entities, when there are), the whole ranking and signals."""
        t0 = time.perf_counter()
        ranked, signals, evidence, history = self._rank(text, entities)
        chosen = self.select(ranked, self._negated(evidence, ranked), self.threshold, set(evidence))
        chosen.extend(self._history_codes(history, {c.code for c in chosen}))
        confs = [c.confidence for c in chosen]
        chosen_codes = {c.code for c in chosen}
        top_left = max((c.confidence for c in ranked if c.code not in chosen_codes), default=0.0)
        signals.update({
            "emitted": float(len(chosen)),
            "history_codes": float(sum(c.code.startswith(("Z8",)) for c in chosen)),
            "mean_code_confidence": sum(confs) / len(confs) if confs else 0.0,
            "min_code_confidence": min(confs, default=0.0),
            "best_rejected_confidence": top_left,
            "threshold": self.threshold,
            "seconds": time.perf_counter() - t0,
        })
        return Coding(chosen=chosen, ranked=ranked, signals=signals)

    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[list[CodeAssignment]]:
        state = state or {}
        text = state.get("text") or note.text
        ents_result = state.get("entities")
        entities: list[Entity] | None = list(ents_result.output) if ents_result is not None else None
        coding = self.code(text, entities)
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
        log.debug("icd note=%s emitted=%d candidates=%d", note.id, len(chosen), len(coding.ranked))
        return AgentResult[list[CodeAssignment]](
            agent=self.name,
            output=chosen,
            confidence=round(max(0.0, min(1.0, conf)), 4),
            evidence=tuple(sp for c in chosen for sp in c.evidence),
            provenance=Provenance(
                model_id=info.id if info else None, model_revision=info.revision if info else None,
                backend=info.backend if info else None, prompt_hash=PROMPT_HASH,
                tokens_in=int(signals["slm_tokens_in"]), tokens_out=int(signals["slm_calls"]),
                latency_ms=round(signals["seconds"] * 1000, 2),
            ),
            signals=signals,
        )


__all__ = ["FAMILY_HISTORY", "PROMPT_HASH", "Coding", "IcdAgent", "family_history_code"]
