"""How the summarizer asks a language model for one section: the prompt, the output grammar and the
normalized text of a section, shared by the fine-tuning recipe (``medslm train summarize-lora``) and the
agent, so that the adapter is trained on exactly the prompts and outputs it sees at run time.

A section is written in **one constrained pass**: the prompt holds the whole source (a note or a
doctor-patient conversation, identification lines removed) followed by the section's title; the output
is decoded under :data:`SECTION_REGEX`: zero or more sentences on one line, separated by one space, each
starting with a capital, a digit or an opening bracket and ending with a full stop; at most
:data:`MAX_SENTENCES` of them. Zero sentences (the model ends at once) means "nothing for this section".
Sections of one note share everything up to the title, so a backend that shares prompt prefixes
(:meth:`medslm.models.transformers_backend.TransformersModel.generate_many`) encodes the note once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from medslm.text import written_sentences

__all__ = [
    "MAX_SENTENCES",
    "MAX_TOKENS",
    "PROMPT_VERSION",
    "SECTION_REGEX",
    "SYSTEM_PROMPT",
    "normalize_section",
    "section_messages",
    "split_sentences",
]

#: Bump when the prompt or the grammar changes: an adapter records the version it was trained on.
PROMPT_VERSION = "section-v1"

SYSTEM_PROMPT = ("You write one section of a clinical note from a source: a doctor-patient conversation or a "
                 "clinical note. Use only facts stated in the source; keep negations (\"denies chest pain\"). "
                 "Write complete sentences that end with a full stop. Write nothing if the source has nothing "
                 "for the section.")
USER_TEMPLATE = "Source ({kind}):\n{source}\n\nSection: {title}"

#: One sentence: opens with a capital, a digit, a quote or a bracket; inside, a full stop may go on when
#: a non-space follows (2.5 mg, a.m.) or a space and a lower-case letter or digit (9 a.m. daily) or it
#: closes a title (Dr. Lee); it ends at a full stop. No line breaks, no "?" or "!".
SENTENCE = r"[A-Z0-9\"'(\[](?:[^\n.!?]|\.[^ \n!?]|\. [a-z0-9(]|(?:Mr|Mrs|Ms|Dr)\. )*\."
#: At most this many sentences per section (ACI-Bench's longest reference section has 38).
MAX_SENTENCES = 40
#: The whole output: nothing, or sentences separated by one space.
SECTION_REGEX = rf"(?:{SENTENCE}(?: {SENTENCE}){{0,{MAX_SENTENCES - 1}}})?"

#: Token budget per section (bounded length; 95th percentile of the training targets, rounded up).
MAX_TOKENS: Mapping[str, int] = {
    "chief_complaint": 24, "hpi": 320, "findings": 256, "assessment": 160, "plan": 192,
    "assessment_plan": 448, "review_of_systems": 160, "past_medical_history": 96, "past_surgical_history": 64,
    "medications": 96, "allergies": 32, "family_social_history": 128,
}
DEFAULT_MAX_TOKENS = 160

_BULLET = re.compile(r"^\s*(?:[•·\-\*–]|\d+[.)](?=\s))\s*")
_SECTION_FULL = re.compile(SECTION_REGEX)


def section_messages(source: str, title: str, *, dialogue: bool) -> list[dict[str, str]]:
    """The chat prompt that asks for section ``title`` of ``source`` (the same at training and run time)."""
    kind = "conversation" if dialogue else "note"
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_TEMPLATE.format(kind=kind, source=source.strip(), title=title)}]


def normalize_section(text: str) -> str:
    """A reference section as the grammar writes it: one line, bullets dropped, each line a sentence that
    ends with a full stop, "?"/"!" as full stops. Returns "" when nothing fits the grammar."""
    out: list[str] = []
    for line in text.splitlines():
        s = _BULLET.sub("", line).strip()
        s = re.sub(r"\s+", " ", s.replace("?", ".").replace("!", "."))
        s = re.sub(r"\.{2,}", ".", s)
        s = re.sub(r"\s+\.", ".", s)
        s = s.lstrip(".,;:)]}>-–•*/ ")
        if not s or not any(c.isalnum() for c in s):
            continue
        if not s.endswith("."):
            s = s.rstrip(",;:-– ") + "."
        s = s[0].upper() + s[1:]
        if not re.match(r"[A-Z0-9\"'(\[]", s):
            continue  # opens with a character no sentence of the grammar opens with
        out.append(s)
    joined = " ".join(out)
    # ". x" where x opens no sentence: the grammar has no such junction; make it a comma-free continuation
    joined = re.sub(r"\. (?=[^A-Z0-9\"'(\[a-z])", " ", joined)
    if len(split_sentences(joined)) > MAX_SENTENCES:
        joined = " ".join(split_sentences(joined)[:MAX_SENTENCES])
    return joined if _SECTION_FULL.fullmatch(joined) else ""


def split_sentences(text: str) -> list[str]:
    """The sentences of a section written under :data:`SECTION_REGEX` (a title such as "Dr." does not end one)."""
    return written_sentences(text)


def max_tokens_for(section: str) -> int:
    return int(MAX_TOKENS.get(section, DEFAULT_MAX_TOKENS))
