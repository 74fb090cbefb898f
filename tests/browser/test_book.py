"""The built book, opened in a real browser (Chromium driven by Playwright), offline.

Serves ``book/_build/html`` on 127.0.0.1 and opens every page. A page passes when

* every request it makes succeeds and goes to the local server (anything else is blocked
  and reported: the book must not need a CDN);
* no script on it throws;
* its math is typeset by MathJax (no raw ``$$`` or ``\\(`` left in the text);
* every image has loaded (``naturalWidth > 0``);
* its widgets (sliders, progress bars saved in the notebook) are drawn by the widget manager,
  and every progress bar of a lesson is drawn full and not red (a finished run);
* exercise solutions (cells tagged ``hide-cell``) are collapsed toggles that open on a click;
* its favicon, fetched by the page, is served (no 404 on any page).

On every lesson page the ``.ipynb`` in the download menu, fetched by the page, is a valid
nbformat-4 notebook with the lesson's code, and the Binder, Colab, repository, edit and issue
buttons point at the addresses built from ``repository.url`` in ``book/_config.yml``.

On a 1280-pixel screen every figure of a lesson (an image in a cell's output) is a numbered,
captioned figure ("Fig. N") with alt text that describes it (not a file name), shown at no
less than 60 % of the width it was drawn at; a slider section shows one figure and no
controls (the sliders live only where a kernel runs). Every citation link leads to an entry of
the References page. On a 390-pixel phone screen no page is wider than the screen: only code,
math and tables scroll sideways, inside their own boxes, and the caption of a figure shown
smaller than drawn says that a tap shows it at full size.

The navigation must list every lesson in ``notebooks/``. Screenshots of the introduction and
of a lesson go to ``book/_build/screenshots/``, and of every lesson at both widths (the whole
page, in parts of 6000 pixels, JPEG) to ``book/_build/screenshots/lessons/`` for a reader to
check by eye.

Run with ``make book-test`` (after ``make book``); ``make unit`` does not collect this file.
Skips only when the book has not been built. Uses Debian's Chromium (``/usr/bin/chromium``,
or ``$CHROMIUM``); Playwright's own browser download is not needed.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "book" / "_build" / "html"
SCREENSHOTS = ROOT / "book" / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CDN_HOSTS = ("unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "googleapis.com", "mathjax.org")

if not (HTML / "index.html").is_file():
    pytest.skip(f"the book is not built ({HTML} is missing): run `make book` first",
                allow_module_level=True)

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402  (only needed once built)


def built_pages() -> list[str]:
    """Every HTML page of the book, relative to the site root (assets excluded)."""
    skip = ("_static/", "_sources/", "_images/")
    pages = [p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")]
    return sorted(p for p in pages if not p.startswith(skip))


def lessons() -> list[str]:
    """The lessons in notebooks/, as their page paths (``notebooks/NN_slug.html``)."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("*.md")):
        head = path.read_text(encoding="utf-8")[:400]
        if head.startswith("---") and "jupytext:" in head:
            found.append(f"notebooks/{path.stem}.html")
    return found


PAGES = built_pages()
LESSON_PAGES = lessons()


def configured_links(lesson_page: str) -> dict[str, str]:
    """The buttons' addresses a lesson page must have, from ``book/_config.yml`` alone."""
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text(encoding="utf-8"))
    repo_url = config["repository"]["url"].rstrip("/")
    org, repo = urlparse(repo_url).path.strip("/").split("/")[:2]
    branch = config["repository"]["branch"]
    launch = config["launch_buttons"]
    published = config["sphinx"]["config"]["course_published_branch"]
    lesson = lesson_page.removesuffix(".html")  # notebooks/NN_slug
    return {
        "source-repository-button": repo_url,
        "source-edit-button": f"{repo_url}/edit/{branch}/{lesson}.md",
        "source-issues-button": f"{repo_url}/issues/new",  # then the page's title, in the query
        "Binder": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/{lesson}.md",
        "Colab": f"{launch['colab_url'].rstrip('/')}/github/{org}/{repo}/blob/{published}/_sources/{lesson}.ipynb",
    }


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


