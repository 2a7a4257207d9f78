"""Package-wide properties: lazy import, no upward imports between layers, no outputs in
committed notebooks, and the Colab setup cell convention."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"

# Lower number = lower layer. A module may import only from its own layer or below.
LAYERS = {
    "device": 0, "profile": 0, "seed": 0,
    "history": 1, "data": 1, "models": 1, "optim": 1, "surfaces": 1,
    "callbacks": 2, "train": 2, "distributed": 2, "transfer": 2,
    "plots": 3, "widgets": 3, "measure": 3, "summary": 3, "explorer": 3, "compress": 3,
    "transfer_plots": 3,
    "grading": 3,
    "assign": 4,
    "grade": 4,
}


def test_import_is_lazy():
    # Instant import is the point; it is checked as "nothing heavy is imported" (a property of
    # the code) rather than as a time (a property of the machine and its load).
    heavy = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "sklearn")
    code = f"import sys, course_utils; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"import course_utils pulled in {out}"


def test_every_public_name_resolves():
    import course_utils

    for name in course_utils.__all__:
        assert getattr(course_utils, name) is not None, name


def _internal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils."):
            found.add(node.module.split(".")[1])
    return found


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py")
                                        if p.name != "__init__.py" or p.parent != PACKAGE),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_never_import_upward(path):
    module = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    assert module in LAYERS, f"add {module!r} to LAYERS in {Path(__file__).name}"
    for imported in _internal_imports(path):
        if imported == module or imported not in LAYERS:
            continue
        assert LAYERS[imported] <= LAYERS[module], (
            f"{module} (layer {LAYERS[module]}) imports {imported} (layer {LAYERS[imported]})")


NOTEBOOKS = sorted(p for folder in ("chapters", "assignments", "solutions")
                   for p in (ROOT / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def test_there_are_notebooks():
    assert any("00_getting_started" in str(p) for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"cells {dirty} have outputs: clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_opens_with_title_and_colab_cell(path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    setup = next(c for c in cells if c["cell_type"] == "code")
    source = "".join(setup["source"])
    assert '"google.colab" in sys.modules' in source and "%pip install" in source
    assert {"nbval-skip", "colab-setup"} <= set(setup["metadata"].get("tags", []))
