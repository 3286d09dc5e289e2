"""The NER agent: clinical mentions with spans, types, assertions and knowledge-graph concepts.

Signals, combined per mention:

- **the NER specialist** ``ner-slm`` (MiniLM + LoRA token classifier trained by ``medslm train`` on
  NCBI-disease and BC5CDR train, one head per corpus), the main span predictor, its per-token
  distributions mixed with the marginals of the CRF trained on the same corpus (``ner-crf`` for the
  ``bc5cdr`` head: chemicals and diseases, the default; ``ner-crf-ncbi`` for ``ncbi``) with the weight
  tuned on NCBI-disease devel - see :mod:`medslm.agents.ner_slm`; without the SLM, the CRF alone;
- the knowledge graph's lexicon matcher (ICD-10-CM + HPO names) for candidate spans and concepts, and
  small rule lexicons for tests, procedures and anatomy;
- document-level consistency (a string tagged once is tagged everywhere in the note; "long form (LF)"
  abbreviations inherit the long form's type);
- clinical abbreviations read in their sentence (:func:`medslm.knowledge.abbreviations.sense_in_context`:
  "SpO2 94% on RA" is room air and no mention, "c/o CP" chest pain);
- the assertion - whose finding and how certain - from ConText rules combined with the ``assertion-slm``
  specialist (:mod:`medslm.agents.assertion`);
- optionally (``max_slm_calls > 0``) a generative SLM that chooses the type of mentions only a lexicon
  found, by choice scoring (one forward pass per mention; off by default: it never changed a span).

A mention's confidence comes from the tagger's span probability, the lexicon score, the rules, and the
generative SLM's type probability when it was asked.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medslm.models.base import prompt_hash
from medslm.records import AgentResult, Assertion, ConceptRef, Entity, EntityType, Note, Provenance, Span
from medslm.text import sentence_spans

if TYPE_CHECKING:
    from medslm.agents.crf_tagger import CrfTagger
    from medslm.agents.ner_slm import SlmTagger
    from medslm.knowledge import KnowledgeGraph
    from medslm.models.base import LanguageModel

log = logging.getLogger(__name__)

_TYPE_SYSTEM = (
    "You are a clinical NLP assistant. Classify the highlighted mention of a clinical note into one "
    "category: problem (disease, symptom, finding), medication (drug, chemical), test (lab, imaging, "
    "measurement), procedure (surgery, therapy), anatomy (body part)."
)
_TYPE_USER = "Sentence: {sentence}\nMention: \"{mention}\"\nCategory:"
PROMPT_HASH = prompt_hash(_TYPE_SYSTEM, _TYPE_USER)
_TYPE_OPTIONS = tuple(t.value for t in EntityType)

_CRF_TYPES = {"Disease": EntityType.PROBLEM, "Chemical": EntityType.MEDICATION}

_TESTS = (
    "ct", "cta", "mri", "mra", "ecg", "ekg", "eeg", "emg", "x-ray", "xray", "radiograph", "ultrasound",
    "ultrasonography", "echocardiogram", "echocardiography", "pet", "pet-ct", "scan", "biopsy", "troponin",
    "cbc", "bmp", "cmp", "hba1c", "a1c", "creatinine", "urinalysis", "culture", "blood culture",
    "blood cultures", "lipase", "d-dimer", "inr", "glucose", "hemoglobin", "potassium", "sodium", "bnp",
    "lactate", "crp", "esr", "tsh", "psa", "white blood cell count", "platelet count", "chest x-ray",
    "angiography", "colonoscopy", "endoscopy", "mammogram", "spirometry", "cytology", "histology",
    "blood pressure", "heart rate", "oxygen saturation", "temperature", "pulse", "respiratory rate",
    "laboratory", "labs", "serology", "pcr", "computed tomography", "magnetic resonance imaging",
    "gammagraphy", "scintigraphy", "pyelography", "urography", "doppler", "immunohistochemistry",
)
_PROCEDURE_SUFFIXES = ("ectomy", "otomy", "ostomy", "plasty", "pexy", "rrhaphy", "scopy", "centesis", "graphy")
_PROCEDURES = (
    "surgery", "resection", "transplant", "transplantation", "intubation", "dialysis", "hemodialysis",
    "chemotherapy", "radiotherapy", "radiation therapy", "catheterization", "stent", "stenting", "bypass",
    "amputation", "excision", "drainage", "transfusion", "ablation", "cardioversion", "suture", "repair",
    "implantation", "embolization", "debridement", "physiotherapy", "ventilation", "mechanical ventilation",
)
_ANATOMY = (
    "heart", "lung", "lungs", "liver", "kidney", "kidneys", "brain", "abdomen", "chest", "head", "neck",
    "arm", "leg", "foot", "hand", "eye", "ear", "skin", "bladder", "colon", "stomach", "spleen", "pancreas",
    "ureter", "urethra", "uterus", "ovary", "prostate", "thyroid", "spine", "knee", "hip", "shoulder",
    "pelvis", "bone", "artery", "vein", "aorta", "breast", "esophagus", "duodenum", "rectum", "testis",
)
#: HPO modifiers (laterality, onset, severity…) are not mentions on their own
_NOT_MENTIONS = frozenset({
    "right", "left", "bilateral", "unilateral", "acute", "chronic", "severe", "mild", "moderate", "onset",
    "progressive", "episodic", "recurrent", "frequent", "generalized", "localized", "distal", "proximal",
    "pain", "mass", "lesion", "abnormal", "abnormality", "normal", "disease", "disorder", "syndrome", "all",
    "death", "borderline", "weakness", "other", "single", "history", "diagnosis",
})


#: corpus names accepted for ``tagger`` (older code and the evals name the corpus) -> artifact component
_TAGGER_ALIASES = {"bc5cdr": "ner-crf", "ncbi": "ner-crf-ncbi"}


def _rule_lexicon() -> dict[tuple[str, ...], EntityType]:
    from medslm.agents.crf_tagger import _TOKEN_RE

    table: dict[tuple[str, ...], EntityType] = {}
    for words, typ in ((_TESTS, EntityType.TEST), (_PROCEDURES, EntityType.PROCEDURE), (_ANATOMY, EntityType.ANATOMY)):
        for w in words:
            table[tuple(_TOKEN_RE.findall(w.lower()))] = typ
    return table


@dataclass
class _Mention:
    start: int
    end: int
    type: EntityType
    crf_prob: float = 0.0  # the tagger's span probability (fused SLM + CRF, or the CRF alone)
    lex_score: float = 0.0
    rule: bool = False
    propagated: bool = False
    concept_ids: tuple[str, ...] = ()
    slm_prob: float | None = None  # the generative SLM's probability of the type (when asked)
    slm_agrees: bool | None = None
    tagger: str = ""  # "slm+crf", "slm" or "crf" when a tagger found it
    abbreviation: str = ""  # the sense an abbreviation was read as


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (:func:`medslm.text.sentence_spans`)."""
    return sentence_spans(text)


