import subprocess
import sys


def test_import_medslm_is_light():
    code = ("import sys, medslm, medslm.models.catalog, medslm.records; "
            "print(sorted(m for m in ('torch','transformers','vllm','ray','spacy','outlines') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _import_graph() -> dict[str, set[str]]:
    """medslm module -> medslm modules it imports (top level or inside functions; not TYPE_CHECKING)."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "medslm"
    mods = {}
    for p in root.rglob("*.py"):
        name = ".".join(p.relative_to(root.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            edges[m].update(t for t in targets if t in mods and t != m)
    return edges


def test_no_import_cycles_and_safety_never_imports_evals():
    edges = _import_graph()
    cycles = []
    for a, outs in edges.items():
        for b in outs:
            seen, todo = set(), [b]  # does b reach a?
            while todo:
                x = todo.pop()
                if x == a:
                    cycles.append((a, b))
                    break
                if x not in seen:
                    seen.add(x)
                    todo.extend(edges[x])
    assert cycles == []
    assert not [(a, b) for a, outs in edges.items() for b in outs
                if a.startswith("medslm.safety") and b.startswith("medslm.evals")]
