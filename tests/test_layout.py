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
