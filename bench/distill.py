"""One distillation round on KTAS: does training on what was escalated cut escalation at equal quality?

    python bench/distill.py [--seed 0] [--share 0.15]

Protocol (KTAS ``data_dev.csv``, seeded split of the visits):

- **A** (40 %): the initial train split; the triage agent's acuity model is fitted on it ("before").
- **B** (30 %): a production batch. The cascade escalates the ``--share`` least confident results; each
  goes to the real :class:`~medslm.routers.ReviewQueue` and is resolved with the KTAS expert's level by a
  simulated reviewer (there is no teacher LLM in this run: the expert label stands for the reviewer's
  correction, ``reviewer="ktas-expert (simulated)"``).
- ``medslm.training.distill.distill("triage", …)`` refits the acuity model on A + those corrections
  ("after"), through the same code as ``medslm distill triage``.
- **H** (30 %): held out; never fitted, tuned or escalated on. Reported there: accuracy without escalation,
  quality of the cascade at ``--share`` (an escalated result is replaced by the reviewer's, i.e. correct),
  and the escalation share each model needs to reach the *before* model's cascade quality. Controls:
  A + the same number of B visits chosen at random, and A + all of B (every B visit labelled).

The agent runs without its SLM here (rules + acuity model + cost; ``use_slm=False``): the round retrains
the acuity model, the SLM is not changed by it, and on a shared 2-core machine the SLM would cost ~3 s a
visit. Prints a table and writes ``out/distill-triage.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def agent_for(params: dict[str, Any]) -> Any:
    from medslm.agents.triage import TriageAgent
    from medslm.agents.triage_features import AcuityModel

    return TriageAgent(model="embedded", use_slm=False, acuity_model=AcuityModel(params), scale="KTAS")


def run(agent: Any, rows: list[dict[str, Any]]) -> list[tuple[float, bool]]:
    from medslm.records import Note

    out = []
    for r in rows:
        res = agent.run(Note(id=r["id"], text=r["note"]), {})
        out.append((res.confidence, res.output.level == r["expert"]))
    return out


def cascade_quality(results: list[tuple[float, bool]], share: float) -> float:
    """Accuracy when the ``share`` least confident results are replaced by a reviewer's (correct) answer."""
    n = len(results)
    k = round(share * n)
    order = sorted(range(n), key=lambda i: (results[i][0], i))
    escalated = set(order[:k])
    return sum(1 if i in escalated else int(ok) for i, (_, ok) in enumerate(results)) / n


def share_for(results: list[tuple[float, bool]], quality: float) -> float:
    """The smallest escalation share whose cascade quality reaches ``quality``."""
    n = len(results)
    for k in range(n + 1):
        if cascade_quality(results, k / n) >= quality - 1e-12:
            return k / n
    return 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=0.15)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "out")
    args = ap.parse_args()
    import os

    from medslm.evals.ktas import fit_triage_model, read_ktas
    from medslm.records import AgentResult, Note, TriageResult
    from medslm.routers import ReviewQueue
    from medslm.training.distill import distill

    data_dir = args.data_dir or Path(os.environ.get("MEDSLM_DATA_DIR") or REPO.parent / "shared" / "data")
    rows = read_ktas(data_dir)
    random.Random(args.seed).shuffle(rows)
    a, b, h = rows[: int(0.4 * len(rows))], rows[int(0.4 * len(rows)): int(0.7 * len(rows))], rows[int(0.7 * len(rows)):]
    before = fit_triage_model(a)
    on_b = run(agent_for(before), b)
    k = round(args.share * len(b))
    esc = sorted(range(len(b)), key=lambda i: (on_b[i][0], i))[:k]
    with tempfile.TemporaryDirectory() as tmp:
        queue = ReviewQueue(Path(tmp) / "q.sqlite")
        for i in esc:  # the production batch's escalations, resolved by the (simulated) reviewer
            note = Note(id=b[i]["id"], text=b[i]["note"])
            item = queue.add(note.id, "triage", AgentResult[TriageResult](
                agent="triage", output=TriageResult(level=3, scale="KTAS"), confidence=on_b[i][0]),
                f"low_confidence: {on_b[i][0]:.2f}", note_sha256=note.sha256)
            queue.resolve(item, "correct", correction={"level": b[i]["expert"], "scale": "KTAS"},
                          reviewer="ktas-expert (simulated)")
        notes = [Note(id=r["id"], text=r["note"]) for r in b]
        rep = distill("triage", data_dir=data_dir, out_dir=Path(tmp) / "arts", notes=notes, queue=queue,
                      base_rows=a, seed=args.seed)
        after = json.loads((Path(tmp) / "arts" / "triage-acuity" / "model.json").read_text())
    rnd = random.Random(args.seed + 1).sample(range(len(b)), k)
    controls = {"A + random B (same count)": fit_triage_model(a + [b[i] for i in rnd]),
                "A + all of B": fit_triage_model(a + b)}
    systems = {"before (A)": before, "after (A + escalated B, distilled)": after, **controls}
    res = {name: run(agent_for(p), h) for name, p in systems.items()}
    target = cascade_quality(res["before (A)"], args.share)
    table = {}
    for name, r in res.items():
        table[name] = {"accuracy_no_escalation": sum(ok for _, ok in r) / len(r),
                       f"cascade_quality_at_{args.share:.0%}": cascade_quality(r, args.share),
                       "share_to_reach_before_cascade_quality": share_for(r, target)}
    result = {"split": f"KTAS data_dev seeded split (seed {args.seed}): A {len(a)} fit, B {len(b)} production, "
                       f"H {len(h)} held out", "escalated_in_B": k, "reviewer_examples": rep.reviewer_examples,
              "target_quality_on_H": target, "systems": table}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill-triage.json").write_text(json.dumps(result, indent=2))
    print(result["split"] + f"; {k} escalations of B labelled by the reviewer")
    print(f"target on H: the before model's cascade quality at {args.share:.0%} escalation = {target:.3f}")
    for name, t in table.items():
        print(f"  {name:38s} acc {t['accuracy_no_escalation']:.3f}   cascade@{args.share:.0%} "
              f"{t[f'cascade_quality_at_{args.share:.0%}']:.3f}   share for target "
              f"{t['share_to_reach_before_cascade_quality']:.1%}")


if __name__ == "__main__":
    main()
