"""Compose medslm graphs from our nodes and your code; compile to a normal LangGraph graph.

A pipeline is a sequence of *stages*; the nodes of one stage run in parallel (fan-out) and the next
stage waits for all of them (fan-in)::

    from medslm import Pipeline

    graph = (
        Pipeline()
        .add("guard_in")                        # built-in node by name; stops blocked/failed notes
        .add("ner", model="embedded")           # per-node model
        .add("icd", "triage", "summarize")      # three agents in parallel
        .add(dose_check, reads=["entities"], writes=["issues"])   # a plain function of the state
        .add("verify").add("route").add("escalate").add("review").add("guard_out")
        .compile()                              # a CompiledStateGraph; checkpointers, streaming work
    )

Contracts are checked by :meth:`Pipeline.compile` (and :meth:`Pipeline.check`) before any model
loads: every field a node reads is written upstream, two parallel nodes never write a field without a
reducer, and unknown node names fail with a "did you mean" hint. Errors name the node and the field.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from medslm import registry
from medslm.errors import GraphContractError, UnknownNameError
from medslm.graphs import nodes as N
from medslm.graphs.context import ReviewContext
from medslm.graphs.state import ReviewState
from medslm.settings import Settings

#: Fields every run starts with.
INPUT_FIELDS = ("note",)

Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass
class _Decl:
    """A node as declared by the user; resolved to a :class:`NodeSpec` at compile time."""

    name: str
    target: Any  # a built-in name, an Agent object or a function
    kind: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    optional_reads: tuple[str, ...] = ()
    model: Any = None
    policy: Any = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Stage:
    nodes: list[_Decl]
    when: Predicate | None = None  # run this stage only if true; otherwise skip to the next one
    gate: Predicate | None = None  # after this stage, go on only if true; otherwise end the run


#: The built-in nodes that are not agents (agents come from :mod:`medslm.registry`).
BUILTINS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str]] = {
    # name: (reads, optional reads, writes, description)
    "guard_in": (("note",), (), ("text", "safety_in", "status", "reason"),
                 "refuse empty/huge/binary notes, find injections and PHI, fence injected spans"),
    "verify": (("note",), ("text", "issues"), ("issues",),
               "evidence spans inside the note, then each agent's own checks (codes in the KG, summary "
               "support, red flags vs. vitals…)"),
    "route": (("note",), ("issues",), ("routes", "route_reasons"),
              "accept / escalate / review each result by calibrated confidence and budget"),
    "escalate": (("note", "routes"), ("text",), ("routes", "route_reasons"),
                 "ask the escalation LLM; endpoint failures go to review"),
    "review": (("note", "routes"), ("route_reasons",), ("review_items", "reviewer_actions"),
               "queue for a human (interrupt in interactive runs)"),
    "kg_lookup": (("note",), ("text", "entities"), ("entities",),
                  "ground entities (or, without NER, lexicon matches) in the knowledge graph"),
    "guard_out": (("note",), ("summary", "codes"), ("safety_out", "summary"),
                  "screen outputs for unsafe advice, PHI leaks (redacted), unsupported claims"),
}

#: Built-in nodes over every agent of the graph: they read (verify, route) or rewrite (route,
#: escalate, review) the agents' fields, which Pipeline adds to their contract at compile time.
OVER_AGENTS = {"verify": ("read",), "route": ("read", "write"), "escalate": ("write",), "review": ("write",)}


class Pipeline:
    """A builder of medslm graphs: stages of nodes with declared reads and writes."""

    def __init__(self, state_schema: type = ReviewState, *, name: str = "medslm",
                 settings: Settings | None = None) -> None:
        self.state_schema = state_schema
        self.name = name
        self.settings = settings or Settings()
        self._stages: list[_Stage] = []

    # ------------------------------------------------------------------ building
    def add(
        self,
        *nodes: Any,
        name: str | None = None,
        reads: Sequence[str] | None = None,
        writes: Sequence[str] | None = None,
        optional_reads: Sequence[str] = (),
        model: Any = None,
        policy: Any = None,
        when: Predicate | None = None,
        gate: Predicate | None = None,
        **options: Any,
    ) -> Pipeline:
        """Append a stage: one node, or several that run in parallel.

        A node is a built-in name (``"ner"``), an object with ``name`` and ``run(note, state)`` (an
        :class:`~medslm.agents.base.Agent`) or a function ``f(state) -> dict`` (optionally
        ``f(state, runtime)``). ``model`` and ``policy`` apply to the agent nodes of the stage; ``when``
        runs the stage only if true (else it is skipped); ``gate`` ends the run after the stage unless
        true (``guard_in`` gates blocked and failed notes by default).
        """
        if not nodes:
            raise GraphContractError("Pipeline.add() needs at least one node")
        if name is not None and len(nodes) > 1:
            raise GraphContractError("name= names one node; add parallel nodes with their own names")
        decls = [
            self._declare(n, name=name, reads=reads, writes=writes, optional_reads=tuple(optional_reads),
                          model=model, policy=policy, options=options)
            for n in nodes
        ]
        if gate is None and any(d.name == "guard_in" and d.kind == "builtin" for d in decls):
            gate = N.allowed
        self._stages.append(_Stage(decls, when=when, gate=gate))
        return self

    def insert(self, node: Any, *, after: str, beside: bool = False, **kwargs: Any) -> Pipeline:
        """Insert a node in a new stage right after the stage holding ``after`` (or in that stage)."""
        idx = self._stage_of(after)
        decl = self._declare(
            node, name=kwargs.pop("name", None), reads=kwargs.pop("reads", None),
            writes=kwargs.pop("writes", None), optional_reads=tuple(kwargs.pop("optional_reads", ())),
            model=kwargs.pop("model", None), policy=kwargs.pop("policy", None), options=kwargs,
        )
        if beside:
            self._stages[idx].nodes.append(decl)
        else:
            self._stages.insert(idx + 1, _Stage([decl]))
        return self

    def remove(self, name: str) -> Pipeline:
        """Drop a node (and its stage when it was alone there)."""
        idx = self._stage_of(name)
        stage = self._stages[idx]
        stage.nodes = [d for d in stage.nodes if d.name != name]
        if not stage.nodes:
            del self._stages[idx]
        return self

    def _stage_of(self, name: str) -> int:
        for i, st in enumerate(self._stages):
            if any(d.name == name for d in st.nodes):
                return i
        raise UnknownNameError("node", name, self.node_names)

    @property
    def node_names(self) -> list[str]:
        return [d.name for st in self._stages for d in st.nodes]

    def _declare(self, node: Any, *, name: str | None, reads: Sequence[str] | None, writes: Sequence[str] | None,
                 optional_reads: tuple[str, ...], model: Any, policy: Any, options: dict[str, Any]) -> _Decl:
        if isinstance(node, str):
            spec = registry.find(node) if node not in BUILTINS else None
            if spec is not None:
                return _Decl(name or node, node, "builtin", tuple(reads or ("note", *spec.reads)),
                             tuple(writes or (spec.field,)), optional_reads or spec.optional_reads, model,
                             policy, dict(options))
            if node not in BUILTINS:
                raise UnknownNameError("node", node, [*BUILTINS, *registry.AGENTS.names(), *self.node_names])
            r, opt, w, _ = BUILTINS[node]
            return _Decl(name or node, node, "builtin", tuple(reads or r), tuple(writes or w),
                         optional_reads or opt, model, policy, dict(options))
        if hasattr(node, "run") and hasattr(node, "name"):
            agent_name = name or str(node.name)
            spec = registry.find(agent_name)
            fld = spec.field if spec is not None else agent_name
            return _Decl(agent_name, node, "agent", tuple(reads or ("note",)), tuple(writes or (fld,)),
                         optional_reads or ("text", "entities"), None, policy, dict(options))
        if callable(node):
            fname = name or getattr(node, "__name__", None)
            if not fname or fname == "<lambda>":
                raise GraphContractError("a function node needs a name: add(fn, name='my_node', ...)")
            if writes is None:
                raise GraphContractError(
                    f"function node {fname!r} must declare what it writes: add({fname}, reads=[...], writes=[...])"
                )
            return _Decl(fname, node, "function", tuple(reads or ()), tuple(writes), optional_reads,
                         None, policy, dict(options))
        raise GraphContractError(
            f"cannot make a node of {type(node).__name__}: give a built-in name "
            f"({', '.join([*BUILTINS, *registry.AGENTS.names()])}), "
            "an object with .name and .run(note, state), or a function of the state"
        )

    # ------------------------------------------------------------------ checking
    def reducers(self) -> set[str]:
        """State fields that have a reducer (parallel nodes may write them)."""
        hints = typing.get_type_hints(self.state_schema, include_extras=True)
        return {k for k, v in hints.items() if typing.get_origin(v) is typing.Annotated}

    @staticmethod
    def _is_agent(d: _Decl) -> bool:
        return d.kind == "agent" or (d.kind == "builtin" and d.target not in BUILTINS)

    def _resolved(self) -> list[list[_Decl]]:
        """The stages' nodes, with verify / route / escalate / review given the fields of this graph's
        agents (what they read or rewrite)."""
        fields = tuple(dict.fromkeys(d.writes[0] for st in self._stages for d in st.nodes if self._is_agent(d)))
        out = []
        for st in self._stages:
            nodes = []
            for d in st.nodes:
                how = OVER_AGENTS.get(d.target) if d.kind == "builtin" and isinstance(d.target, str) else None
                if how:
                    d = replace(
                        d,
                        optional_reads=tuple(dict.fromkeys((*d.optional_reads, *fields))) if "read" in how
                        else d.optional_reads,
                        writes=tuple(dict.fromkeys((*d.writes, *fields))) if "write" in how else d.writes,
                    )
                nodes.append(d)
            out.append(nodes)
        return out

    def check(self) -> None:
        """Raise :class:`GraphContractError` / :class:`UnknownNameError` if the graph cannot work."""
        if not self._stages:
            raise GraphContractError("the pipeline has no nodes; add some with Pipeline.add(...)")
        stages = self._resolved()
        seen: set[str] = set()
        for st in stages:
            for d in st:
                if d.name in seen:
                    raise GraphContractError(f"two nodes are named {d.name!r}; pass name= to tell them apart")
                seen.add(d.name)
        written: dict[str, str] = {f: "<input>" for f in INPUT_FIELDS}
        reducers = self.reducers()
        for st in stages:
            for d in st:
                for f in d.reads:
                    if f not in written:
                        later = [x.name for s in stages for x in s if f in x.writes and x is not d]
                        where = f"only {', '.join(map(repr, later))} writes it, later" if later else "no node writes it"
                        raise GraphContractError(
                            f"node {d.name!r} reads {f!r}, but {where}; add a node that writes {f!r} "
                            f"before {d.name!r}, or remove {d.name!r}"
                        )
            owners: dict[str, str] = {}
            for d in st:
                for f in d.writes:
                    if f in owners and f not in reducers:
                        raise GraphContractError(
                            f"nodes {owners[f]!r} and {d.name!r} run in parallel and both write {f!r}, which has "
                            f"no reducer; give {f!r} a reducer (Annotated[..., operator.add]) or run them one "
                            "after the other"
                        )
                    owners[f] = d.name
            for d in st:
                written.update(dict.fromkeys(d.writes, d.name))

    # ------------------------------------------------------------------ compiling
    def specs(self) -> list[N.NodeSpec]:
        """The resolved node specs, in stage order."""
        stages = self._resolved()
        agent_decls = [d for st in stages for d in st if self._is_agent(d)]
        agent_fields = {d.name: d.writes[0] for d in agent_decls}
        policies = {d.name: d.policy for d in agent_decls if d.policy is not None}
        agent_objects = {d.name: d.target for d in agent_decls if d.kind == "agent"}
        out = []
        for st in stages:
            for d in st:
                fn = self._node_fn(d, agent_fields, policies, agent_objects)
                if d.kind == "builtin":
                    desc = BUILTINS[d.target][3] if d.target in BUILTINS else registry.get(d.target).description
                else:
                    desc = getattr(d.target, "__doc__", "") or ""
                model = d.model if isinstance(d.model, str) or d.model is None else type(d.model).__name__
                if d.kind == "builtin" and d.target not in BUILTINS and model is None:
                    model = "settings"
                if d.kind == "agent":
                    spec = getattr(d.target, "model_spec", None)
                    model = spec if isinstance(spec, str) else type(d.target).__name__
                out.append(N.NodeSpec(d.name, fn, d.reads, d.writes, d.optional_reads, d.kind, model, d.policy,
                                      desc.strip().splitlines()[0] if desc.strip() else "", d.options))
        return out

    @staticmethod
    def _node_fn(d: _Decl, agent_fields: dict[str, str], policies: dict[str, Any],
                 agent_objects: dict[str, Any]) -> N.NodeFn:
        if d.kind == "agent":
            return N.agent_node(d.name, agent=d.target, field_name=d.writes[0])
        if d.kind == "function":
            return d.target  # type: ignore[no-any-return]
        t = d.target
        if t not in BUILTINS:  # a registered agent
            return N.agent_node(d.name, role=t, model=d.model, options=d.options or None, field_name=d.writes[0])
        if t == "route":
            return N.make_route(agent_fields, policies)
        if t == "escalate":
            return N.make_escalate(agent_fields, agent_objects)
        if t == "review":
            return N.make_review(agent_fields)
        return {"guard_in": N.guard_in, "guard_out": N.guard_out, "verify": N.verify, "kg_lookup": N.kg_lookup}[t]

    def _state_class(self) -> type:
        """The state schema, extended with any field a user node writes that the schema lacks."""
        known = set(typing.get_type_hints(self.state_schema, include_extras=True))
        extra = {f: Any for st in self._resolved() for d in st for f in (*d.writes, *d.reads, *d.optional_reads)
                 if f not in known}
        if not extra:
            return self.state_schema
        meta = type(self.state_schema)
        return meta(f"{self.name.title()}State", (self.state_schema,), {"__annotations__": extra}, total=False)

    def compile(self, *, checkpointer: Any = None, store: Any = None, **kwargs: Any) -> Any:
        """Check the contracts, then build a compiled LangGraph graph (no model loads here)."""
        from langgraph.graph import END, START, StateGraph

        self.check()
        specs = {s.name: s for s in self.specs()}
        builder = StateGraph(self._state_class(), context_schema=ReviewContext)
        for s in specs.values():
            builder.add_node(s.name, N.isolated(s.name, s.fn, self.settings))

        stages = [[d.name for d in st.nodes] for st in self._stages]
        # a stage whose outgoing edge is conditional and that has several nodes joins first
        exits: list[list[str]] = []
        for i, st in enumerate(self._stages):
            nxt_conditional = st.gate is not None or any(s.when is not None for s in self._stages[i + 1 :][:1])
            if len(stages[i]) > 1 and nxt_conditional:
                join = f"join_{i}"
                builder.add_node(join, _passthrough)
                builder.add_edge(stages[i], join)
                exits.append([join])
            else:
                exits.append(stages[i])

        def targets_from(i: int, state: Mapping[str, Any]) -> list[str]:
            j = i
            while j < len(self._stages):
                when = self._stages[j].when
                if when is None or when(state):
                    return stages[j]
                j += 1
            return [END]

        first = self._stages[0]
        if first.when is not None:
            builder.add_conditional_edges(START, lambda s: targets_from(0, s), self._reachable(0, stages))
        else:
            for n in stages[0]:
                builder.add_edge(START, n)
        for i, st in enumerate(self._stages):
            src = exits[i]
            last = i == len(self._stages) - 1
            conditional = st.gate is not None or (not last and self._stages[i + 1].when is not None)
            if not conditional:
                if last:
                    for n in src:
                        builder.add_edge(n, END)
                else:
                    for m in stages[i + 1]:
                        builder.add_edge(src if len(src) > 1 else src[0], m)
                continue
            gate = st.gate

            def route(state: Mapping[str, Any], _i: int = i, _gate: Predicate | None = gate) -> list[str]:
                if _gate is not None and not _gate(state):
                    return [END]
                return targets_from(_i + 1, state)

            possible = self._reachable(i + 1, stages) + ([END] if gate is not None else [])
            builder.add_conditional_edges(src[0], route, possible)
        graph = builder.compile(checkpointer=checkpointer, store=store, name=self.name, **kwargs)
        graph.medslm_pipeline = self  # type: ignore[attr-defined]
        graph.medslm_settings = self.settings  # type: ignore[attr-defined]
        return graph

    def _reachable(self, j: int, stages: list[list[str]]) -> list[str]:
        """Nodes the run may go to from before stage ``j`` (skipping stages whose ``when`` fails)."""
        from langgraph.graph import END

        out: list[str] = []
        while j < len(self._stages):
            out.extend(stages[j])
            if self._stages[j].when is None:
                return out
            j += 1
        return [*out, END]

    # ------------------------------------------------------------------ describing
    def describe(self) -> str:
        """One line per node: name, kind, model, policy, reads and writes."""
        return "\n".join(s.summary() for s in self.specs())

    def mermaid(self) -> str:
        """Mermaid text of the compiled graph."""
        return str(self.compile().get_graph().draw_mermaid())

    def __repr__(self) -> str:
        return f"Pipeline({' -> '.join('{' + ', '.join(d.name for d in st.nodes) + '}' for st in self._stages)})"


def _passthrough(state: Mapping[str, Any]) -> dict[str, Any]:
    return {}


__all__ = ["BUILTINS", "OVER_AGENTS", "Pipeline"]
