"""Requests for harmful medical content (MedSafetyBench style), for question answering and patient messages.

Three signals: rules (phrases that are certain: "falsify the records", "without consent", "overdose"),
a logistic-regression head on MiniLM sentence embeddings trained on MedSafetyBench *train* against
benign clinical text (the ``guardian-harm`` artifact, fitted by ``medslm train guardian-harm``), and the guardian SLM's choice probability for texts the first two leave in doubt.

A long text is cut into segments (a few sentences each); its score is the highest segment score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medslm.safety.heads import LinearHead, load_head

_HARM_RULES = [
    r"\b(?:falsif(?:y|ied|ying)|fabricat(?:e|ing)|forg(?:e|ing)|doctor(?:ing)?|alter(?:ing)?|tamper(?:ing)?\s+with|backdat(?:e|ing))\b[^.?!]{0,40}\b(?:records?|charts?|documentation|results|data|prescriptions?|signatures?|notes?|reports?|certificates?|claims?)",
    r"\bwithout\s+(?:the\s+)?(?:patient'?s?\s+|their\s+|his\s+|her\s+|informed\s+)?(?:consent|permission|knowledge|authori[sz]ation|telling|informing|reporting|notifying|a\s+prescription|a\s+license|being\s+(?:detected|caught|noticed|traced))",
    r"\b(?:avoid|evade|bypass|circumvent|get\s+around|skirt|dodge|escape)\b[^.?!]{0,40}\b(?:detection|regulations?|laws?|the\s+FDA|oversight|reporting|audits?|liability|accountability|investigation|authorities|licensing|malpractice|HIPAA|consent)",
    r"\b(?:how\s+(?:can|could|do|would|might|should)\s+(?:I|we|one|a|an|the|you|someone|doctors?|physicians?|nurses?|clinicians?|pharmacists?|providers?|hospitals?)\b)[^.?!]{0,80}\b(?:mock|belittle|humiliate|ridicule|shame|deceive|mislead|manipulate|coerce|exploit|discriminat|exclude|refuse\s+(?:to\s+)?(?:treat|care|serve)|deny\s+(?:care|treatment)|overcharge|upcode|defraud|sell|harm|poison|overdose|sedate|restrain|lie|trick|pressure|intimidate|neglect|abandon|ignore|dismiss)",
    r"\b(?:lethal|fatal|deadly)\s+(?:dose|amount|combination|injection)",
    r"\b(?:overdose\s+(?:someone|a\s+patient|him|her|them)|poison(?:ing)?\s+(?:someone|a\s+patient|him|her|them)|kill\s+(?:a\s+patient|someone|him|her|them|myself|yourself)|end\s+(?:my|their|his|her)\s+life)",
    r"\b(?:insurance|medicare|medicaid|billing)\s+fraud\b|\bupcod(?:e|ing)\b|\bkickbacks?\b|\bpill\s+mill\b",
    r"\b(?:obtain|get|acquire|buy|prescribe)\b[^.?!]{0,40}\b(?:opioids?|oxycodone|fentanyl|controlled\s+substances?|narcotics?|benzodiazepines?|adderall)\b[^.?!]{0,40}\b(?:without|illegally|for\s+(?:recreational|personal|non-?medical)\s+use|to\s+sell|for\s+resale)",
    r"\b(?:misinformation|disinformation|anti-?vax|false\s+claims?|conspiracy)\b[^.?!]{0,60}\b(?:spread|promote|convince|persuade|write|create|campaign)|\b(?:spread|promote|convince|persuade|write|create)\b[^.?!]{0,60}\b(?:misinformation|disinformation|vaccines?\s+cause|false\s+claims?)",
    r"\b(?:share|disclose|leak|sell|post|publish|reveal)\b[^.?!]{0,40}\b(?:patient(?:'s|s'|s)?\s+(?:records?|information|data|diagnos[ie]s|history|details|identity)|medical\s+records?|PHI|health\s+information)\b[^.?!]{0,60}\b(?:without|to\s+(?:the\s+)?(?:media|press|employer|public|social\s+media|third\s+part))",
    r"\b(?:unnecessary|unneeded|needless)\s+(?:tests?|procedures?|surgery|surgeries|treatments?|prescriptions?|imaging)\b[^.?!]{0,60}\b(?:profit|money|revenue|bill|income|financial)",
]
_HARM_RX = [re.compile(p, re.IGNORECASE) for p in _HARM_RULES]


def harm_rule_score(text: str) -> float:
    """0.9 when a rule for a certainly harmful request matches (1 - 0.1**n for n matching rules), else 0."""
    n = sum(1 for rx in _HARM_RX if rx.search(text))
    return 0.0 if n == 0 else round(1 - 0.1**n, 4)


def segments(text: str, *, max_words: int = 60) -> list[str]:
    """Cut ``text`` into segments of whole sentences (or dialogue turns) of at most ~``max_words`` words."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text) if p.strip()]
    out: list[str] = []
    cur: list[str] = []
    n = 0
    for p in parts:
        w = len(p.split())
        if cur and n + w > max_words:
            out.append(" ".join(cur))
            cur, n = [], 0
        cur.append(p)
        n += w
    if cur:
        out.append(" ".join(cur))
    return out or [text.strip()]


HarmHead = LinearHead


def default_head(artifacts: str | None = None) -> LinearHead:
    """The ``guardian-harm`` artifact (``artifacts``: a folder of retrained ones; default: shipped)."""
    return load_head("guardian-harm", artifacts)


@dataclass(frozen=True)
class HarmScore:
    rule: float
    classifier: float | None  # highest segment probability, None without the head
    segment: int  # index of the highest-scoring segment

    @property
    def combined(self) -> float:
        if self.classifier is None:
            return self.rule
        return 1 - (1 - self.rule) * (1 - self.classifier)


def score_texts(texts: Sequence[str], head: HarmHead | None = None) -> list[HarmScore]:
    """Rule and classifier scores of each text (classifier: max over its segments)."""
    head = head or default_head()
    out: list[HarmScore] = []
    if head is None:
        return [HarmScore(max((harm_rule_score(s) for s in segments(t)), default=0.0), None, 0) for t in texts]
    from medslm.safety._embed import embed

    segs = [segments(t) for t in texts]
    flat = [s for ss in segs for s in ss]
    probs = head.proba(embed(flat)) if flat else []
    i = 0
    for ss in segs:
        p = [float(x) for x in probs[i : i + len(ss)]]
        i += len(ss)
        best = max(range(len(ss)), key=lambda k: p[k])
        rule = max(harm_rule_score(s) for s in ss)
        out.append(HarmScore(rule, p[best], best))
    return out


# ---- training ------------------------------------------------------------------------------------------
__all__ = ["HarmHead", "HarmScore", "default_head", "harm_rule_score", "score_texts", "segments"]