# JavaScript run in the page -------------------------------------------------------------

WAIT_FOR_MATHJAX = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
}"""

# Text outside code blocks that still looks like TeX source means math was not typeset.
RAW_TEX = """() => {
    const root = document.querySelector('article') || document.body;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const bad = [];
    while (walker.nextNode()) {
        const node = walker.currentNode;
        if (node.parentElement.closest('pre, code, script, style, mjx-container, .highlight')) continue;
        const text = node.textContent;
        if (text.includes('$$') || text.includes('\\\\(') || text.includes('\\\\[')) bad.push(text.trim().slice(0, 80));
    }
    return bad;
}"""

MATH_STATE = """() => {
    const math = [...document.querySelectorAll('article .math')];
    return {total: math.length,
            typeset: math.filter(m => m.querySelector('mjx-container')).length};
}"""

IMAGES = """() => [...document.images].map(img => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth}))"""

# Exercise solutions (cells tagged hide-cell) must start collapsed, behind a toggle.
SOLUTIONS = """() => [...document.querySelectorAll('.cell.tag_hide-cell')].map(cell => {
    const details = cell.querySelector('details');
    const input = cell.querySelector('.cell_input');
    return {toggle: !!details, open: !!(details && details.open),
            visible: !!(input && input.checkVisibility())};
})"""

# The favicon, fetched by the page itself: a missing one is a failed request (HTTP 404) that
# headless Chromium would not otherwise make.
FETCH_ICONS = """async () => Promise.all([...document.querySelectorAll('link[rel~="icon"]')].map(async link => {
    const response = await fetch(link.href);
    const body = await response.arrayBuffer();
    return {href: link.href, status: response.status, type: response.headers.get('content-type'),
            bytes: body.byteLength};
}))"""

# The .ipynb in the download menu, fetched as a reader's click would.
FETCH_NOTEBOOK = """async () => {
    const link = document.querySelector('.dropdown-download-buttons a.btn-download-notebook-button');
    if (!link) return null;
    const response = await fetch(link.href);
    return {href: link.href, status: response.status, text: await response.text()};
}"""

# Launch buttons by their text (Binder, Colab); repository buttons by their label.
BUTTONS = """() => {
    const links = {};
    for (const a of document.querySelectorAll('.dropdown-launch-buttons a')) links[a.textContent.trim()] = a.href;
    for (const label of ['source-repository-button', 'source-edit-button', 'source-issues-button']) {
        const a = document.querySelector('a.btn-' + label);
        if (a) links[label] = a.href;
    }
    return links;
}"""

WIDGET_VIEWS = "() => document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length"

WIDGETS_DRAWN = """() => [...document.querySelectorAll('.widget-subarea')]
    .filter(w => w.querySelector('.jupyter-widgets, .widget-box, .lm-Widget')).length"""

# Every image of the article: its alt text and how much of its drawn width the page shows.
# ``solution``: inside a collapsed exercise solution (not a figure of the lesson's text).
FIGURES = """() => [...document.querySelectorAll('article img')].map(img => {
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption');
    return {src: (img.currentSrc || img.src).split('/').pop(), alt: img.getAttribute('alt'),
            output: !!img.closest('.cell_output'), solution: !!img.closest('.tag_hide-cell'),
            shown: img.getBoundingClientRect().width, natural: img.naturalWidth,
            caption: caption ? caption.textContent.trim().replace(/\\s+/g, ' ') : null};
})"""

# Progress bars as drawn: label, fill (per cent of the track), style and height on the page.
PROGRESS = """() => [...document.querySelectorAll('article .widget-hprogress, article .widget-vprogress')].map(w => {
    const bar = w.querySelector('.progress-bar'), box = w.closest('.widget-hbox, .widget-box') || w;
    return {text: box.textContent.trim().replace(/\\s+/g, ' ').slice(0, 120),
            fill: bar ? parseFloat(bar.style.width || '0') : null,
            danger: !!(bar && bar.className.includes('danger')),
            height: w.getBoundingClientRect().height};
})"""

# On a phone, the caption of each figure shown smaller than drawn (course.js marks it) says that
# a tap shows it at full size (course.css).
ZOOM_HINTS = """() => [...document.querySelectorAll('figure')].filter(f => f.querySelector('img.course-zoomable'))
    .map(f => f.querySelector('figcaption')).filter(c => c).map(c => getComputedStyle(c, '::after').content)"""

# Live controls drawn on the static page (slider, dropdown, interact panel): none may remain.
CONTROLS = """() => [...document.querySelectorAll(
    'article .widget-slider, article .widget-dropdown, article .widget-interact, article .widget-upload')]
    .filter(w => !w.closest('.course-app-picture')).length"""

# Elements that make the page wider than the screen. An element inside a box that scrolls or
# clips sideways (code, display math, a results table) does not widen the page.
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const clipped = el => {
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
            const style = getComputedStyle(p);
            if (/(auto|scroll|hidden|clip)/.test(style.overflowX)) return true;
        }
        return false;
    };
    const bad = [];
    for (const el of document.querySelectorAll('body *')) {
        const box = el.getBoundingClientRect();
        if (box.width === 0 || box.right <= width + 1 || box.left >= width) continue;
        const style = getComputedStyle(el);
        if (style.visibility === 'hidden' || style.position === 'fixed' || clipped(el)) continue;
        bad.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} right=${Math.round(box.right)}`);
    }
    return {page: document.documentElement.scrollWidth, screen: width, wider: bad.slice(0, 8)};
}"""

