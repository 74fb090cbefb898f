"""Author-year citations in the lessons' text become links into the book's one bibliography.

The lessons are plain Markdown, read as notebooks in JupyterLab, so they cite the way a
paper does: "(Kingma & Ba 2015)", "He et al. (2016)", and in each lesson's References list
"D. P. Kingma, J. Ba (2015). *Adam ...*". In the book each such citation becomes a link to its
entry on the References page (``references.md``, every entry of ``references.bib``).

A year (1900-2099) is a citation when, within the few words before it, stands the surname of
the first author of exactly one entry of that year in ``references.bib``, and only more
authors stand between them (names, initials, "and", "&", "et al.", commas, a bracket); the
link covers the text from that surname to the year. A surname and year that fit two entries
(He 2016) are linked only when the paragraph also names the title of exactly one of them
("He et al. 2016, *Identity mappings in deep residual networks*"); otherwise they are left as
text rather than guessed. Code, math, links and headings are never touched.

An item of a lesson's References list may give the year after the title ("B. Zhou, A. Khosla,
"Learning deep features ...", *CVPR* 2016."): there the author list at the item's start is
linked when its first surname and a year of the item fit exactly one entry (or, when several
fit, the item names the title of exactly one).

The entries' anchors are ``cite-<key>`` (``bibtex_cite_id`` in ``_config.yml``). The browser
test opens every link made here and checks that its anchor exists.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

YEAR = re.compile(r"\b((?:19|20)\d\d)[a-z]?\b")
# What may stand between the first author's surname and the year: more authors (initials,
# capitalised names, "and", "&", "et al."), commas and an opening bracket, nothing else.
AUTHOR_GAP = re.compile(r"(?:[A-Z][\w'’.\-]*|et|al\.|and|&|[,(\s])*")
# Initials just before a surname ("D. P. ", "K.-R. "): the link starts with them.
INITIALS = re.compile(r"(?<![\w.])(?:[A-Z]\.(?:-[A-Z]\.)?\s?)+$")
WINDOW = 70  # characters before a year in which its first author's surname must stand
SKIPPED_PARENTS = (nodes.literal, nodes.literal_block, nodes.math, nodes.math_block, nodes.reference,
                   nodes.title, nodes.raw, nodes.FixedTextElement, nodes.citation, nodes.label)
BIBLIOGRAPHY_PAGE = "references"


def first_authors(bibfile: Path) -> dict[str, dict[str, list[str]]]:
    """``{year: {first author's surname: [keys]}}`` for every entry of a BibTeX file."""
    from pybtex.database import parse_file  # installed with sphinxcontrib-bibtex

    table: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for key, entry in parse_file(str(bibfile)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        year = entry.fields.get("year", "")
        if people and year:
            surname = re.sub(r"[{}\\]", "", " ".join(people[0].last_names))
            table[year][surname].append(key)
    return table


def titles(bibfile: Path) -> dict[str, str]:
    """``{key: title}`` for every entry of a BibTeX file, normalised by ``_plain``."""
    from pybtex.database import parse_file  # installed with sphinxcontrib-bibtex

    return {key: _plain(entry.fields.get("title", "")) for key, entry in parse_file(str(bibfile)).entries.items()}


def _plain(text: str) -> str:
    """Lower case, letters and digits only, single spaces: how titles are compared."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", re.sub(r"[{}\\]", "", text).lower()).split())


def _whole_word(surname: str) -> re.Pattern:
    """``surname`` as a whole word (not "Hen" in "Henderson", not inside "Smith-Jones")."""
    return re.compile(rf"(?<![\w-]){re.escape(surname)}(?![\w-])")


def _choose(keys: list[str], context: str, known_titles: dict[str, str]) -> str | None:
    """The one key of ``keys``, or the one whose title ``context`` names; ``None`` when unclear."""
    if len(keys) == 1:
        return keys[0]
    plain = _plain(context)
    named = [k for k in keys if known_titles.get(k) and known_titles[k] in plain]
    return named[0] if len(named) == 1 else None


def find_citations(text: str, table, context: str = "",
                   known_titles: dict[str, str] | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, key)`` of every citation in ``text`` (see the module docstring).

    ``context`` (the whole paragraph) and ``known_titles`` settle a surname and year that
    fit several entries."""
    found = []
    for match in YEAR.finditer(text):
        surnames = table.get(match.group(1), {})
        window_start = max(0, match.start() - WINDOW)
        window = text[window_start:match.start()]
        best = None
        for surname, keys in surnames.items():
            for hit in _whole_word(surname).finditer(window):
                if best is None or hit.start() > best[0]:
                    best = (hit.start(), keys, hit.end())
        key = _choose(best[1], context, known_titles or {}) if best is not None else None
        if key is None:
            continue
        start, end = window_start + best[0], match.end()
        if not AUTHOR_GAP.fullmatch(text[window_start + best[2]:match.start()]):
            continue  # words between the surname and the year that are not more authors: a title's year
        initials = INITIALS.search(text, 0, start)  # "A. Paszke et al. (2019)": the whole name
        if initials:
            start = initials.start()
        if text[start:end].count("(") > text[start:end].count(")") and text[end:end + 1] == ")":
            end += 1
        if found and start < found[-1][1]:
            continue
        found.append((start, end, key))
    return found


def find_reference_item(text: str, table, item_text: str,
                        known_titles: dict[str, str] | None = None) -> tuple[int, int, str] | None:
    """The author list at the start of a References-list item, as ``(start, end, key)``.

    ``text`` is the item's first run of text, ``item_text`` the whole item (its year may
    stand after an emphasised title or venue). The first surname must stand in the first
    few words, and it and one of the item's years must fit exactly one entry (or the item
    names the title of exactly one of those that fit)."""
    candidates = set()
    for year in {m.group(1) for m in YEAR.finditer(item_text)}:
        for surname, keys in table.get(year, {}).items():
            hit = _whole_word(surname).search(text[:40])
            key = _choose(keys, item_text, known_titles or {})
            if hit and key and AUTHOR_GAP.fullmatch(text[:hit.start()]):
                candidates.add((hit.start(), hit.end(), key))
    first = [c for c in candidates if c[0] == min(candidates)[0]] if candidates else []
    if len(first) != 1:  # the first surname decides ("Z. Liu, J. Li, ..." is Liu's paper)
        return None
    _, end, key = first[0]
    start = len(text) - len(text.lstrip())  # the whole author list, initials included
    authors = AUTHOR_GAP.match(text, end)
    end = len(re.sub(r"(?:\s+(?:and|&))+$", "", text[:authors.end()].rstrip(" ,(")))  # not "... and" of "and contributors"
    return start, end, key


class LinkCitations(SphinxPostTransform):
    """Turn author-year citations in lesson pages into links to the References page."""

    default_priority = 900
    formats = ("html",)

    def run(self, **kwargs) -> None:
        env = self.env
        if not env.docname.startswith("notebooks/"):
            return
        table = getattr(env.app, "course_citation_table", None)
        if not table:
            return
        known_titles = getattr(env.app, "course_citation_titles", {})
        base = self.app.builder.get_relative_uri(env.docname, BIBLIOGRAPHY_PAGE)
        for element in list(self.document.findall(nodes.TextElement)):
            if not any(isinstance(a, SKIPPED_PARENTS) for a in _ancestors(element)):
                self._link_element(element, table, base, known_titles)

    @staticmethod
    def _link_element(element: nodes.Element, table, base: str, known_titles: dict[str, str]) -> None:
        """Link the citations of one paragraph (or other text element)."""
        # A paragraph's text comes as several Text nodes (one per source line, around
        # emphasis and code): each run of consecutive Text nodes is read as one string, so a
        # citation broken over two source lines is still found.
        runs, current = [], []
        for child in element.children:
            if isinstance(child, nodes.Text):
                current.append(child)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        first_linked = False
        for number, run in enumerate(runs):
            linked = LinkCitations._link(element, run, table, base, known_titles)
            first_linked |= linked and number == 0
        if not first_linked and runs and element.children and runs[0][0] is element.children[0] \
                and _is_reference_item(element):
            item = find_reference_item("".join(str(t) for t in runs[0]), table, element.astext(), known_titles)
            if item:
                LinkCitations._replace(element, runs[0], [item], base)

    @staticmethod
    def _link(element: nodes.Element, run: list[nodes.Text], table, base: str,
              known_titles: dict[str, str] | None = None) -> bool:
        """Replace a run of Text nodes by text and citation links; True when it held a citation."""
        text = "".join(str(t) for t in run)
        citations = find_citations(text, table, element.astext(), known_titles)
        if not citations:
            return False
        LinkCitations._replace(element, run, citations, base)
        return True

    @staticmethod
    def _replace(element: nodes.Element, run: list[nodes.Text], citations, base: str) -> None:
        """Put ``citations`` (``(start, end, key)`` in the run's text) in as links."""
        text = "".join(str(t) for t in run)
        pieces: list[nodes.Node] = []
        position = 0
        for start, end, key in citations:
            if start > position:
                pieces.append(nodes.Text(text[position:start]))
            link = nodes.reference(text[start:end], text[start:end], refuri=f"{base}#cite-{key}",
                                   classes=["course-cite"])
            link["reftitle"] = f"References: {key}"
            pieces.append(link)
            position = end
        if position < len(text):
            pieces.append(nodes.Text(text[position:]))
        # Find and remove the run by identity: Text nodes are strings, and ``index``/``remove``
        # compare by value, so an equal Text elsewhere (a line break "\n") would be taken instead.
        index = next(i for i, child in enumerate(element.children) if child is run[0])
        del element.children[index:index + len(run)]  # a run is consecutive children
        for offset, piece in enumerate(pieces):
            element.insert(index + offset, piece)


def _is_reference_item(element: nodes.Element) -> bool:
    """A paragraph that opens an item of a list under a heading "References"."""
    item = element.parent
    if not isinstance(item, nodes.list_item) or item.children[0] is not element:
        return False
    section = next((a for a in _ancestors(item) if isinstance(a, nodes.section)), None)
    return section is not None and section.next_node(nodes.title).astext().strip() == "References"


def _ancestors(node: nodes.Node):
    while node is not None:
        yield node
        node = node.parent


def load_bibliography(app: Sphinx) -> None:
    bibfiles = app.config.bibtex_bibfiles or []
    table: dict = {}
    for name in bibfiles:
        for year, surnames in first_authors(Path(app.srcdir) / name).items():
            for surname, keys in surnames.items():
                table.setdefault(year, {}).setdefault(surname, []).extend(keys)
    app.course_citation_table = table
    app.course_citation_titles = {k: t for name in bibfiles for k, t in titles(Path(app.srcdir) / name).items()}


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", load_bibliography)
    app.add_post_transform(LinkCitations)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
