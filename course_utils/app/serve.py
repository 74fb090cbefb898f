"""Standalone: the lesson's cells tagged ``app``, served by Voilà as a web page.

``python -m course_utils.app serve`` extracts them into a small notebook and serves it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..files import atomic_write_text, project_root
from ..profiles import current_profile


# ------------------------------------------------------------------------------------------
# Standalone: the lesson's app cells, served by Voilà
# ------------------------------------------------------------------------------------------

LESSON = "notebooks/15_mri_classifier_app.md"
APP_TAG = "app"


def app_notebook(lesson: str | Path | None = None, tag: str = APP_TAG):
    """The cells of the lesson tagged ``tag``, as a notebook (read with jupytext)."""
    import jupytext  # here: only for the Voilà app
    import nbformat  # here: only for the Voilà app

    source = jupytext.read(str(lesson or project_root() / LESSON))
    cells = [c for c in source.cells if tag in c.metadata.get("tags", [])]
    if not any(c.cell_type == "code" for c in cells):
        raise ValueError(f"no code cell tagged {tag!r} in {lesson or LESSON}")
    notebook = nbformat.v4.new_notebook(metadata={"title": PAGE_TITLE, "kernelspec": source.metadata.get(
        "kernelspec", {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"})})
    for cell in cells:
        cell.metadata.pop("tags", None)
        notebook.cells.append(cell)
    return notebook


def write_app_notebook(path: str | Path, lesson: str | Path | None = None) -> Path:
    """Write ``app_notebook(lesson)`` to ``path`` (an ``.ipynb``) and return the path."""
    import nbformat  # here: only for the Voilà app

    return atomic_write_text(path, nbformat.writes(app_notebook(lesson)).rstrip("\n") + "\n")


# The server drops websocket messages over 10 MiB (tornado's default), and with them any
# larger upload, silently. Voilà gets a limit above MAX_BYTES, so the app can say "too large".
WEBSOCKET_MAX_BYTES = 100 * 1024 * 1024

# The page template: Voilà's "lab" template without its requests to a CDN (it lives in
# TEMPLATE_ROOT/voila/templates/course/, package data of course_utils.app).
TEMPLATE = "course"
TEMPLATE_ROOT = Path(__file__).resolve().parent / "jupyter"
#: JupyterLab extensions of the course's environment that are for JupyterLab itself: in Voilà's
#: page jupytext's fails to load (it needs JupyterLab's document manager), with a console error.
LAB_ONLY_EXTENSIONS = ("jupyterlab-jupytext", "@voila-dashboards/jupyterlab-preview")
#: The browser tab's title (Voilà shows the notebook's ``title`` metadata).
PAGE_TITLE = "Brain MRI classifier (a teaching demo, not a diagnostic tool) | Neuro-DL Course"


def voila_command(notebook: str | Path, port: int = 8866, ip: str = "127.0.0.1", browser: bool = False) -> list[str]:
    """The command line that serves ``notebook`` with Voilà on ``ip:port`` (no token).

    It is ``voila NOTEBOOK --port=PORT --Voila.ip=IP [--no-browser]`` with two settings more:
    the websocket message limit, given as a number (on the command line, traitlets would
    only take it as a deprecated dict literal or as a string); the course's page template
    (``TEMPLATE``, found through ``JUPYTER_PATH``), which works offline; and the JupyterLab
    extensions the page must not load (``LAB_ONLY_EXTENSIONS``).
    """
    launch = ("import os, sys; "
              f"os.environ['JUPYTER_PATH'] = os.pathsep.join(filter(None, [{str(TEMPLATE_ROOT)!r}, "
              "os.environ.get('JUPYTER_PATH')])); "
              "from voila.app import Voila; Voila.launch_instance(sys.argv[1:], "
              f"tornado_settings={{'websocket_max_message_size': {WEBSOCKET_MAX_BYTES}}})")
    command = [sys.executable, "-c", launch, str(notebook), f"--port={port}", f"--Voila.ip={ip}",
               f"--template={TEMPLATE}", "--show_tracebacks=True"]
    command += [f"--VoilaConfiguration.extension_denylist={name}" for name in LAB_ONLY_EXTENSIONS]
    return command if browser else command + ["--no-browser"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.app",
                                     description="The lesson-15 MRI classifier app as a standalone web page (Voilà).")
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebook", help="write the app notebook (the lesson's cells tagged 'app')")
    nb.add_argument("path", nargs="?", default=str(project_root() / "build" / "app" / "mri_classifier_app.ipynb"))
    serve = sub.add_parser("serve", help="write the app notebook and serve it with Voilà")
    serve.add_argument("--port", type=int, default=8866)
    serve.add_argument("--ip", default="127.0.0.1")
    serve.add_argument("--browser", action="store_true", help="open a browser too")
    args = parser.parse_args(argv)
    if args.command == "notebook":
        print(write_app_notebook(args.path))
        return 0
    path = write_app_notebook(project_root() / "build" / "app" / "mri_classifier_app.ipynb")
    command = voila_command(path, args.port, args.ip, args.browser)
    print(f"Serving {path} at http://{args.ip}:{args.port}/ (profile {current_profile()}); Ctrl+C stops it.",
          flush=True)
    os.execv(command[0], command)
    return 0  # not reached
