"""The package's layout stays as built: folders by job, each importing only from the layers
below it (every import statement read with ast, those inside functions included)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tf_translate"

# From the ground floor up; a module may import from its own layer and the ones before it.
LAYERS = [
    {"config", "errors", "registry", "seeding", "replicas", "progress", "quiet"},
    {"nn"},
    {"data"},
    {"methods"},
    {"training"},
    {"export"},
    {"metrics"},
    {"apps", "pretrained"},
    {"cli", "__main__", "__init__"},
]
# The registry finds the methods by importing their package, once, when first asked: the one
# way up, as a plugin registry must (timm's and keras-hub's do the same).
ALLOWED = {("registry", "methods")}
MODULES = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}


def layer(name: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if name in names)


def unit(path: Path) -> str:
    """The layer name of a module file: its folder under tf_translate, or its own name at the top."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_units(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "tf_translate":
                continue
            out.update([parts[1]] if len(parts) > 1 else [alias.name if alias.name in MODULES else "__init__"
                                                          for alias in node.names])
        elif isinstance(node, ast.Import):
            out.update(alias.name.split(".")[1] for alias in node.names
                       if alias.name.startswith("tf_translate.") and alias.name.count(".") >= 1)
    return out


def test_every_module_sits_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer(unit(path))  # StopIteration: a new top-level module or folder missing from LAYERS


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = unit(path)
        for target in imported_units(ast.parse(path.read_text(), str(path))):
            if layer(target) > layer(here) and (here, target) not in ALLOWED:
                upward.append(f"{path.relative_to(PACKAGE.parent)} ({here}) imports {target}")
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import():
    tree = ast.parse("def f():\n    from tf_translate.export import Exported\nfrom tf_translate import nn, train\n")
    assert imported_units(tree) == {"export", "nn", "__init__"}
