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
* **Buttons that open the lesson itself.** All are built from ``repository.url`` in
  ``_config.yml``. Jupyter Book would point them at ``book/notebooks/...``, a link in the
  repository; on a lesson page the edit button opens ``notebooks/NN_slug.md``, Binder opens
  that file in JupyterLab (which shows it as a notebook through jupytext; ``binder/`` installs
  the course), and Colab, which opens only ``.ipynb`` files on GitHub, opens the lesson's
  ``.ipynb`` in the published book (``_sources/notebooks/NN_slug.ipynb`` on the branch
  ``course_published_branch``).
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
from urllib.parse import urlparse

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


def lesson_page(app: Sphinx, pagename: str, doctree) -> bool:
    """Whether the page is a lesson (``notebooks/NN_slug``), by the course's one rule."""
    if doctree is None or not pagename.startswith("notebooks/"):
        return False
    source = Path(app.env.doc2path(pagename)).resolve()
    return is_lesson(source, source.parent)


def offer_lesson_notebook(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """List ``_sources/<page>.ipynb`` in the download menu; point the edit button at the lesson.

    Runs before sphinx-book-theme builds its buttons. The edit link is
    ``<doc_path>/<page>.md``; a lesson's page is ``notebooks/NN_slug``, and the file in the
    repository is ``notebooks/NN_slug.md`` (``book/notebooks`` is only a link to it).
    """
    if not lesson_page(app, pagename, doctree):
        return
    context["ipynb_source"] = f"{pagename}.ipynb"  # sphinx-book-theme's notebook download entry
    context["doc_path"] = ""


def write_lesson_notebook(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Write the lesson as ``_sources/<page>.ipynb``: its cells, no outputs.

    Runs after sphinx-book-theme, whose launch buttons copy the executed notebook to the same
    place; the file offered for download is the lesson as a learner starts it.
    """
    if not lesson_page(app, pagename, doctree):
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(app.env.doc2path(pagename))
    notebook.metadata.pop("jupytext", None)  # a plain notebook, not paired with a text file
    jupytext.write(notebook, str(target), fmt="ipynb")


def launch_urls(app: Sphinx, pagename: str) -> dict[str, str]:
    """The Binder and Colab addresses of a lesson, from the book's configuration.

    Binder: the repository at its branch, JupyterLab on ``notebooks/NN_slug.md``. Colab: the
    lesson's ``.ipynb`` as this build writes it, on the branch the built book is published to.
    """
    options = app.config.html_theme_options
    launch = options.get("launch_buttons", {})
    repo_url = options.get("repository_url", "").rstrip("/")
    if not repo_url:  # no repository configured: sphinx-book-theme shows no launch buttons either
        return {}
    org, repo = urlparse(repo_url).path.strip("/").split("/")[:2]
    branch = options.get("repository_branch") or "main"
    urls = {}
    if launch.get("binderhub_url"):
        binder = launch["binderhub_url"].rstrip("/")
        urls["Binder"] = f"{binder}/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/{pagename}.md"
    if launch.get("colab_url"):
        colab = launch["colab_url"].rstrip("/")
        published = app.config.course_published_branch
        urls["Colab"] = f"{colab}/github/{org}/{repo}/blob/{published}/_sources/{pagename}.ipynb"
    return urls


def point_launch_buttons(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Replace the addresses of sphinx-book-theme's Binder and Colab buttons (see ``launch_urls``)."""
    if not lesson_page(app, pagename, doctree):
        return
    urls = launch_urls(app, pagename)
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group["buttons"]:
                if button.get("text") in urls:
                    button["url"] = urls[button["text"]]


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
    app.add_config_value("course_published_branch", "gh-pages", "html")
    # priority < 500: before myst-nb reads its configuration
    app.connect("config-inited", set_profile_cache, priority=400)
    app.connect("config-inited", take_in_tested_runs, priority=450)
    app.connect("config-inited", check_widget_assets)
    app.connect("env-get-outdated", reread_tested_lessons)
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    # before sphinx-book-theme (priority 501) builds the download menu and the edit link
    app.connect("html-page-context", offer_lesson_notebook, priority=450)
    # after it: its launch buttons copy the executed notebook over _sources/<page>.ipynb
    app.connect("html-page-context", write_lesson_notebook, priority=600)
    app.connect("html-page-context", point_launch_buttons, priority=600)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
