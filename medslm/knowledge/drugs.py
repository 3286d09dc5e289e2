"""Drug vocabularies for the knowledge graph: an open one shipped on PyPI, and RxNorm when you bring it.

- :class:`DrugVocabulary` reads the drug dictionary of the PyPI package ``drug-named-entity-recognition``
  (MIT licence, Fast Data Science; names from DrugBank's open vocabulary, MeSH and MedlinePlus): about
  20,000 drugs under 107,000 names, generic and brand. A concept is keyed by its DrugBank id
  (``DRUGBANK:DB00331``), else its MeSH id (``MESH:D008687``), else its MedlinePlus id, with
  ``maps_to`` edges between the ids a drug has in several systems. The package's data file is a pickle
  of plain dicts and strings: it is read with an unpickler that refuses every class (nothing but
  built-in containers can come out of it), and the package itself is never imported (it would read and
  write pickles in the home folder at import).
- :class:`RxNormRrfSource` reads an RxNorm release (``RXNCONSO.RRF``, the full or prescribable
  monthly release from NLM; you accept its terms): ingredients, brand names and clinical drugs become
  ``RXNORM:<RXCUI>`` concepts. RxNorm in a UMLS release works too, through
  :class:`~medslm.knowledge.umls.UmlsRrfSource` with ``sources=("RXNORM", …)``.

``drug_graph()`` is the graph the medication agent normalises with: the open vocabulary, plus any
source you add (``drug_graph(RxNormRrfSource("/data/rxnorm/rrf"))``).
"""

from __future__ import annotations

import bz2
import io
import pickle
import threading
from collections.abc import Iterable
from importlib import util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medslm.errors import KnowledgeError
from medslm.knowledge.builder import ConceptSource, GraphBuilder, files_version

if TYPE_CHECKING:
    from medslm.knowledge.graph import KnowledgeGraph

#: The systems a drug can be keyed in, in the order normalisation prefers them.
DRUG_SYSTEMS = ("RXNORM", "DRUGBANK", "MESH", "MEDLINEPLUS")

_PACKAGE = "drug_named_entity_recognition"
_DATA_FILE = "drug_ner_dictionary.pkl.bz2"


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, sets, strings and numbers; any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise KnowledgeError(
            f"the drug dictionary names {module}.{name}; only plain data is accepted (is the package "
            f"{_PACKAGE!r} the expected version?)"
        )