CITATIONS = "() => [...document.querySelectorAll('article a.course-cite')].map(a => a.getAttribute('href'))"


# Visiting a page ------------------------------------------------------------------------
#
# A page is ready when the conditions the checks read are true: MathJax has typeset the page,
# every saved widget view is drawn, every image has finished (loaded or failed) and the web
# fonts are settled. The test waits for exactly these, never for network silence or a fixed
# time: a font or script still in flight elsewhere must not decide whether the book passes.

ALL_IMAGES_DONE = "() => [...document.images].every(img => img.complete)"
FONTS_SETTLED = "async () => { await document.fonts.ready; return document.fonts.status; }"
READY_TIMEOUT_MS = 30_000


def settle(page) -> int:
    """Wait until the page is ready (see above); return the number of saved widget views.

    A condition that does not come true in time is not an error here: the test that reads
    it (widgets drawn, images loaded) reports the page with its numbers.
    """
    page.evaluate(WAIT_FOR_MATHJAX)
    views = page.evaluate(WIDGET_VIEWS)
    conditions = [ALL_IMAGES_DONE]
    if views:
        conditions.append(f"() => ({WIDGETS_DRAWN})() >= {views}")
    for condition in conditions:
        try:
            page.wait_for_function(condition, timeout=READY_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            pass
    page.evaluate(FONTS_SETTLED)
    page.evaluate(WAIT_FOR_MATHJAX)  # widget labels are typeset through MathJax too
    return views


REFRESH = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def redirect_target(page_path: str) -> str | None:
    """The page a forwarding page (``<meta http-equiv="Refresh">``) sends the reader to."""
    match = REFRESH.search((HTML / page_path).read_text(encoding="utf-8")[:2000])
    if not match:
        return None
    return (Path(page_path).parent / match.group(1)).as_posix().removeprefix("./")


def open_page(context, server: str, page_path: str, report: dict):
    """Open a page of the book with every request to another host blocked and recorded.

    Blocking (rather than letting the browser try) keeps a page from waiting on a host that
    cannot be reached offline; ``report`` collects what went wrong for the tests to assert.
    """
    page = context.new_page()

    def route(route):
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or urlparse(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            report["remote"].append(url)
            route.abort()

    page.route("**/*", route)
    page.on("requestfailed", lambda r: report["failed"].append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and report["failed"].append(f"{r.url} (HTTP {r.status})"))
    page.on("pageerror", lambda e: report["errors"].append(str(e)))
    page.on("console", lambda m: m.type == "error" and report["console"].append(m.text))
    page.goto(f"{server}/{page_path}", wait_until="load", timeout=60_000)
    target = redirect_target(page_path)
    if target:  # a page that only forwards (index.html): wait for the page it forwards to
        page.wait_for_url(f"{server}/{target}", wait_until="load", timeout=60_000)
    report["widget_views"] = settle(page)
    return page


def new_report() -> dict:
    return {"failed": [], "remote": [], "errors": [], "console": []}


@pytest.fixture(scope="module")
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="module")
def visit(server, context):
    """Open a page once and report what happened; reports are cached per page."""
    cache: dict[str, dict] = {}

    def _visit(page_path: str) -> dict:
        if page_path in cache:
            return cache[page_path]
        report = new_report()
        page = open_page(context, server, page_path, report)
        report["widgets_drawn"] = page.evaluate(WIDGETS_DRAWN)
        report["math"] = page.evaluate(MATH_STATE)
        report["raw_tex"] = page.evaluate(RAW_TEX)
        report["images"] = page.evaluate(IMAGES)
        report["figures"] = page.evaluate(FIGURES)
        report["controls"] = page.evaluate(CONTROLS)
        report["progress"] = page.evaluate(PROGRESS)
        report["citations"] = page.evaluate(CITATIONS)
        report["solutions"] = page.evaluate(SOLUTIONS)
        if report["solutions"]:  # one toggle opens on a click and shows the code
            page.locator(".cell.tag_hide-cell details > summary").first.click()
            report["solution_opens"] = page.locator(".cell.tag_hide-cell .cell_input").first.is_visible()
        report["icons"] = page.evaluate(FETCH_ICONS)
        if page_path in LESSON_PAGES:
            report["notebook"] = page.evaluate(FETCH_NOTEBOOK)
            report["buttons"] = page.evaluate(BUTTONS)
        report["nav"] = page.evaluate(
            "() => [...document.querySelectorAll('nav.bd-docs-nav a.reference.internal')]"
            ".map(a => new URL(a.href).pathname)")
        page.close()
        cache[page_path] = report
        return report

    return _visit


# Tests ----------------------------------------------------------------------------------


def test_every_lesson_is_built():
    missing = [lesson for lesson in lessons() if lesson not in PAGES]
    assert not missing, f"lessons without a page (rebuild the book): {missing}"


def test_html_names_no_remote_script_style_or_cdn():
    """No page loads a script, style sheet, font or image from another host, or names a CDN."""
    resource = re.compile(r"<(?:script|img|iframe|source|link)\b[^>]*?(?:src|href)=\"(https?:)?//", re.I)
    offenders = []
    for page in PAGES:
        text = (HTML / page).read_text(encoding="utf-8")
        for tag in re.findall(r"<(?:script|img|iframe|source|link)\b[^>]*>", text, flags=re.I):
            if resource.match(tag) and not tag.lower().startswith("<link rel=\"canonical\""):
                offenders.append(f"{page}: {tag[:120]}")
        offenders += [f"{page}: names {host}" for host in CDN_HOSTS if host in text]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("page_path", PAGES)
def test_page_loads_offline(visit, page_path):
    report = visit(page_path)
    assert not report["remote"], f"requests to other hosts: {report['remote']}"
    assert not report["failed"], f"failed requests: {report['failed']}"
    assert not report["errors"], f"script errors: {report['errors']}"
    assert not report["console"], f"console errors: {report['console']}"


@pytest.mark.parametrize("page_path", PAGES)
def test_math_is_typeset(visit, page_path):
    report = visit(page_path)
    math = report["math"]
    assert math["typeset"] == math["total"], f"{math['total'] - math['typeset']} formulas not typeset"
    assert not report["raw_tex"], f"raw TeX left in the text: {report['raw_tex'][:5]}"


@pytest.mark.parametrize("page_path", PAGES)
def test_images_load(visit, page_path):
    broken = [img["src"][:100] for img in visit(page_path)["images"]
              if not img["complete"] or img["width"] == 0]
    assert not broken, f"images that did not load: {broken}"


@pytest.mark.parametrize("page_path", PAGES)
def test_widgets_render(visit, page_path):
    report = visit(page_path)
    assert report["widgets_drawn"] == report["widget_views"], (
        f"{report['widget_views']} widgets saved, {report['widgets_drawn']} drawn")


@pytest.mark.parametrize("page_path", [p for p in PAGES if p.startswith("notebooks/")])
def test_solutions_are_collapsed_toggles(visit, page_path):
    report = visit(page_path)
    solutions = report["solutions"]
    assert all(s["toggle"] for s in solutions), "a hide-cell cell without a toggle"
    assert not any(s["open"] or s["visible"] for s in solutions), "a solution is visible before a click"
    if solutions:
        assert report["solution_opens"], "clicking the toggle does not show the solution"


def test_navigation_lists_every_lesson(visit):
    nav = visit("intro.html")["nav"]
    for lesson in lessons():
        assert nav.count(f"/{lesson}") == 1, f"{lesson} appears {nav.count('/' + lesson)} times in the navigation"
    assert "/references.html" in nav


def test_the_course_has_math_images_and_widgets(visit):
    """Guards the checks above against passing vacuously: the lessons do use all three."""
    reports = [visit(p) for p in PAGES if p.startswith("notebooks/")]
    if not reports:
        pytest.skip("no lessons yet")
    assert sum(r["math"]["total"] for r in reports) > 0
    assert sum(len(r["images"]) for r in reports) > 0
    if any("interact" in (ROOT / p.replace(".html", ".md")).read_text(encoding="utf-8")
           for p in PAGES if p.startswith("notebooks/")):
        assert sum(r["widgets_drawn"] for r in reports) > 0


def test_screenshots(server, context, visit):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    built_lessons = [p for p in lessons() if p in PAGES]
    # a lesson with widgets if there is one: the most demanding page to render
    with_widgets = [p for p in built_lessons if visit(p)["widgets_drawn"]]
    shots = {"intro.png": "intro.html"}
    if built_lessons:
        shots["lesson.png"] = (with_widgets or built_lessons)[0]
    for name, page_path in shots.items():
        report = new_report()
        page = open_page(context, server, page_path, report)
        page.screenshot(path=str(SCREENSHOTS / name))
        if name == "lesson.png" and with_widgets:
            widget = page.locator(".widget-subarea").last
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(SCREENSHOTS / "widget.png"))
        page.close()
        assert (SCREENSHOTS / name).stat().st_size > 10_000
        assert not report["remote"] and not report["failed"], f"{page_path}: {report}"


