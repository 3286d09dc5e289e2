"""The agent registry: one :class:`AgentSpec` per agent, from medslm or from any installed package.

An agent is one module plus one entry here. The spec says everything the rest of medslm needs to know
about it: the graph (its node name, the state field it writes, what it reads, its model role), the
record (the type of its output, so that ``ChartReview.results[name]`` round-trips through JSON), the
display (text and HTML), the output files (flat-row columns), the CLI table, ``medslm eval`` (its
task) and ``medslm train`` (the names of its recipes in :mod:`medslm.training`).

Other packages add agents through the entry-point group ``medslm.agents``::

    # pyproject.toml of my-package
    [project.entry-points."medslm.agents"]
    dose_check = "my_package.dose:SPEC"     # an AgentSpec, a list of them, or a function returning either

References to code in layers above this module (the agent class, renderers, checks, the eval task)
may be ``"module:attribute"`` strings, resolved on first use: ``import medslm`` stays light, and imports
point one way (this module imports only :mod:`medslm.records` and :mod:`medslm.errors`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from medslm.errors import ConfigurationError, UnknownNameError
from medslm.records import AgentResult, CodeAssignment, Entity, Summary, TriageResult, bind

#: Entry-point group that third-party agents register under.
ENTRY_POINT_GROUP = "medslm.agents"

#: ``"package.module:attribute"`` or the object itself.
Ref = str | Callable[..., Any]


def resolve(ref: Any) -> Any:
    """The object a ``"module:attr"`` reference names (anything else is returned as it is)."""
    if not isinstance(ref, str):
        return ref
    return _resolve(ref)


@cache
def _resolve(ref: str) -> Any:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ConfigurationError(f"reference {ref!r} is not 'package.module:attribute'")
    try:
        obj: Any = import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"reference {ref!r}: module {module!r} cannot be imported ({exc})") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(f"reference {ref!r}: {module!r} has no attribute {attr!r}") from None
    return obj


@dataclass(frozen=True)
class AgentSpec:
    """What medslm knows about one agent. Only ``name``, ``output`` and ``factory`` are required.

    Renderers (each optional; a generic JSON view stands in for a missing one):

    - ``text(result, note_text) -> list[str]``: lines of the terminal form (``print(review)``);
    - ``html(result, note_text) -> str``: a section of the notebook HTML (escape what you show);
    - ``row(result) -> dict``: flat columns of CSV / Parquet outputs (declare their names in ``columns``,
      so that a note without this result still gets them, empty);
    - ``cell(result) -> str``: the result's cell in ``medslm review``'s table.

    ``verify(result, text, context) -> list[str]``: this agent's own checks in the ``verify`` node
    (issues start with ``"<name>: "``; evidence spans outside the note are checked for every agent).
    ``eval_task``: a :class:`medslm.evals.harness.TaskSpec` (or a reference to one) for ``medslm eval``.
    ``train_recipes``: names of recipes in :mod:`medslm.training` that fit this agent's artifacts.
    ``chart_review``: part of the default :func:`medslm.chart_review` graph (after the agents whose
    fields it reads).
    """

    name: str
    output: Any
    """Type of ``AgentResult.output`` (``list[Entity]``, a pydantic model…) or a reference to it."""
    factory: Ref
    """The agent class, or ``f(model=..., **options) -> agent``; called with the role's model spec."""
    field: str = ""
    """State field the agent node writes (default: ``name``)."""
    reads: tuple[str, ...] = ()
    """State fields it needs besides ``note`` (written upstream, checked by ``Pipeline.check``)."""
    optional_reads: tuple[str, ...] = ("text",)
    """State fields it uses when present (``text``: the guardian's fenced text)."""
    role: str = ""
    """Model role in ``Settings.models`` (default: ``name``)."""
    label: str = ""
    description: str = ""
    text: Ref | None = None
    html: Ref | None = None
    row: Ref | None = None
    columns: tuple[str, ...] = ()
    cell: Ref | None = None
    verify: Ref | None = None
    eval_task: Any = None
    train_recipes: tuple[str, ...] = ()
    chart_review: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigurationError(f"agent name {self.name!r} must be an identifier (letters, digits, _)")
        for attr, default in (("field", self.name), ("role", self.name), ("label", self.name)):
            if not getattr(self, attr):
                object.__setattr__(self, attr, default)

    # ---------------------------------------------------------------- resolved on first use
    @property
    def output_type(self) -> Any:
        return resolve(self.output)

    @property
    def result_type(self) -> type[AgentResult[Any]]:
        """``AgentResult[output_type]``: what ``ChartReview.results[name]`` parses into."""
        return _result_type(self.output_type)

    def build(self, model: Any = "embedded", **options: Any) -> Any:
        """A new agent object on ``model`` (a spec string or a LanguageModel); loads nothing yet."""
        return resolve(self.factory)(model=model, **options)

    def renderer(self, kind: str) -> Callable[..., Any] | None:
        """The ``text``, ``html``, ``row``, ``cell`` or ``verify`` function, or None."""
        ref = getattr(self, kind)
        return resolve(ref) if ref is not None else None

    def task(self) -> Any:
        return resolve(self.eval_task) if self.eval_task is not None else None