def _data_path() -> Path:
    spec = util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeError(
            "the open drug vocabulary needs the package drug-named-entity-recognition (a dependency of "
            "medslm): pip install drug-named-entity-recognition==2.0.9"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _DATA_FILE


def read_drug_dictionary() -> dict[str, dict[str, Any]]:
    """The package's three tables (variant -> canonicals, canonical -> data, variant -> flags)."""
    path = _data_path()
    if not path.is_file():
        raise KnowledgeError(f"{path} is missing; reinstall drug-named-entity-recognition")
    data = _PlainUnpickler(io.BytesIO(bz2.decompress(path.read_bytes()))).load()
    if not isinstance(data, dict) or "drug_canonical_to_data" not in data:
        raise KnowledgeError(f"{path.name}: unexpected layout; expected the drug dictionary's tables")
    return data


class DrugVocabulary:
    """The open drug vocabulary of ``drug-named-entity-recognition`` as a :class:`ConceptSource`."""

    name = "drug-vocabulary"

    def version(self) -> str:
        try:
            return f"{_PACKAGE}=={version('drug-named-entity-recognition')}"
        except PackageNotFoundError:
            return files_version([_data_path()])

    def load(self, builder: GraphBuilder) -> None:
        data = read_drug_dictionary()
        names: dict[str, list[str]] = {}
        for variant, canonicals in data["drug_variant_to_canonical"].items():
            for c in canonicals:
                names.setdefault(c, []).append(variant)
        for canonical, info in data["drug_canonical_to_data"].items():
            ids = [(system, str(info[key])) for system, key in (("DRUGBANK", "drugbank_id"), ("MESH", "mesh_id"),
                                                                ("MEDLINEPLUS", "medline_plus_id")) if info.get(key)]
            if not ids:
                continue  # a name known only from a web page: no identifier to normalise to
            label = str(info.get("name") or canonical)
            synonyms = [canonical, *names.get(canonical, ())]
            cids = [builder.add_concept(system, code, label, synonyms=synonyms, kind="drug") for system, code in ids]
            for other in cids[1:]:
                builder.add_mapping(cids[0], other)


#: RXNCONSO.RRF columns (RxNorm Technical Documentation, section 12.5)
RXNCONSO = ("RXCUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "RXAUI", "SAUI", "SCUI", "SDUI", "SAB", "TTY",
            "CODE", "STR", "SRL", "SUPPRESS", "CVF")
#: term types kept: ingredients, precise / multiple ingredients, brand names, clinical and branded drugs
RXNORM_TTYS = ("IN", "PIN", "MIN", "BN", "SCD", "SBD", "SCDC", "SBDC", "GPCK", "BPCK")
_TTY_RANK = {"IN": 0, "PIN": 1, "MIN": 2, "BN": 3}


class RxNormRrfSource:
    """An RxNorm release in RRF (the folder holding ``RXNCONSO.RRF``); bring your own."""

    name = "rxnorm"

    def __init__(self, directory: str | Path, *, term_types: Iterable[str] = RXNORM_TTYS) -> None:
        self.directory = Path(directory)
        self.term_types = frozenset(term_types)

    def _conso(self) -> Path:
        for cand in (self.directory / "RXNCONSO.RRF", self.directory / "rrf" / "RXNCONSO.RRF"):
            if cand.is_file():
                return cand
        raise KnowledgeError(
            f"RXNCONSO.RRF not found under {self.directory}; pass the 'rrf' folder of an RxNorm release"
        )

    def version(self) -> str:
        return f"{files_version([self._conso()])}|{sorted(self.term_types)}"

    def load(self, builder: GraphBuilder) -> None:
        from medslm.knowledge.umls import read_rrf

        best: dict[str, tuple[int, str]] = {}
        names: dict[str, list[str]] = {}
        kinds: dict[str, str] = {}
        for r in read_rrf(self._conso(), RXNCONSO):
            if r["SAB"] != "RXNORM" or r["TTY"] not in self.term_types or r["SUPPRESS"] in ("O", "E", "Y"):
                continue
            cui, tty = r["RXCUI"], r["TTY"]
            rank = _TTY_RANK.get(tty, 9)
            if cui not in best or rank < best[cui][0]:
                best[cui] = (rank, r["STR"])
                kinds[cui] = tty
            names.setdefault(cui, []).append(r["STR"])
        if not best:
            raise KnowledgeError(f"{self._conso()} holds no RXNORM rows of types {sorted(self.term_types)}")
        for cui, (_, label) in best.items():
            builder.add_concept("RXNORM", cui, label, synonyms=names[cui], kind=kinds[cui])


_DRUG_GRAPH: KnowledgeGraph | None = None
_LOCK = threading.Lock()


def drug_graph(*sources: ConceptSource) -> KnowledgeGraph:
    """The knowledge graph of drugs: the open vocabulary plus ``sources`` (RxNorm…); loads on first query.

    Without ``sources``, one shared graph per process (cached on disk like the default graph).
    """
    from medslm.knowledge.graph import KnowledgeGraph

    global _DRUG_GRAPH
    if sources:
        return KnowledgeGraph([DrugVocabulary(), *sources])
    with _LOCK:
        if _DRUG_GRAPH is None:
            _DRUG_GRAPH = KnowledgeGraph([DrugVocabulary()])
        return _DRUG_GRAPH


__all__ = ["DRUG_SYSTEMS", "RXNCONSO", "RXNORM_TTYS", "DrugVocabulary", "RxNormRrfSource", "drug_graph",
           "read_drug_dictionary"]
