"""A small Sphinx extension with what the course's book needs beyond Jupyter Book's defaults.

* **One execution cache per profile.** myst-nb caches a lesson's outputs keyed by its code,
  not by ``COURSE_PROFILE``; without this a ``smoke`` build would serve its tiny outputs to a
  later ``full`` build. The cache lives in ``_build/.jupyter_cache/<profile>``, and the
  profile is a config value, so switching profiles re-reads every page.
* **Each lesson executed once.** The notebook tests (``make notebooks``) save every lesson
  that passed (``course_utils.executed``); before reading the lessons, the build takes those
  runs into its cache, so a lesson whose code is unchanged since it was tested is shown as
  tested, not executed again. With ``COURSE_BOOK_TESTED_ONLY=1`` (as CI sets it) a lesson
  that would have to be executed here is a warning (an error under ``-W``).
* **Lessons as notebooks to download.** Each lesson page's download menu offers the lesson
  as an ``.ipynb`` file (no outputs), written by jupytext from the lesson's Markdown during
  the build, next to the Markdown source in ``_sources/``.
* **No CDN.** Jupyter Book always loads sphinx-thebe, which writes a script holding a CDN
  address (unpkg) into every page even when live code is off, as it is here; those two
  scripts are dropped from the pages.
* **Local widget scripts.** The ipywidgets manager and RequireJS are served from
  ``_static/widgets`` (see ``fetch_assets.sh``); a missing copy is a build warning (an
  error under ``-W``) that names the command to run, not a page with blank widgets.
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

from course_utils.executed import prime_book_cache
from course_utils.lessons import is_lesson
from course_utils.profiles import current_profile

logger = logging.getLogger(__name__)

WIDGET_FILES = ("widget-setup.js", "require.js", "embed-amd.js")


def set_profile_cache(app: Sphinx, config: Config) -> None:
    config.course_profile = current_profile()
    if not config.nb_execution_cache_path:
        build_dir = Path(app.outdir).parent
        config.nb_execution_cache_path = str(build_dir / ".jupyter_cache" / config.course_profile)
    logger.info(f"[course_book] profile={config.course_profile} cache={config.nb_execution_cache_path}")


def take_in_tested_runs(app: Sphinx, config: Config) -> None:
    primed, missing = prime_book_cache(config.nb_execution_cache_path, config.course_profile)
    app.course_tested_runs = [f"notebooks/{stem}" for stem in primed]
    logger.info(f"[course_book] new tested runs taken in: {', '.join(primed) or 'none'}; "
                f"lessons to execute: {', '.join(missing) or 'none'}")
    if missing and os.environ.get("COURSE_BOOK_TESTED_ONLY") == "1":
        logger.warning(
            f"lessons without a tested run in the {config.course_profile} profile: "
            f"{', '.join(missing)}; run `make notebooks` (same COURSE_PROFILE) before `make book`"
        )


def reread_tested_lessons(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Pages whose lesson has a newly taken-in run are read again, though their text is unchanged."""
    return [doc for doc in getattr(app, "course_tested_runs", []) if doc in env.found_docs]


def offer_lesson_notebook(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Write the lesson as ``_sources/<page>.ipynb`` and list it in the page's download menu."""
    if doctree is None or not pagename.startswith("notebooks/"):
        return
    source = Path(app.env.doc2path(pagename))
    if not is_lesson(source.resolve(), source.resolve().parent):
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(str(source))
    notebook.metadata.pop("jupytext", None)  # a plain notebook, not paired with a text file
    jupytext.write(notebook, str(target), fmt="ipynb")
    context["ipynb_source"] = f"{pagename}.ipynb"  # sphinx-book-theme's notebook download entry


def check_widget_assets(app: Sphinx, config: Config) -> None:
    for static in config.html_static_path:
        folder = Path(app.confdir) / static / "widgets"
        missing = [name for name in WIDGET_FILES if not (folder / name).is_file()]
        if static.startswith("_build") and missing:
            logger.warning(
                f"widget scripts missing from {folder} ({', '.join(missing)}): "
                "run `bash book/fetch_assets.sh` (make book does)"
            )


def drop_thebe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Remove sphinx-thebe's scripts (its loader and the inline CDN address) from a page."""
    scripts = context.get("script_files")
    if not scripts:
        return
    kept = [
        js
        for js in scripts
        if not str(getattr(js, "filename", js) or "").split("?")[0].endswith("sphinx-thebe.js")
        and "THEBE_JS_URL" not in str(getattr(js, "attributes", {}).get("body", ""))
    ]
    scripts[:] = kept


def setup(app: Sphinx) -> dict:
    app.add_config_value("course_profile", "full", "env")
    # priority < 500: before myst-nb reads its configuration
    app.connect("config-inited", set_profile_cache, priority=400)
    app.connect("config-inited", take_in_tested_runs, priority=450)
    app.connect("config-inited", check_widget_assets)
    app.connect("env-get-outdated", reread_tested_lessons)
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    # before sphinx-book-theme (priority 501) builds the download menu
    app.connect("html-page-context", offer_lesson_notebook, priority=450)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
