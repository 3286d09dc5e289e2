"""``medslm train`` and ``medslm artifacts``: fit the trained components, and inspect what a run loads."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["artifacts_app", "train_command"]


def train_command(
    target: Annotated[list[str] | None, typer.Argument(
        help="'all', an agent (ner, icd, triage, guardian, …) or component names (ner-crf, icd-coder, …)",
        show_default=False)] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="folder of the training data (the public data "
                                              "sets' layout; default: $MEDSLM_DATA_DIR or ../shared/data)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="where the artifact folders are written")] = Path("artifacts"),
    seed: Annotated[int, typer.Option("--seed", help="random seed of every fit")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N for the neural components")] = "cpu",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads (default: torch's choice)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="fit each component on a tiny slice (a smoke test; never "
                                        "ship the result)")] = False,
    list_: Annotated[bool, typer.Option("--list", help="list the components and exit")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress lines")] = False,
) -> None:
    """Fit trained components from their train splits and write artifacts with manifests.

    Example: medslm train all --data ../shared/data --out my_artifacts/   (then: MEDSLM_ARTIFACTS=my_artifacts)
    """
    from rich.console import Console

    from medslm.errors import MedslmError
    from medslm.evals.datasets import resolve_data_dir
    from medslm.training import recipes, train

    console = Console()
    if list_:
        for name, r in recipes().items():
            console.print(f"{name:22s} agent={r.agent:10s} data={','.join(r.data) or '-':28s} {r.description}",
                          markup=False, soft_wrap=True)
        return
    if not quiet:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("medslm.training").setLevel(logging.INFO)

    def done(m: object) -> None:
        from medslm.artifacts import Manifest

        assert isinstance(m, Manifest)
        figs = ", ".join(f"{k}={v:.3f}" for k, v in list(m.figures.items())[:6])
        console.print(f"{m.component}: {m.wall_time_s:.1f} s, {sum(f.bytes for f in m.files.values()) / 1e6:.2f} MB"
                      + (f"; {figs}" if figs else ""), markup=False, soft_wrap=True)

    try:
        train(target or ["all"], data_dir=resolve_data_dir(data), out_dir=out, seed=seed, device=device,
              quick=quick, threads=threads, on_done=done)
    except MedslmError as exc:
        console.print(f"[red]error[/]: {exc}")
        raise typer.Exit(2) from None
    console.print(f"artifacts: {out}   (use them with MEDSLM_ARTIFACTS={out} or --artifacts {out})",
                  markup=False, soft_wrap=True)


artifacts_app = typer.Typer(help="The trained artifacts a run loads: list, show, verify.", no_args_is_help=True)


@artifacts_app.command("list")
def artifacts_list(
    root: Annotated[Path | None, typer.Option("--artifacts", help="a folder of retrained artifacts")] = None,
) -> None:
    """Every component a run would load, where from, its size and headline figures.

    Example: medslm artifacts list
    """
    from medslm.artifacts import list_artifacts, shipped_root

    shipped = shipped_root()
    for name, folder, m in list_artifacts(root):
        size = sum(f.bytes for f in m.files.values()) / 1e6
        where = "shipped" if folder.parent == shipped else str(folder.parent)
        figs = ", ".join(f"{k}={v:.3f}" for k, v in list(m.figures.items())[:3])
        typer.echo(f"{name:22s} {size:6.2f} MB  {where:8s} trained {m.created[:10]} in {m.wall_time_s:.0f} s  {figs}")


@artifacts_app.command("show")
def artifacts_show(
    component: Annotated[str, typer.Argument(help="component name, e.g. ner-crf")],
    root: Annotated[Path | None, typer.Option("--artifacts", help="a folder of retrained artifacts")] = None,
) -> None:
    """Print a component's manifest (data with sha256, base model, hyperparameters, figures).

    Example: medslm artifacts show icd-coder
    """
    from medslm.artifacts import load_manifest

    typer.echo(load_manifest(component, root).model_dump_json(indent=2))


@artifacts_app.command("verify")
def artifacts_verify(
    root: Annotated[Path | None, typer.Option("--artifacts", help="a folder of retrained artifacts")] = None,
) -> None:
    """Check every file of every visible artifact against its manifest's sha256; exit 1 on a mismatch.

    Example: medslm artifacts verify
    """
    from medslm.artifacts import ArtifactError, list_artifacts, verify

    bad = 0
    for name, folder, _ in list_artifacts(root):
        try:
            verify(folder)
            typer.echo(f"ok       {name}")
        except ArtifactError as exc:
            bad += 1
            typer.echo(f"MISMATCH {name}: {exc}")
    raise typer.Exit(1 if bad else 0)
