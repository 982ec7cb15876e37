"""The import direction of the README's "Code map": the shared latent core imports neither
fairseq nor any other part of the package, and no architecture imports another."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "var_attn_plugin"


def imported_modules(path: Path):
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = ["var_attn_plugin", *path.parent.relative_to(PACKAGE).parts]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else []))


@pytest.mark.parametrize("path", sorted((PACKAGE / "latent").glob("*.py")), ids=lambda p: p.name)
def test_the_latent_core_imports_no_fairseq_and_nothing_outside_itself(path):
    for name in imported_modules(path):
        assert not name.startswith("fairseq"), f"{path.name} imports {name}"
        if name.startswith("var_attn_plugin"):
            assert name.startswith("var_attn_plugin.latent"), f"{path.name} imports {name}"


@pytest.mark.parametrize("arch, other", [("lstm", "transformer"), ("transformer", "lstm")])
def test_an_architecture_does_not_import_another(arch, other):
    for path in (PACKAGE / arch).glob("*.py"):
        for name in imported_modules(path):
            assert not name.startswith(f"var_attn_plugin.{other}"), f"{arch}/{path.name} imports {name}"


def module_name(path: Path) -> str:
    parts = ["var_attn_plugin", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """``{module: modules of the package it imports}``, imports inside functions included (a
    name imported from a module counts as that module; the package's ``__init__`` is left out:
    importing any module runs it)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in imported_modules(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported not in (name, "var_attn_plugin"):
                deps.add(imported)
        graph[name] = deps
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state = {}  # module -> "open" while on the stack, "done" after

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, stack + [dep])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_the_package_imports_another_that_imports_it_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_recipes_are_thin_entries_into_python():
    """Logic lives in Python (varattn_experiments), where it is tested: no shell recipe grows
    past 60 lines."""
    long = {str(path.relative_to(PACKAGE.parent)): n for path in (PACKAGE.parent / "examples").rglob("*.sh")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 60}
    assert not long, f"shell recipes over 60 lines: {long}"


def test_the_model_package_holds_no_experiment_tooling():
    assert not (PACKAGE / "benchmark.py").exists()
    for path in PACKAGE.rglob("*.py"):
        assert not any(name.startswith("varattn_experiments") for name in imported_modules(path)), path


def package_sources():
    """``{path relative to the package: source text}`` of every module of the package."""
    return {str(path.relative_to(PACKAGE)): path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def called_names(source: str):
    """The names of the functions and classes a module's source calls (``f(...)``, ``m.f(...)``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                yield func.id
            elif isinstance(func, ast.Attribute):
                yield func.attr


# one piece of each message (error or warning) about the decoding options
DECODING_MESSAGES = (
    "--kmax must be",
    "--eos-penalty must be",
    "--gnmt-lenpen and --lenpen are two length penalties",
    "--latent-decoding dirichlet-mean needs",
    "usually much worse",  # soft attention for a latent model
    "its output layer was trained on",  # enumeration for a soft-attention model
)


@pytest.mark.parametrize("message", DECODING_MESSAGES)
def test_the_decoding_options_are_checked_in_one_module(message):
    """var_attn_plugin/decoding.py resolves and checks the decoding options for every caller
    (start-up, the task's generators, the hub, varattn-translate, the model): no other module
    words a message about them."""
    holders = [path for path, source in package_sources().items() if message in source]
    assert holders == ["decoding.py"], f"{message!r} is in {holders}"


def test_decoding_options_are_made_only_where_they_are_checked():
    """Every DecodingOptions the package decodes with comes out of resolve_decoding_options
    (or is the model's default before a task configures it), both in decoding.py."""
    makers = [path for path, source in package_sources().items() if "DecodingOptions" in called_names(source)]
    assert makers == ["decoding.py"], makers


def test_only_the_loader_loads_checkpoints_for_inference():
    """var_attn_plugin/loading.py is the one caller of fairseq's loaders (the hub,
    varattn-translate, -align, -plot and -diagnose load through it)."""
    loaders = {"load_model_ensemble_and_task", "load_model_ensemble"}
    callers = [path for path, source in package_sources().items() if loaders & set(called_names(source))]
    assert callers == ["loading.py"], callers