@cache
def _result_type(output: Any) -> type[AgentResult[Any]]:
    return AgentResult[output]  # type: ignore[valid-type]


class AgentRegistry:
    """Agents by name: the built-ins, then the ``medslm.agents`` entry points (loaded on first use)."""

    def __init__(self, specs: Iterable[AgentSpec] = (), *, group: str = ENTRY_POINT_GROUP) -> None:
        self.group = group
        self._specs: dict[str, AgentSpec] = {}
        self._builtin: tuple[str, ...] = ()
        self._plugins_loaded = False
        self._lock = threading.RLock()
        for s in specs:
            self.register(s)
        self._builtin = tuple(self._specs)

    # ---------------------------------------------------------------- registering
    def register(self, spec: AgentSpec, *, replace: bool = False) -> AgentSpec:
        """Add ``spec``; a second agent of the same name is refused unless ``replace``."""
        if not isinstance(spec, AgentSpec):
            raise ConfigurationError(f"register() takes an AgentSpec, not {type(spec).__name__}")
        with self._lock:
            old = self._specs.get(spec.name)
            if old is not None and old != spec and not replace:
                raise ConfigurationError(
                    f"an agent named {spec.name!r} is already registered ({_origin(old)}); pick another "
                    "name, or pass replace=True to override it"
                )
            clash = next((s for s in self._specs.values() if s.field == spec.field and s.name != spec.name), None)
            if clash is not None:
                raise ConfigurationError(
                    f"agent {spec.name!r} writes state field {spec.field!r}, which agent {clash.name!r} "
                    "already writes; give it its own field"
                )
            self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        with self._lock:
            self._specs.pop(name, None)

    def load_plugins(self, *, reload: bool = False) -> None:
        """Register every agent of the ``medslm.agents`` entry points (once per process)."""
        with self._lock:
            if self._plugins_loaded and not reload:
                return
            self._plugins_loaded = True
            for ep in entry_points(group=self.group):
                try:
                    obj = ep.load()
                    found = obj() if callable(obj) and not isinstance(obj, AgentSpec) else obj
                    specs = [found] if isinstance(found, AgentSpec) else list(found)
                    for spec in specs:
                        self.register(spec, replace=reload)
                except ConfigurationError:
                    raise
                except Exception as exc:
                    raise ConfigurationError(
                        f"agent plug-in {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}; "
                        f"fix or uninstall the package that provides it"
                    ) from exc

    # ---------------------------------------------------------------- looking up
    def find(self, name: str) -> AgentSpec | None:
        """The spec named ``name``, or None (looks at the plug-ins when it is not a built-in)."""
        spec = self._specs.get(name)
        if spec is None and not self._plugins_loaded:
            self.load_plugins()
            spec = self._specs.get(name)
        return spec

    def get(self, name: str) -> AgentSpec:
        """The spec named ``name``; an unknown name raises with a "did you mean"."""
        spec = self.find(name)
        if spec is None:
            raise UnknownNameError("agent", name, list(self._specs))
        return spec

    def for_field(self, state_field: str) -> AgentSpec | None:
        """The agent that writes ``state_field``, or None."""
        return next((s for s in self.specs() if s.field == state_field), None)

    def specs(self) -> list[AgentSpec]:
        """Every registered agent, built-ins first, in registration order."""
        self.load_plugins()
        return list(self._specs.values())

    def builtins(self) -> list[AgentSpec]:
        """The agents that ship with medslm (no plug-in is loaded)."""
        return [self._specs[n] for n in self._builtin if n in self._specs]

    def names(self) -> list[str]:
        return [s.name for s in self.specs()]

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self.specs())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def result_type(self, name: str) -> type[AgentResult[Any]] | None:
        """``AgentResult[output type]`` of the agent ``name`` (None for an agent nobody registered)."""
        spec = self.find(name)
        return spec.result_type if spec is not None else None


def _origin(spec: AgentSpec) -> str:
    f = spec.factory
    return f if isinstance(f, str) else f"{getattr(f, '__module__', '?')}:{getattr(f, '__qualname__', '?')}"