class NerAgent:
    """Clinical mentions of a note: ``NerAgent().run(note, state) -> AgentResult[list[Entity]]``.

    ``slm``: the NER specialist's artifact (``"ner-slm"``) or ``None`` for the CRF alone; ``head``: its
    head (``"bc5cdr"``: chemicals and diseases, the default; ``"ncbi"``: NCBI-disease diseases);
    ``fusion``: mix the SLM with the CRF paired with the head (weight from the artifact, tuned on
    NCBI-disease devel; ``False``: the SLM alone).
    ``model``: a generative model spec (``"embedded"``) or a :class:`LanguageModel` for the optional
    type choice of lexicon-only mentions (``max_slm_calls``, default 0: not used, not loaded).
    ``kg``: a :class:`KnowledgeGraph` (``None``: ``KnowledgeGraph.default()``).
    ``tagger``: the CRF's trained artifact (``"auto"``: the one paired with ``head``; ``"ner-crf"``:
    BC5CDR chemicals and diseases; ``"ner-crf-ncbi"``: NCBI-disease diseases) or ``None`` for no CRF;
    ``artifacts``: a folder of retrained artifacts (``medslm train --out``; default: ``$MEDSLM_ARTIFACTS``,
    else the ones shipped with medslm).
    ``propagate``: tag other occurrences of tagged strings and defined abbreviations (``None``: only
    without the specialist, as chosen on NCBI-disease devel);
    ``assertion_model``: the assertion specialist (``"assertion-slm"``) or ``None`` for ConText alone;
    ``abbreviations``: read clinical abbreviations in their sentence.
    ``lexicon_spans``: add knowledge-graph lexicon matches that the tagger missed (clinical notes);
    ``rule_types``: add tests, procedures and anatomy from rule lexicons;
    ``gazetteer``: give the CRF the knowledge graph's lexicon matches as features.
    """

    name = "ner"

    def __init__(
        self,
        model: str | LanguageModel | None = "embedded",
        kg: KnowledgeGraph | None = None,
        *,
        tagger: str | None = "auto",
        artifacts: str | Path | None = None,
        slm: str | None = "ner-slm",
        head: str = "bc5cdr",
        fusion: bool = True,
        lexicon_spans: bool = True,
        rule_types: bool = True,
        propagate: bool | None = None,
        assertion: bool = True,
        assertion_model: str | None = "assertion-slm",
        abbreviations: bool = True,
        concepts: bool = True,
        max_slm_calls: int = 0,
        gazetteer: bool = True,
        systems: Sequence[str] = ("ICD10CM", "HPO"),
    ) -> None:
        from medslm.agents.ner_slm import PAIRED_CRF

        self.model = model
        self._kg = kg
        if tagger == "auto":
            tagger = PAIRED_CRF.get(head, "ner-crf")
        self.tagger_name = _TAGGER_ALIASES.get(tagger, tagger) if tagger is not None else None
        self.slm_name = slm
        self.head = head
        self.fusion = fusion
        self.assertion_model = assertion_model
        self.abbreviations = abbreviations
        self.artifacts = artifacts
        self.lexicon_spans = lexicon_spans
        self.rule_types = rule_types
        # document-level propagation, chosen on NCBI-disease devel: it helps the CRF alone (strict F1 0.786
        # -> 0.801) and hurts the fused specialist (0.844 -> 0.835)
        self.propagate = (slm is None) if propagate is None else propagate
        self.assertion = assertion
        self.concepts = concepts
        self.max_slm_calls = max_slm_calls
        self.gazetteer = gazetteer
        self.systems = tuple(systems)
        self._lm: LanguageModel | None = None
        self._tagger: CrfTagger | None = None
        self._slm: SlmTagger | None = None
        self._assert: Any = None
        self._rules: dict[tuple[str, ...], EntityType] | None = None
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

    def _crf(self) -> CrfTagger | None:
        if self.tagger_name is None:
            return None
        with self._lock:
            if self._tagger is None:
                from medslm.agents.crf_tagger import CrfTagger, kg_gazetteer

                gaz = kg_gazetteer(self.kg) if self.gazetteer else None
                self._tagger = CrfTagger.from_artifact(self.tagger_name, self.artifacts, gazetteer=gaz).load()
        return self._tagger

    def _slm_tagger(self) -> SlmTagger | None:
        if self.slm_name is None:
            return None
        crf = self._crf() if self.fusion else None
        with self._lock:
            if self._slm is None:
                from medslm.agents.ner_slm import SlmTagger

                self._slm = SlmTagger.from_artifact(self.slm_name, self.artifacts, head=self.head, crf=crf).load()
        return self._slm

    def _assertions(self) -> Any:
        with self._lock:
            if self._assert is None:
                from medslm.agents.assertion import AssertionClassifier

                self._assert = AssertionClassifier(self.assertion_model, artifacts=self.artifacts)
        return self._assert

    def load(self) -> NerAgent:
        """Load the taggers, the knowledge graph's matcher and the assertion models now (else on first use)."""
        self._crf()
        self._slm_tagger()
        if self.lexicon_spans or self.concepts or self.abbreviations:
            self.kg.matcher(self.systems)
        if self.assertion:
            self._assertions().load()
        if self.max_slm_calls > 0:
            _ = self.lm
        return self

    # ------------------------------------------------------------------ signals
    def _tagged(self, text: str, sentences: list[tuple[int, int]]) -> list[_Mention]:
        from medslm.agents.crf_tagger import tokenize

        slm = self._slm_tagger()
        if slm is not None:
            name = "slm+crf" if slm.crf is not None and slm.weight < 1.0 else "slm"
            return [_Mention(sp.start, sp.end, _CRF_TYPES.get(sp.label, EntityType.PROBLEM), crf_prob=sp.prob, tagger=name)
                    for sp in slm.tag(text, sentences)]
        crf = self._crf()
        if crf is None:
            return []
        out = []
        for s0, s1 in sentences:
            spans = [(s0 + a, s0 + b) for a, b in tokenize(text[s0:s1])]
            if not spans:
                continue
            _, tagged = crf.tag([text[a:b] for a, b in spans])
            for t in tagged:
                out.append(_Mention(spans[t.start][0], spans[t.end - 1][1], _CRF_TYPES.get(t.label, EntityType.PROBLEM),
                                    crf_prob=t.prob, tagger="crf"))
        return out

    def _lexicon(self, text: str) -> list[_Mention]:
        out = []
        for m in self.kg.matcher(self.systems).find(text):
            if m.text.lower() in _NOT_MENTIONS or (len(m.text) < 3 and not m.text.isupper()):
                continue
            out.append(_Mention(m.start, m.end, EntityType.PROBLEM, lex_score=m.score, concept_ids=m.concept_ids))
        return out

    def _ruled(self, text: str) -> list[_Mention]:
        from medslm.agents.crf_tagger import tokenize

        if self._rules is None:
            self._rules = _rule_lexicon()
        rules = self._rules
        toks = tokenize(text)
        low = [text[a:b].lower() for a, b in toks]
        out = []
        i = 0
        while i < len(toks):
            hit = None
            for n in (4, 3, 2, 1):
                key = tuple(low[i : i + n])
                if len(key) == n and key in rules:
                    hit = (n, rules[key])
                    break
            if hit is None and len(low[i]) > 6 and low[i].isalpha() and low[i].endswith(_PROCEDURE_SUFFIXES):
                typ = EntityType.TEST if low[i].endswith(("scopy", "graphy")) else EntityType.PROCEDURE
                hit = (1, typ)
            if hit:
                n, typ = hit
                out.append(_Mention(toks[i][0], toks[i + n - 1][1], typ, rule=True))
                i += n
            else:
                i += 1
        return out

    @staticmethod
    def _merge(primary: list[_Mention], extra: list[_Mention]) -> list[_Mention]:
        """Add ``extra`` mentions that overlap none of ``primary``; merge signals of identical spans."""
        by_span = {(m.start, m.end): m for m in primary}
        out = list(primary)
        taken = sorted((m.start, m.end) for m in primary)
        for m in extra:
            same = by_span.get((m.start, m.end))
            if same is not None:
                same.lex_score = max(same.lex_score, m.lex_score)
                same.concept_ids = same.concept_ids or m.concept_ids
                same.rule = same.rule or m.rule
                if m.rule and m.type is EntityType.TEST and same.type is EntityType.MEDICATION:
                    same.type = EntityType.TEST  # a lab analyte the corpora call a chemical ("troponin")
                continue
            if any(a < m.end and m.start < b for a, b in taken):
                continue
            out.append(m)
            taken.append((m.start, m.end))
            by_span[(m.start, m.end)] = m
        return sorted(out, key=lambda m: (m.start, m.end))

    @staticmethod
    def _propagate(text: str, mentions: list[_Mention]) -> list[_Mention]:
        """Tag other occurrences of tagged strings, and "long form (LF)" abbreviations, in the same note."""
        found = [m for m in mentions if m.crf_prob > 0]
        extra: list[_Mention] = []
        # abbreviations defined in the text: "... long form (ABBR)"
        for m in found:
            after = re.match(r"\s*\(\s*([A-Za-z][A-Za-z0-9\-]{0,9})\s*\)", text[m.end :])
            if after:
                abbr = after.group(1)
                if abbr.upper() == abbr or any(c.isupper() for c in abbr):
                    a0 = m.end + after.start(1)
                    extra.append(_Mention(a0, a0 + len(abbr), m.type, crf_prob=m.crf_prob * 0.9, propagated=True,
                                          tagger=m.tagger))
        surfaces: dict[str, _Mention] = {}
        for m in [*found, *extra]:
            s = text[m.start : m.end]
            if len(s) >= 3 and (m.crf_prob >= 0.5):
                surfaces.setdefault(s if s.isupper() else s.lower(), m)
        for s, src in surfaces.items():
            flags = 0 if s.isupper() else re.IGNORECASE
            for hit in re.finditer(r"(?<![\w-])" + re.escape(s) + r"(?![\w-])", text, flags):
                extra.append(_Mention(hit.start(), hit.end(), src.type, crf_prob=src.crf_prob * 0.9, propagated=True,
                                      tagger=src.tagger))
        return NerAgent._merge(mentions, extra)

    def _slm_types(self, text: str, mentions: list[_Mention], sentences: list[tuple[int, int]]) -> tuple[int, int, float]:
        """Ask the SLM for the type of the mentions that need it; returns (calls, tokens_in, seconds)."""
        if self.max_slm_calls <= 0:
            return 0, 0, 0.0
        lm = self.lm
        if lm is None:
            return 0, 0, 0.0
        # the mentions whose type rests on one weak signal first: lexicon-only, then low-CRF-probability
        need = [m for m in mentions if m.crf_prob == 0 and not m.rule] + sorted(
            (m for m in mentions if 0 < m.crf_prob < 0.7 and not m.propagated), key=lambda m: m.crf_prob)
        calls = tokens = 0
        seconds = 0.0
        for m in need[: self.max_slm_calls]:
            s0, s1 = next(((a, b) for a, b in sentences if a <= m.start < b), (max(0, m.start - 150), m.end + 150))
            sentence = text[s0:s1][:400]
            messages = [
                {"role": "system", "content": _TYPE_SYSTEM},
                {"role": "user", "content": _TYPE_USER.format(sentence=sentence, mention=text[m.start:m.end])},
            ]
            scores = lm.score_choices(messages, _TYPE_OPTIONS)
            calls += 1
            tokens += scores.tokens_in
            seconds += scores.latency_s
            probs = scores.as_dict()
            m.slm_prob = probs.get(m.type.value, 0.0)
            m.slm_agrees = scores.best == m.type.value
            if m.crf_prob == 0 and m.lex_score > 0 and not m.slm_agrees and scores.best_prob > 0.6:
                # a lexicon-only mention: the knowledge graph says problem; a confident SLM may retype it
                m.type = EntityType(scores.best)
                m.slm_prob = scores.best_prob
        return calls, tokens, seconds

    def _read_abbreviations(self, text: str, mentions: list[_Mention]) -> list[_Mention]:
        """Abbreviations read in their sentence: a sense that is no clinical entity ("on RA": room air) drops
        the mention; otherwise the sense sets its type and, for a condition, its concepts."""
        from medslm.knowledge.abbreviations import ABBREVIATIONS, SENSES, sense_in_context

        out = []
        for m in mentions:
            surface = text[m.start : m.end]
            if not (surface in SENSES or surface in ABBREVIATIONS) or not any(c.isupper() for c in surface):
                out.append(m)
                continue
            sense = sense_in_context(text, m.start, m.end)
            if sense is None:
                out.append(m)
                continue
            if sense.type == "other":
                log.debug("ner: abbreviation read as a non-entity sense (%s)", sense.method)
                continue
            m.abbreviation = sense.expansion
            m.type = EntityType(sense.type)
            m.lex_score = max(m.lex_score, 0.8) * (0.5 + 0.5 * sense.confidence)
            if sense.condition:
                ids = tuple(c.concept.id for c in self.kg.lookup(sense.expansion, systems=self.systems, k=2, fuzzy=False))
                m.concept_ids = ids or m.concept_ids
            else:
                m.concept_ids = ()
            out.append(m)
        return out

    @staticmethod
    def _confidence(m: _Mention) -> float:
        """Noisy-OR of the span signals, scaled by the SLM's type probability when it was asked."""
        span_signals = [m.crf_prob, 0.7 * m.lex_score, 0.6 if m.rule else 0.0]
        miss = 1.0
        for p in span_signals:
            miss *= 1.0 - max(0.0, min(1.0, p))
        conf = 1.0 - miss
        if m.propagated:
            conf *= 0.95
        if m.slm_prob is not None:
            conf *= 0.5 + 0.5 * m.slm_prob
        return round(max(0.0, min(1.0, conf)), 4)

    # ------------------------------------------------------------------ run
    def extract(self, text: str) -> tuple[list[Entity], dict[str, float]]:
        """Entities of a text and the raw signals (no provenance)."""
        t0 = time.perf_counter()
        sentences = split_sentences(text)
        mentions = self._tagged(text, sentences)
        if self.propagate:
            mentions = self._propagate(text, mentions)
        lex: list[_Mention] = []
        if self.lexicon_spans or self.concepts:
            lex = self._lexicon(text)
        # lexicon concepts for tagged spans; new spans only when asked for
        by_span = {(m.start, m.end): m for m in lex}
        for m in mentions:
            hit = by_span.get((m.start, m.end))
            if hit is not None:
                m.lex_score, m.concept_ids = hit.lex_score, hit.concept_ids
        if self.lexicon_spans:
            mentions = self._merge(mentions, lex)
        if self.rule_types:
            mentions = self._merge(mentions, self._ruled(text))
        if self.abbreviations:
            mentions = self._read_abbreviations(text, mentions)
        calls, tokens_in, slm_s = self._slm_types(text, mentions, sentences)
        assertions = [Assertion.PRESENT] * len(mentions)
        if self.assertion and mentions:
            assertions = self._assertions().classify(text, [(m.start, m.end) for m in mentions])
        entities = []
        for m, a in zip(mentions, assertions, strict=True):
            entities.append(Entity(
                start=m.start, end=m.end, text=text[m.start : m.end], type=m.type, assertion=a,
                concepts=self._concepts(text[m.start : m.end], m) if self.concepts else (),
                confidence=self._confidence(m), source=self._source(m),
            ))
        confs = [e.confidence for e in entities]
        signals = {
            "n_entities": float(len(entities)),
            "mean_confidence": sum(confs) / len(confs) if confs else 1.0,
            "min_confidence": min(confs) if confs else 1.0,
            "n_crf": float(sum(m.crf_prob > 0 for m in mentions)),
            "n_lexicon": float(sum(m.lex_score > 0 for m in mentions)),
            "n_agree": float(sum(m.crf_prob > 0 and m.lex_score > 0 for m in mentions)),
            "slm_calls": float(calls),
            "slm_agreement": (sum(bool(m.slm_agrees) for m in mentions if m.slm_agrees is not None) / calls) if calls else 1.0,
            "slm_tokens_in": float(tokens_in),
            "slm_seconds": slm_s,
            "seconds": time.perf_counter() - t0,
        }
        return entities, signals

    def _concepts(self, surface: str, m: _Mention) -> tuple[ConceptRef, ...]:
        kg = self.kg
        refs: list[ConceptRef] = []
        if m.abbreviation and not m.concept_ids:
            return ()
        if m.concept_ids:
            for cid in m.concept_ids[:3]:
                c = kg.get(cid)
                if c is not None:
                    refs.append(c.ref(m.lex_score or 1.0))
            return tuple(refs)
        if m.type is not EntityType.PROBLEM:
            return ()
        for cand in kg.lookup(surface, systems=self.systems, k=2, fuzzy=len(surface) >= 5):
            if cand.score >= 0.75:
                refs.append(cand.concept.ref(cand.score))
        return tuple(refs)

    @staticmethod
    def _source(m: _Mention) -> str:
        parts = [name for name, on in ((m.tagger or "crf", m.crf_prob > 0), ("lexicon", m.lex_score > 0),
                                        ("rules", m.rule), ("abbreviation", bool(m.abbreviation)),
                                        ("lm", m.slm_prob is not None)) if on]
        return "+".join(dict.fromkeys("+".join(parts).split("+"))) or "crf"

    def run(self, note: Note, state: Mapping[str, Any] | None = None) -> AgentResult[list[Entity]]:
        text = (state or {}).get("text") or note.text
        entities, signals = self.extract(text)
        lm = self._lm
        info = lm.info if lm is not None else None
        slm = self._slm
        confs = [e.confidence for e in entities]
        # the note's confidence: mean entity confidence, pulled down by the weakest mention
        conf = (0.5 * signals["mean_confidence"] + 0.5 * signals["min_confidence"]) if confs else 0.9
        log.debug("ner note=%s entities=%d slm_calls=%d", note.id, len(entities), int(signals["slm_calls"]))
        return AgentResult[list[Entity]](
            agent=self.name,
            output=entities,
            confidence=round(max(0.0, min(1.0, conf)), 4),
            evidence=tuple(Span(start=e.start, end=e.end, label=e.type.value) for e in entities),
            provenance=Provenance(
                model_id=info.id if info else (f"{self.slm_name}:{self.head}" if slm is not None else self.tagger_name),
                model_revision=info.revision if info else None,
                backend=info.backend if info else ("encoder-lora" if slm is not None else "crfsuite"),
                prompt_hash=PROMPT_HASH,
                tokens_in=int(signals["slm_tokens_in"]),
                tokens_out=int(signals["slm_calls"]),
                latency_ms=round(signals["seconds"] * 1000, 2),
            ),
            signals=signals,
        )


__all__ = ["PROMPT_HASH", "NerAgent", "split_sentences"]
