"""The package as a learner installs it: a wheel, built offline and installed into a fresh
virtual environment, must import every module and open every data file it reads at run time.

An editable install (``pip install -e .``) reads everything from the project folder, so a data
file missing from ``[tool.setuptools.package-data]`` or a subpackage missing from the wheel
would only show for someone who installed the course the ordinary way. This test is that
someone. It builds with the build tools already installed (``--no-build-isolation``) and
installs with ``--no-deps --no-index``: nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from course_utils.files import project_root

ROOT = project_root()
#: Every file of the package that is not Python source (manifests, the split, the app's page
#: template), relative to course_utils/: each must be declared as package data.
DATA_FILES = tuple(sorted(str(p.relative_to(ROOT / "course_utils")) for p in (ROOT / "course_utils").rglob("*")
                          if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts))

# Runs inside the fresh environment: imports every module of the installed package and reads
# every data file through importlib.resources; prints what it found as JSON.
PROBE = """
import importlib, importlib.resources, json, pkgutil
import course_utils
modules = sorted(m.name for m in pkgutil.walk_packages(course_utils.__path__, "course_utils.")
                 if not m.name.endswith("__main__"))
for name in modules:
    importlib.import_module(name)
files = {name: (importlib.resources.files("course_utils") / name).read_bytes().decode()
         for name in DATA_FILES}
print(json.dumps({"package": course_utils.__file__, "modules": modules, "files": files}))
"""


def _run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel from a clean copy of the sources, install it into a fresh environment
    that sees this interpreter's dependencies (torch, numpy, ...) but not the project, and run
    ``PROBE`` there."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "course_utils", source / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp / "dist", source, cwd=tmp)
    wheel = next((tmp / "dist").glob("neuro_dl_course-*.whl"))

    env_dir = tmp / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip())
    # The dependencies of this interpreter, as a plain path: the .pth files there (among them
    # the project's editable install) are not processed, so only the wheel provides course_utils.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site, wheel, cwd=tmp)
    probe = PROBE.replace("DATA_FILES", repr(DATA_FILES))
    return {"site": site, **json.loads(_run(python, "-c", probe, cwd=tmp))}


def test_the_wheel_is_what_gets_imported(installed):
    assert Path(installed["package"]).is_relative_to(installed["site"])


def test_every_module_imports_from_the_wheel(installed):
    here = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for p in (ROOT / "course_utils").rglob("*.py") if p.name != "__main__.py"}
    assert set(installed["modules"]) | {"course_utils"} == here


def test_every_data_file_is_in_the_wheel(installed):
    assert "data/manifest.csv" in DATA_FILES and "app/jupyter/voila/templates/course/index.html.j2" in DATA_FILES
    for name in DATA_FILES:
        assert installed["files"][name] == (ROOT / "course_utils" / name).read_text(), name