# ------------------------------------------------------------------------------ the built-in agents
BUILTINS: tuple[AgentSpec, ...] = (
    AgentSpec(
        name="ner", output=list[Entity], factory="medslm.agents.ner:NerAgent", field="entities",
        label="Entities", description="entities with spans, assertion and KG concepts",
        text="medslm.display:entities_text", html="medslm.display:entities_html",
        row="medslm.graphs.io:entities_row", columns=("n_entities",), cell="medslm.cli.review:entities_cell",
        verify="medslm.graphs.checks:check_entities", eval_task="medslm.evals.harness:NER_TASK",
        train_recipes=("ner",), chart_review=True,
    ),
    AgentSpec(
        name="icd", output=list[CodeAssignment], factory="medslm.agents.icd:IcdAgent", field="codes",
        reads=("entities",), label="ICD-10-CM", description="ICD-10-CM codes chosen among KG candidates",
        text="medslm.display:codes_text", html="medslm.display:codes_html",
        row="medslm.graphs.io:codes_row", columns=("codes",), cell="medslm.cli.review:codes_cell",
        verify="medslm.graphs.checks:check_codes", eval_task="medslm.evals.harness:ICD_TASK",
        train_recipes=("icd",), chart_review=True,
    ),
    AgentSpec(
        name="triage", output=TriageResult, factory="medslm.agents.triage:TriageAgent", field="triage",
        optional_reads=("text", "entities"), label="Triage", description="acuity 1-5 with red flags",
        text="medslm.display:triage_text", html="medslm.display:triage_html",
        row="medslm.graphs.io:triage_row", columns=("triage_level",), cell="medslm.cli.review:triage_cell",
        verify="medslm.graphs.checks:check_triage", eval_task="medslm.evals.harness:TRIAGE_TASK",
        train_recipes=("triage",), chart_review=True,
    ),
    AgentSpec(
        name="summarize", output=Summary, factory="medslm.agents.summarize:SummarizeAgent", field="summary",
        optional_reads=("text", "entities"), label="Summary",
        description="sectioned summary with support spans",
        text="medslm.display:summary_text", html="medslm.display:summary_html",
        row="medslm.graphs.io:summary_row", columns=("summary",), cell="medslm.cli.review:summary_cell",
        verify="medslm.graphs.checks:check_summary", eval_task="medslm.evals.harness:SUMMARIZE_TASK",
        chart_review=True,
    ),
    AgentSpec(
        name="medication", output="medslm.agents.medication:Medications",
        factory="medslm.agents.medication:MedicationAgent", field="medications",
        optional_reads=("text", "entities"), label="Medications",
        description="medications (drug, dose, unit, route, frequency, duration, status) and allergies",
        text="medslm.agents.medication:medication_text", html="medslm.agents.medication:medication_html",
        row="medslm.agents.medication:medication_row", columns=("medications", "allergies"),
        cell="medslm.agents.medication:medication_cell", verify="medslm.agents.medication:check_medications",
        eval_task="medslm.evals.medication:MEDICATION_TASK", chart_review=True,
    ),
)

#: The process-wide registry: medslm's agents and every installed plug-in.
AGENTS = AgentRegistry(BUILTINS)


def get(name: str) -> AgentSpec:
    """``AGENTS.get(name)``: the spec of agent ``name`` (raises with a "did you mean" when unknown)."""
    return AGENTS.get(name)


def find(name: str) -> AgentSpec | None:
    return AGENTS.find(name)


def specs() -> list[AgentSpec]:
    """Every registered agent (built-ins, then plug-ins)."""
    return AGENTS.specs()


def for_field(state_field: str) -> AgentSpec | None:
    """The agent that writes ``state_field`` of the graph state, or None."""
    return AGENTS.for_field(state_field)


def register(spec: AgentSpec, *, replace: bool = False) -> AgentSpec:
    """Register an agent in this process (a package registers through the entry-point group instead)."""
    return AGENTS.register(spec, replace=replace)


def roles(*, plugins: bool = True) -> tuple[str, ...]:
    """The model roles of the registered agents, then ``guardian``."""
    agents = AGENTS.specs() if plugins else AGENTS.builtins()
    return (*dict.fromkeys(s.role for s in agents), "guardian")


def with_spec(spec: AgentSpec, **changes: Any) -> AgentSpec:
    """A copy of ``spec`` with ``changes`` (e.g. ``chart_review=False``)."""
    return replace(spec, **changes)


# ChartReview types each result by its agent's spec (records.py imports nothing above itself).
bind(result_type=AGENTS.result_type)

__all__ = [
    "AGENTS",
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "AgentRegistry",
    "AgentSpec",
    "find",
    "for_field",
    "get",
    "register",
    "resolve",
    "roles",
    "specs",
    "with_spec",
]
