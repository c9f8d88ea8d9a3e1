"""The shape of srlib, checked: the import graph (no cycle, no upward import), module and function sizes, line width.

    python .ci/architecture.py          # prints the summary; exit status 1 when a rule is broken

Floors (``FLOORS``, lowest first): a module may import from its own floor and the floors below, never from a floor
above. Every import counts, also one inside a function. A package's ``__init__`` is the package itself; importing
``srlib.a.b`` is an arrow to ``srlib.a.b`` only (Python runs ``srlib/a/__init__.py`` first, but that is no arrow of
the importer's making). Rules: no cycle among modules and none among packages, no upward arrow, every module at
most ``MAX_MODULE_LINES`` lines, every function at most ``MAX_FUNCTION_LINES`` lines (``def`` to its last line,
docstring included), every line of code at most ``MAX_LINE`` characters. ``tests/test_architecture.py`` runs it.
"""

import ast
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_LINE = 120
# floor: (name, module prefixes); the longest prefix naming a module decides its floor
FLOORS = (
    ("config", ("srlib", "srlib.config")),
    ("foundations", ("srlib.files", "srlib.identity", "srlib.palette", "srlib.wiring", "srlib.compat")),
    ("domain", ("srlib.data", "srlib.models", "srlib.losses", "srlib.metrics", "srlib.inference", "srlib.cost",
                "srlib.pictures", "srlib.sweep")),
    ("tracking", ("srlib.tracking",)),
    ("run directory", ("srlib.rundir",)),
    ("run", ("srlib.registries", "srlib.evaluate", "srlib.train")),
    ("report", ("srlib.report",)),
    ("command line", ("srlib.cli", "srlib.__main__")),
)
CODE = ("srlib/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "workflow/**/*.py", "workflow/**/*.smk",
        ".ci/*.py", "Snakefile")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = REPO) -> dict[str, Path]:
    """srlib's modules: dotted name -> file."""
    return {module_name(path, root): path for path in sorted((root / "srlib").rglob("*.py"))}


def imports(path: Path, known: dict) -> set[str]:
    """The srlib modules a file imports (``from srlib.a import b`` names ``srlib.a.b`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in known:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                      for alias in node.names}
    return found


def floor(module: str) -> int:
    """Index of the module's floor in FLOORS; ValueError for a module no floor names."""
    best = max(((len(prefix), index) for index, (_, prefixes) in enumerate(FLOORS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    if best is None:
        raise ValueError(f"{module}: on no floor; add it to FLOORS in {Path(__file__).name}")
    return best[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node, or a node importing itself (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package(module: str) -> str:
    """The package a module belongs to: 'srlib.rundir.lock' -> 'srlib.rundir'; top-level modules are their own."""
    return ".".join(module.split(".")[:2])


def functions(path: Path):
    """(qualified name, lines) of every function and method in a file."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                yield f"{prefix}{child.name}", child.end_lineno - start + 1
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")

    yield from walk(ast.parse(path.read_text()), "")


def long_lines(root: Path = REPO) -> list[str]:
    files = sorted({path for pattern in CODE for path in root.glob(pattern)})
    return [f"{path.relative_to(root)}:{number}: {len(line)} characters" for path in files
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > MAX_LINE]


def report(root: Path = REPO) -> tuple[list[str], list[str]]:
    """(summary lines, problems): the import graph, sizes and line widths of the checkout at ``root``."""
    known = modules(root)
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    problems = [str(error) for error in _floor_errors(known)]
    if problems:
        return [], problems
    upward = [f"{a} ({FLOORS[floor(a)][0]}) -> {b} ({FLOORS[floor(b)][0]})"
              for a in sorted(graph) for b in sorted(graph[a]) if floor(b) > floor(a)]
    module_cycles = cycles(graph)
    packages = defaultdict(set)
    for a, targets in graph.items():
        packages[package(a)] |= {package(b) for b in targets if package(b) != package(a)}
    package_cycles = cycles(packages)
    sizes = {name: len(path.read_text().splitlines()) for name, path in known.items()}
    lengths = sorted(((lines, f"{name}.{function}") for name, path in known.items()
                      for function, lines in functions(path)), reverse=True)
    widths = long_lines(root)
    largest = max(sizes, key=sizes.get)
    summary = [
        f"modules: {len(known)}, import arrows: {sum(map(len, graph.values()))}",
        *(f"floor {i} {name}: {', '.join(sorted(m for m in known if floor(m) == i))}"
          for i, (name, _) in enumerate(FLOORS)),
        f"module cycles: {len(module_cycles)}", *(f"  {' <-> '.join(c)}" for c in module_cycles),
        f"package cycles: {len(package_cycles)}", *(f"  {' <-> '.join(c)}" for c in package_cycles),
        f"upward imports: {len(upward)}", *(f"  {arrow}" for arrow in upward),
        f"largest module: {largest} ({sizes[largest]} lines); over {MAX_MODULE_LINES}: "
        f"{[n for n in sorted(sizes) if sizes[n] > MAX_MODULE_LINES] or 'none'}",
        f"longest function: {lengths[0][1]} ({lengths[0][0]} lines); over {MAX_FUNCTION_LINES}: "
        f"{[name for lines, name in lengths if lines > MAX_FUNCTION_LINES] or 'none'}",
        f"lines over {MAX_LINE} characters: {len(widths)}", *(f"  {line}" for line in widths),
    ]
    problems = [*(f"cycle: {c}" for c in module_cycles + package_cycles), *(f"upward: {a}" for a in upward),
                *(f"{n}: {sizes[n]} lines" for n in sizes if sizes[n] > MAX_MODULE_LINES),
                *(f"{name}: {lines} lines" for lines, name in lengths if lines > MAX_FUNCTION_LINES), *widths]
    return summary, problems


def _floor_errors(known):
    for name in known:
        try:
            floor(name)
        except ValueError as error:
            yield error


def main() -> int:
    summary, problems = report()
    print("\n".join(summary))
    if problems:
        print(f"\n{len(problems)} problem(s):\n" + "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
