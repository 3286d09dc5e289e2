"""Log redaction over a long run: cost per note of registering its PHI and redacting its log lines,
as the registry grows to 50,000 strings, against the old registry (one regular expression over every
registered string, recompiled whenever a note adds strings) measured in the same run.

    python bench/redaction.py            # sizes 100, 10,000, 50,000
"""

from __future__ import annotations

import argparse
import random
import re
import string
import time

from medslm.safety import redaction


class OldRegistry:
    """The registry before issue 14: an alternation of every string, recompiled on each change."""

    def __init__(self) -> None:
        self.strings: dict[str, None] = {}
        self.pattern: re.Pattern[str] | None = None

    def register(self, items: list[str]) -> None:
        for s in items:
            self.strings[s] = None
        alts = sorted(self.strings, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(a) for a in alts))

    def redact(self, text: str) -> str:
        return self.pattern.sub("[PHI]", text) if self.pattern else text


def fake_phi(rng: random.Random) -> list[str]:
    name = "".join(rng.choices(string.ascii_lowercase, k=7)).title() + " " + "".join(rng.choices(string.ascii_lowercase, k=9)).title()
    return [name, name.split()[1], f"MRN{rng.randint(10**6, 10**7)}", f"617-555-{rng.randint(1000, 9999)}",
            f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/19{rng.randint(30, 99)}"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,10000,50000")
    ap.add_argument("--notes", type=int, default=20, help="notes timed at each size")
    args = ap.parse_args()
    rng = random.Random(0)
    lines = ["guard_in note=n-17 sha=ab12 chars=2311 injections=0 phi=6 allowed=True 8.1ms",
             "node icd failed on note n-17: ValueError", "triage note=n-17 level=2 flags=1 conf=0.91",
             "summarize note=n-17 sentences=9 supported=0.89 chunks=1", "escalating icd for n-17 (confidence 0.31)"]
    print(f"{'registered':>10}  {'new ms/note':>11}  {'old ms/note':>11}  {'old/new':>7}")
    for size in (int(x) for x in args.sizes.split(",")):
        redaction.clear_registered_phi()
        old = OldRegistry()
        bulk = [s for _ in range(size // 5) for s in fake_phi(rng)]
        redaction.register_phi(bulk)
        old.strings.update(dict.fromkeys(bulk))
        notes = [fake_phi(rng) for _ in range(args.notes)]
        t0 = time.perf_counter()
        for phi in notes:
            redaction.register_phi(phi)
            for ln in lines:
                redaction.redact_text(ln + " " + phi[0], use_rules=False)
        new = (time.perf_counter() - t0) * 1000 / len(notes)
        t0 = time.perf_counter()
        for phi in notes:
            old.register(phi)
            for ln in lines:
                old.redact(ln + " " + phi[0])
        old_ms = (time.perf_counter() - t0) * 1000 / len(notes)
        print(f"{redaction.registered_count():>10,}  {new:>11.3f}  {old_ms:>11.1f}  {old_ms / new:>7.0f}x")
    redaction.clear_registered_phi()


if __name__ == "__main__":
    main()
