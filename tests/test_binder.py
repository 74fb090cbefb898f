"""binder/ (the environment behind the book's Binder button) stays in step with `make setup`.

mybinder.org cannot be reached from the tests, so what they check is what would silently
drift: the PyTorch versions, the install of the course itself, the settings `make lab` copies,
and the configuration the book's Binder button is built from.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
PINNED = re.compile(r"^(torch|torchvision)==(\S+)$", re.M)


def test_binder_installs_the_pytorch_versions_make_setup_installs():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    setup_line = next(line for line in makefile.splitlines() if "pip install torch==" in line)
    wanted = dict(re.findall(r"(torch|torchvision)==(\S+)", setup_line))
    found = dict(PINNED.findall((BINDER / "requirements.txt").read_text(encoding="utf-8")))
    assert wanted and found == wanted, f"binder/requirements.txt pins {found}, make setup {wanted}"


def test_binder_installs_the_course_and_copies_settings_that_exist():
    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & 0o111, "binder/postBuild must be executable"
    text = post_build.read_text(encoding="utf-8")
    assert re.search(r"^pip install .*-e \.$", text, re.M), "postBuild does not install the course"
    copied = re.findall(r"^cp (\S+) ", text, re.M)
    assert "jupyter/overrides.json" in copied, "lessons would open as Markdown, not notebooks"
    for path in copied:
        assert (ROOT / path).is_file(), f"postBuild copies {path}, which does not exist"


def test_binder_python_is_one_the_course_supports():
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    version = tuple(int(x) for x in runtime.removeprefix("python-").split("."))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    minimum = re.search(r'requires-python = ">=(\d+)\.(\d+)"', pyproject).groups()
    assert version >= tuple(int(x) for x in minimum)


def test_the_book_launches_binder_from_this_repository():
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
    assert config["launch_buttons"]["binderhub_url"].startswith("https://")
    url = config["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/?", url), (
        f"repository.url {url!r}: Binder and Colab buttons need a GitHub repository address")
