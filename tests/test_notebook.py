"""examples/tour.ipynb runs top to bottom, and its HTML output holds the highlighted entity spans."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "tour.ipynb"

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # jupyter/zmq internals on Python 3.11
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # "Proactor event loop" style kernel warnings
]


class _Marks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.marks: list[dict[str, str]] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "mark" and a.get("class") == "medslm-ent":
            self._open = {**a, "text": ""}

    def handle_endtag(self, tag: str) -> None:
        if tag == "mark" and self._open is not None:
            self.marks.append(self._open)
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data


@pytest.fixture(scope="module")
def executed(data_dir, tmp_path_factory):
    """The notebook executed by a kernel running this very interpreter.

    The kernelspec is written for the test into a temporary folder (``ipykernel``'s own writer, argv =
    ``sys.executable -m ipykernel_launcher``), so a fresh ``pip install -e ".[test]"`` venv needs no
    ``ipykernel install`` step, and no other Jupyter installation or ``python`` on PATH is used.
    """
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "medslm-tour")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDSLM_DATA_DIR", str(data_dir))  # the kernel inherits the environment
        mp.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path_factory.mktemp("jupyter-runtime")))
        ksm = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
        km = KernelManager(kernel_name="medslm-tour", kernel_spec_manager=ksm)
        NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def _outputs(nb, mime: str) -> list[str]:
    return [o["data"][mime] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") in ("execute_result", "display_data") and mime in o.get("data", {})]


def test_notebook_runs_without_errors(executed) -> None:
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")


def test_review_html_highlights_entities(executed) -> None:
    from medslm.samples import load_samples

    text = load_samples()[0].text
    html_out = next(h for h in _outputs(executed, "text/html") if "medslm-review" in h)
    p = _Marks()
    p.feed(html_out)
    assert p.marks, "no highlighted entity in the review's HTML"
    for m in p.marks:
        start, end = int(m["data-start"]), int(m["data-end"])
        assert text[start:end] == m["text"]  # the mark wraps exactly the note's characters at its offsets
        assert m["data-type"] in {"problem", "medication", "test", "procedure", "anatomy"}
        assert m["data-assertion"] in {"present", "negated", "possible", "historical", "family", "hypothetical"}
    assert any(m["data-type"] == "problem" for m in p.marks)
    assert "ICD-10-CM codes" in html_out and "Triage" in html_out and "Cost" in html_out


def test_text_batch_custom_graph_and_eval_outputs(executed) -> None:
    streams = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "ChartReview ed-001" in streams  # print(review)
    assert "graph TD" in streams or "flowchart" in streams  # Mermaid
    assert "4 notes (4 reviewed" in streams  # the batch summary
    plain = _outputs(executed, "text/plain")
    assert any(s.startswith("[") for s in plain)  # the custom node's list of present problems
    md = _outputs(executed, "text/markdown")
    assert any("| triage | rules | accuracy |" in m for m in md)
    assert _outputs(executed, "image/png")  # the Pareto plot


def test_batch_to_dataframe_and_plot(executed) -> None:
    from medslm.samples import load_samples

    tables = [h for h in _outputs(executed, "text/html") if "dataframe" in h and "assertion" in h]
    assert tables, "no DataFrame of entities in the notebook"
    ids = {n.id for n in load_samples()[:8]}
    assert any(f"<td>{i}</td>" in tables[0] for i in ids)  # the frame holds the batch's notes
    assert "<th>icd10cm</th>" in tables[0] and "<th>type</th>" in tables[0]
    assert len(_outputs(executed, "image/png")) >= 2  # the assertion plot and the Pareto plot
