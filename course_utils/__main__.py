"""``python -m course_utils``: the map of the package, room by room, and where to read more."""

from __future__ import annotations

import importlib
import pkgutil

import course_utils

ROOMS = ("data", "numpy_nn", "models", "training", "explain", "widgets", "app")
DIRECTION = "app, widgets -> explain -> training -> models -> data, numpy_nn -> course machinery"


def summary(module_name: str) -> str:
    """The first line of a module's docstring."""
    doc = importlib.import_module(module_name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def course_map() -> str:
    """Every room of ``course_utils`` and its modules, each with the first line of its docstring."""
    lines = ["course_utils: the one library the lessons share.", ""]
    machinery = [m.name for m in pkgutil.iter_modules(course_utils.__path__) if not m.ispkg and m.name != "__main__"]
    lines.append("course machinery: " + ", ".join(sorted(machinery)))
    for room in ROOMS:
        package = f"course_utils.{room}"
        lines += ["", f"{room}/  {summary(package)}"]
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if info.name != "__main__":
                lines.append(f"    {info.name:<20} {summary(f'{package}.{info.name}')}")
    lines += ["", f"imports point one way: {DIRECTION}",
              "More in CONTRIBUTING.md (\"The map of course_utils\") in the course's repository."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(course_map())
