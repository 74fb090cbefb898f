"""The lesson-15 app served by Voilà and used in a real browser (Chromium via Playwright), offline.

Starts Voilà on a free port of 127.0.0.1 (no token, no browser of its own) with the app
notebook that ``course_utils.app`` extracts from the lesson, in the ``smoke`` profile, and
then, in Chromium:

1. opens the app and waits for its first answer (the first gallery slice): probabilities
   and a Grad-CAM overlay appear;
2. chooses a gallery slice the model gets wrong and one it gets right (found here with the
   same model): the status box is amber and says it disagrees with the folder label, then
   green and says it agrees; then another slice and another model: the app answers for them;
3. uploads a text file, then 12 MB of noise: the error message is shown and the results
   are cleared;
4. uploads a real slice: the app answers again, in a neutral box (no known label), and the
   upload button counts the file shown; then a gallery slice works again;
5. narrows the window to a phone's 390 px: no element is wider than the page, and the
   upload button's label is not cut.

Requests to any other host are blocked, and the page must not make any: it works offline
(the course's page template leaves out the CDN links of Voilà's own). No request fails, the
console shows no error or warning, and the tab shows the app's title. The server and its
kernels are stopped at the end. Needs the trained smoke checkpoints (``make notebooks`` makes them) and the dataset
(``BRAIN_MRI_DIR``); skips with the reason otherwise. Run with ``make book-test`` or
``pytest tests/browser/test_voila_app.py``.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from course_utils import app
from course_utils.data import CLASSES, DatasetNotFoundError, locate_dataset
from course_utils.training import load_lesson_model

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PROFILE = "smoke"
TIMEOUT_MS = 90_000  # the first answer: kernel start, imports, loading a model

pytest.importorskip("voila", reason="Voilà is not installed (pip install voila)")
from playwright.sync_api import sync_playwright  # noqa: E402

MISSING = [lesson for lesson, present in app.available_models(profile=PROFILE).items() if not present]
if len(MISSING) == len(app.MODEL_NAMES):
    pytest.skip(f"no trained model in the {PROFILE} profile: run the lessons first (make notebooks)",
                allow_module_level=True)
try:
    DATASET = locate_dataset()
except DatasetNotFoundError as error:
    pytest.skip(f"the dataset is needed for the gallery: {error}", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Voilà serving the app notebook; yields its URL. Stops the server and its kernels after."""
    folder = tmp_path_factory.mktemp("voila")
    notebook = app.write_app_notebook(folder / "mri_classifier_app.ipynb")
    port = free_port()
    env = {**os.environ, "COURSE_PROFILE": PROFILE, "BRAIN_MRI_DIR": str(DATASET)}
    log = open(folder / "voila.log", "w")
    process = subprocess.Popen(app.voila_command(notebook, port), cwd=folder, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # a static file answers as soon as the server is up, without starting a kernel
            try:
                with urllib.request.urlopen(f"{url}/voila/static/voila.js", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Voilà did not start:\n{(folder / 'voila.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        # The server and the kernels it started share the process group made for it.
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
    assert process.poll() is not None, "Voilà is still running"


@pytest.fixture(scope="module")
def page(server):
    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.remote, page.errors = [], []

        def route(route):
            url = route.request.url
            if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
                route.continue_()
            else:
                page.remote.append(url)
                route.abort()

        page.route("**/*", route)
        page.failed = []  # requests that failed, or that the server answered with an error
        page.on("requestfailed", lambda request: page.failed.append(f"{request.url} ({request.failure})"))
        page.on("response", lambda response: response.status >= 400
                and page.failed.append(f"{response.url} (HTTP {response.status})"))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.console = []
        page.on("console", lambda m: m.type in ("error", "warning") and page.console.append((m.type, m.text)))
        page.goto(server, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        yield page
        browser.close()


STATUS = """([kind, text]) => {
    const box = document.querySelector('.mri-app-status .mri-app-' + kind);
    return !!box && box.innerText.includes(text);
}"""

IMAGES = """() => [...document.querySelectorAll('img.mri-app-chart, img.mri-app-overlay')]
    .map(img => ({cls: img.className, width: img.naturalWidth, visible: img.checkVisibility()}))"""


def wait_for_status(page, kind: str, text: str = "", timeout: int = 30_000) -> str:
    """Wait until the status line is of ``kind`` (agree, disagree, unlabelled, warn, error,
    info) and contains ``text``."""
    try:
        page.wait_for_function(STATUS, arg=[kind, text], timeout=timeout)
    except Exception:
        shown = page.locator(".mri-app-status").inner_text() if page.locator(".mri-app-status").count() else "(no app)"
        raise AssertionError(f"expected a {kind} status containing {text!r}; the page shows: {shown}") from None
    return page.locator(".mri-app-status").inner_text()


def shows_result(page) -> bool:
    images = page.evaluate(IMAGES)
    return len(images) == 2 and all(i["width"] > 100 and i["visible"] for i in images)


def probabilities(page) -> dict[str, float]:
    rows = page.locator("table.mri-app-probabilities tr").all_inner_texts()
    return {row.split()[0]: float(row.split()[-1].rstrip("%")) for row in rows}


def upload(page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator(".mri-app-upload").click()
    chooser.value.set_files(str(path))


@functools.cache
def status_kind(lesson: str, item: app.GalleryItem) -> str:
    """The status the app must show for a gallery slice with ``lesson``'s model: ``"agree"`` or
    ``"disagree"`` (an answer that is, or is not, the slice's folder label) or ``"warn"`` (its
    guard refuses it: it refuses some genuine slices too). Computed here with the same
    checkpoint, validation slices and guard cache as the served app."""
    trained = load_lesson_model(lesson, PROFILE)
    guard = app.load_guard(trained, per_class=app.GUARD_VAL_PER_CLASS[PROFILE])
    analysis = app.analyse(trained, app.load_gallery_image(item), item.title, item.label, guard=guard)
    return "warn" if analysis.rejected else app.answer_status(analysis.top_class, item.label)[0]


ANSWER = ("agree", "disagree")

# Elements that reach past the page's edges, or (inside the app) past the app's own box.
WIDER = """() => {
    const app = document.querySelector('.mri-app').getBoundingClientRect();
    return [...document.querySelectorAll('body *')]
        .map(e => [e, e.getBoundingClientRect(), !!e.closest('.mri-app')])
        .filter(([e, box, inApp]) => box.width > 0
                && (box.left < -0.5 || box.right > window.innerWidth + 0.5
                    || (inApp && (box.left < app.left - 0.5 || box.right > app.right + 0.5))))
        .map(([e, box]) => `${e.tagName}.${e.className}: ${Math.round(box.left)}..${Math.round(box.right)} px`);
}"""


def background(page) -> str:
    """The status box's background colour, as the browser computes it."""
    return page.locator(".mri-app-status div[class^='mri-app-']").first.evaluate(
        "e => getComputedStyle(e).backgroundColor")


def rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)))


def test_app_in_the_browser(page, tmp_path):
    items = app.gallery()
    present = [lesson for lesson, ok in app.available_models(profile=PROFILE).items() if ok]
    default = next(lesson for lesson in app.PREFERRED if lesson in present)
    chosen = present[0]
    answered = [i for i in items if status_kind(default, i) in ANSWER and status_kind(chosen, i) in ANSWER]
    assert len(answered) >= 3, "the guards refuse most gallery slices: see lesson 15's false-reject rate"
    # 1. the first answer: the first gallery slice with the default model (or its refusal)
    first = status_kind(default, items[0])
    status = wait_for_status(page, first, items[0].title, timeout=TIMEOUT_MS)
    assert page.title() == app.PAGE_TITLE
    if first in ANSWER:
        assert "top class" in status
        page.wait_for_function("() => document.querySelectorAll('img.mri-app-overlay').length > 0")
        assert shows_result(page), page.evaluate(IMAGES)
        probs = probabilities(page)
        assert sorted(probs) == sorted(CLASSES) and abs(sum(probs.values()) - 100) < 0.5
    else:
        assert app.REJECT_MESSAGE in status and not shows_result(page)

    # 2. a slice the model gets wrong (amber), one it gets right (green), another slice, another model
    for kind, verb in (("disagree", "disagrees"), ("agree", "agrees")):
        slices = [i for i in items if status_kind(default, i) == kind]
        assert slices, f"no gallery slice where the lesson-{default} model {verb} with the folder label"
        page.locator(".mri-app-gallery select").select_option(label=slices[0].title)
        status = wait_for_status(page, kind, slices[0].title)
        assert f"{verb} with the slice's folder label ({slices[0].label})" in status
        assert background(page) == rgb(app.STATUS_COLOURS[kind][0]), kind
        assert shows_result(page)
    other = answered[-1]
    page.locator(".mri-app-gallery select").select_option(label=other.title)
    wait_for_status(page, status_kind(default, other), other.title)
    assert shows_result(page)
    page.locator(".mri-app-model select").select_option(value=app.MODEL_NAMES[chosen])
    wait_for_status(page, status_kind(chosen, other), f"lesson-{chosen} model")
    assert shows_result(page)

    # 3. a text file: a clear error, no stale result
    text = tmp_path / "notes.txt"
    text.write_text("Patient notes: this is not an image.\n")
    upload(page, text)
    message = wait_for_status(page, "error", "not an image")
    assert "notes.txt" in message
    assert not shows_result(page)

    # a file over the server's default 10 MiB websocket limit still reaches the app's checks
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(12 * 2**20))
    upload(page, noise)
    assert "not an image" in wait_for_status(page, "error", "noise.bin")

    # 4. a real slice as an upload (PNG bytes under a .jpg name), then the gallery again
    scan = tmp_path / "scan.jpg"
    app.load_gallery_image(answered[0]).save(scan, "PNG")
    upload(page, scan)
    status = wait_for_status(page, "unlabelled", "upload scan.jpg")
    assert shows_result(page) and "No known label" in status and "folder label" not in status
    assert background(page) == rgb(app.STATUS_COLOURS["unlabelled"][0])
    assert page.locator(".mri-app-upload").inner_text().strip() == "Upload an image (1)"  # the file shown
    page.locator(".mri-app-gallery select").select_option(label=answered[1].title)
    wait_for_status(page, status_kind(chosen, answered[1]), answered[1].title)
    assert shows_result(page)
    page.wait_for_function("() => document.querySelector('.mri-app-upload').innerText.trim() === 'Upload an image (0)'")

    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)

    # 5. a phone's width: everything reflows inside the page, the upload label is whole
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.wait_for_function(f"() => window.innerWidth === 390 && ({WIDER})().length === 0", timeout=10_000)
    except Exception:
        raise AssertionError(f"elements wider than a 390-px page: {page.evaluate(WIDER)}") from None
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    label = page.locator(".mri-app-upload").evaluate("e => [e.scrollWidth, e.clientWidth, e.innerText]")
    assert label[0] <= label[1] and label[2].startswith("Upload an image"), f"upload label cut: {label}"
    page.screenshot(path=str(tmp_path / "app-390.png"), full_page=True)

    assert not page.errors, f"script errors: {page.errors}"
    assert not page.remote, f"requests to other hosts: {page.remote}"
    assert not page.failed, f"failed requests: {page.failed}"
    console = [f"{kind}: {text}" for kind, text in page.console]
    assert not console, f"console errors or warnings: {console}"
    # the page template drops only JupyterLab's module-version warnings: any other still shows
    with page.expect_console_message(lambda m: m.type == "warning" and m.text == "any other warning"):
        page.evaluate("console.warn('any other warning')")
