"""The package's layout is its architecture: imports point one way, and the map lists every module."""

from __future__ import annotations

import ast
from pathlib import Path

from course_utils.__main__ import ROOMS, course_map
from course_utils.files import project_root
from course_utils.lessons import lessons, read_lesson

PACKAGE = project_root() / "course_utils"
# Higher layers may import lower ones, never the reverse (CONTRIBUTING.md, "The map of course_utils").
LAYER = {"app": 5, "widgets": 5, "explain": 4, "training": 3, "models": 2, "data": 1, "numpy_nn": 1}
REACHES_UP = {"course_utils.benchmarks"}  # times lesson 08's training run: data, models, training


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYER) else "machinery"


def _imported(path: Path) -> list[str]:
    """The course_utils modules ``path`` imports (relative imports resolved)."""
    module = _module(path).split(".")
    package = module[:-1]  # the package of a module, or the package itself for its __init__
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            found.append(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils"):
            found.append(node.module)
    return found


def test_imports_point_down_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module(path).removesuffix(".__init__")
        if module in REACHES_UP or path.name == "__main__.py":
            continue
        here = LAYER.get(_room(module), 0)
        for target in _imported(path):
            there = LAYER.get(_room(target), 0)
            if _room(target) != _room(module) and there >= here:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_the_map_lists_every_module():
    text = course_map()
    for room in ROOMS:
        assert f"{room}/" in text
        for path in (PACKAGE / room).glob("*.py"):
            if path.stem not in ("__init__", "__main__"):
                assert f"    {path.stem} " in text, f"{room}/{path.name} is not on the map"


# A lesson may write by hand what it teaches, or a local helper that only shares a name.
LESSON_OWN = {("06_from_numpy_to_pytorch.md", "evaluate"),   # the PyTorch loop, written out to be read
              ("10_transfer_learning.md", "fine_tune"),      # its three fine-tuning runs, not pruning's
              ("14_pruning_and_speed.md", "accuracy")}       # validation and test accuracy of a model


def _library_functions() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                names.add(node.name)
    return names


def test_no_lesson_redefines_a_library_function():
    library = _library_functions()
    found = []
    for path in lessons():
        for cell in read_lesson(path).cells:
            if cell.cell_type != "code":
                continue
            source = "\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!")))
            for node in ast.parse(source).body:
                if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in library
                        and (path.name, node.name) not in LESSON_OWN):
                    found.append(f"{path.name} defines {node.name}")
    assert not found, "use the library's instead:\n" + "\n".join(found)