@pytest.mark.parametrize("page_path", [p for p in PAGES if redirect_target(p) is None])
def test_favicon_and_logo_exist(page_path):
    """Every page names a favicon and shows the logo, and both files are in the built site."""
    text = (HTML / page_path).read_text(encoding="utf-8")
    icon = re.search(r'<link rel="icon" href="([^"]+)"', text)
    logo = re.search(r'<img src="([^"]+)" class="logo__image', text)
    assert icon and logo, "no favicon link or no logo image"
    for found in (icon, logo):
        assert (HTML / Path(page_path).parent / found.group(1)).is_file(), f"missing {found.group(1)}"


@pytest.mark.parametrize("page_path", PAGES)
def test_favicon_is_served(visit, page_path):
    """The page's favicon is fetched without error (with the request checks of every page)."""
    report = visit(page_path)
    icons = report["icons"]
    assert icons, "the page names no favicon"
    for icon in icons:
        assert icon["status"] == 200 and icon["bytes"] > 0, f"favicon {icon['href']}: {icon}"
        assert icon["type"].startswith("image/"), f"favicon {icon['href']} served as {icon['type']}"
    assert not report["failed"], f"failed requests: {report['failed']}"


@pytest.mark.parametrize("lesson_page", LESSON_PAGES)
def test_lesson_downloads_as_notebook(visit, lesson_page):
    """The download menu's .ipynb, fetched by the page: an nbformat-4 notebook, the lesson's code, no outputs."""
    download = visit(lesson_page)["notebook"]
    assert download, "no .ipynb in the page's download menu"
    assert download["status"] == 200, f"{download['href']}: HTTP {download['status']}"
    raw = json.loads(download["text"])
    assert raw["nbformat"] == 4, f"{download['href']} is nbformat {raw['nbformat']}"
    assert "jupytext" not in raw["metadata"], "a paired notebook: Jupyter would look for its .md beside it"
    notebook = nbformat.reads(download["text"], as_version=4)
    nbformat.validate(notebook)
    lesson = jupytext.read(str(ROOT / lesson_page.replace(".html", ".md")))
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert code == [c.source for c in lesson.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")


@pytest.mark.parametrize("lesson_page", LESSON_PAGES)
def test_lesson_buttons_use_the_configured_repository(visit, lesson_page):
    """Binder, Colab, repository, edit and issue buttons, all from ``repository.url``.

    Colab opens the same file the download menu serves (``_sources/notebooks/NN_slug.ipynb``),
    from the branch the built book is published to.
    """
    buttons = visit(lesson_page)["buttons"]
    expected = configured_links(lesson_page)
    missing = sorted(set(expected) - set(buttons))
    assert not missing, f"buttons missing from the page: {missing} (found {sorted(buttons)})"
    issues = expected.pop("source-issues-button")
    assert buttons["source-issues-button"].startswith(issues + "?"), buttons["source-issues-button"]
    wrong = [f"{name}: {buttons[name]} (expected {url})" for name, url in expected.items() if buttons[name] != url]
    assert not wrong, "\n".join(wrong)
    # the file Colab opens on the published branch is the one this site serves for download
    served = urlparse(visit(lesson_page)["notebook"]["href"]).path
    assert expected["Colab"].endswith(served), f"Colab opens {expected['Colab']}, the site serves {served}"


# Figures, citations and the phone screen ------------------------------------------------

SCREENSHOT_PART = 6000  # pixels of page height per screenshot file
SCREENSHOT_OVERLAP = 200  # pixels each part repeats of the one before (the sticky header covers less)

FILE_NAME = re.compile(r"^[0-9a-f]{16,}|\.(png|jpe?g|svg|gif|webp)$", re.I)


@pytest.mark.parametrize("page_path", PAGES)
def test_images_have_real_alt_text(visit, page_path):
    """Every image says what it shows: alt text present and not a (hashed) file name."""
    bad = [f"{f['src']}: alt={f['alt']!r}" for f in visit(page_path)["figures"]
           if not f["solution"] and (not f["alt"] or len(f["alt"].strip()) < 8 or FILE_NAME.search(f["alt"].strip()))]
    assert not bad, "images without real alt text:\n" + "\n".join(bad)


@pytest.mark.parametrize("lesson_page", LESSON_PAGES)
def test_figures_are_numbered_captioned_and_readable(visit, lesson_page):
    """Each figure of the lesson's text: "Fig. N" caption, shown at >= 60 % of its drawn width."""
    figures = [f for f in visit(lesson_page)["figures"] if f["output"] and not f["solution"]]
    uncaptioned = [f["src"] for f in figures if not (f["caption"] or "").startswith("Fig. ")]
    assert not uncaptioned, f"figures without a numbered caption: {uncaptioned}"
    small = [f"{f['src']}: {f['shown']:.0f} of {f['natural']} px" for f in figures
             if f["natural"] and f["shown"] < 0.6 * f["natural"]]
    assert not small, "figures shrunk below 60 % of their width at 1280 px:\n" + "\n".join(small)


def test_the_course_has_captioned_figures(visit):
    """Guards the figure checks above against passing on pages without figures."""
    figures = [f for page in LESSON_PAGES if page in PAGES for f in visit(page)["figures"] if f["output"]]
    if LESSON_PAGES and set(LESSON_PAGES) <= set(PAGES):
        assert len(figures) > 30 and sum(1 for f in figures if f["caption"]) > 30


@pytest.mark.parametrize("lesson_page", LESSON_PAGES)
def test_slider_sections_show_one_figure_and_no_dead_controls(visit, lesson_page):
    """The static page shows a slider section's figure, not controls that cannot move."""
    assert visit(lesson_page)["controls"] == 0


@pytest.mark.parametrize("lesson_page", LESSON_PAGES)
def test_progress_bars_are_finished_and_green(visit, lesson_page):
    """A saved progress bar reads as a finished run: drawn, full, not in the red tqdm uses for an
    error (a run that early stopping ended says "stopped early" and is full at its own total)."""
    bars = visit(lesson_page)["progress"]
    unfinished = [b for b in bars if b["danger"] or b["fill"] is None or b["fill"] < 99.9 or b["height"] < 5]
    assert not unfinished, f"progress bars that look unfinished or broken: {unfinished}"


def test_the_course_shows_progress_bars(visit):
    """The check above sees the bars (the lessons with training loops save some)."""
    if LESSON_PAGES and set(LESSON_PAGES) <= set(PAGES):
        assert sum(len(visit(page)["progress"]) for page in LESSON_PAGES) >= 5


def _anchors(page_path: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', (HTML / page_path).read_text(encoding="utf-8")))


def test_every_citation_resolves(visit):
    """Every citation link of every lesson points at an entry that exists on the References page."""
    links = [(page, href) for page in LESSON_PAGES if page in PAGES for href in visit(page)["citations"]]
    assert links, "no citation links in the lessons (book/_ext/course_citations.py)"
    broken = []
    for page, href in links:
        target, _, anchor = href.partition("#")
        path = (Path(page).parent / target).as_posix().replace("notebooks/../", "")
        if not (HTML / path).is_file() or anchor not in _anchors(path):
            broken.append(f"{page}: {href}")
    assert not broken, "citations that lead nowhere:\n" + "\n".join(broken)


@pytest.fixture(scope="module")
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1,
                                  is_mobile=True, has_touch=True)
    yield context
    context.close()


@pytest.mark.parametrize("page_path", [p for p in PAGES if redirect_target(p) is None])
def test_no_page_is_wider_than_a_phone(server, phone, page_path):
    report = new_report()
    page = open_page(phone, server, page_path, report)
    overflow = page.evaluate(OVERFLOW)
    hints = page.evaluate(ZOOM_HINTS)
    page.close()
    assert all("full size" in h for h in hints), f"shrunk figures whose caption does not say how to enlarge them: {hints}"
    assert overflow["page"] <= overflow["screen"], f"page {overflow['page']} px on a {overflow['screen']}-px screen: {overflow['wider']}"
    assert not overflow["wider"], f"elements wider than the screen: {overflow['wider']}"
    assert not report["errors"] and not report["console"], f"{report['errors']} {report['console']}"


@pytest.mark.parametrize("lesson_page", LESSON_PAGES)
def test_lesson_screenshots_at_both_widths(server, context, phone, lesson_page):
    """Whole-page screenshots of every lesson at 1280 and 390 px, for a reader to check by eye."""
    if lesson_page not in PAGES:
        pytest.skip(f"{lesson_page} is not built")
    folder = SCREENSHOTS / "lessons"
    folder.mkdir(parents=True, exist_ok=True)
    for width, browser_context in ((1280, context), (390, phone)):
        report = new_report()
        page = open_page(browser_context, server, lesson_page, report)
        # Chromium paints a very tall page blank in one capture, and a full-page capture in
        # parts (clip) lays the page out again for each part. So: a window SCREENSHOT_PART
        # pixels tall, scrolled down part by part; the parts overlap by SCREENSHOT_OVERLAP
        # pixels, more than the sticky header hides at the top of each.
        page.set_viewport_size({"width": width, "height": SCREENSHOT_PART})
        height = page.evaluate("() => document.documentElement.scrollHeight")
        for old in folder.glob(f"{Path(lesson_page).stem[:2]}-{width}-*.jpg"):
            old.unlink()
        shots = []
        for part, top in enumerate(range(0, max(1, height - SCREENSHOT_OVERLAP), SCREENSHOT_PART - SCREENSHOT_OVERLAP)):
            page.evaluate("(y) => window.scrollTo({top: y, behavior: 'instant'})", top)
            page.wait_for_function("(y) => Math.abs(window.scrollY - Math.min(y, document.documentElement.scrollHeight"
                                   " - window.innerHeight)) < 2", arg=top)
            shot = folder / f"{Path(lesson_page).stem[:2]}-{width}-{part}.jpg"
            page.screenshot(path=str(shot), type="jpeg", quality=55)
            shots.append(shot)
        page.close()
        assert sum(shot.stat().st_size for shot in shots) > 20_000
