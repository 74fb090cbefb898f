"""The book's citation links (book/_ext/course_citations.py) on hand-made text and on references.bib."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
course_citations = pytest.importorskip("course_citations")

TABLE = {"2015": {"Kingma": ["kingma2015adam"], "He": ["he2015delving"]},
         "2016": {"He": ["he2016deep", "he2016identity"], "Goodfellow": ["goodfellow2016deep"]}}


def cited(text):
    return [(text[s:e], key) for s, e, key in course_citations.find_citations(text, TABLE)]


def test_the_forms_a_lesson_uses():
    assert cited("Adam (Kingma & Ba 2015) combines") == [("Kingma & Ba 2015", "kingma2015adam")]
    assert cited("as Kingma and Ba (2015) showed") == [("Kingma and Ba (2015)", "kingma2015adam")]
    assert cited("- D. P. Kingma, J. Ba (2015). *Adam.*") == [("Kingma, J. Ba (2015)", "kingma2015adam")]
    assert cited("Goodfellow et al. 2016; He et al. 2015") == [("Goodfellow et al. 2016", "goodfellow2016deep"),
                                                                ("He et al. 2015", "he2015delving")]


def test_what_is_not_a_citation():
    assert cited("He et al. (2016)") == []                   # two entries fit: left as text, not guessed
    assert cited("in 2015 the dataset grew") == []          # a year alone
    assert cited("Kingma (2014)") == []                     # no entry of that year
    assert cited("Kingmaker 2015 and Hen 2015") == []       # whole surnames only
    assert cited("Kingma " + "x" * 80 + " 2015") == []      # too far from the year
    assert cited("Kingma et al., “The 2015 report”") == []  # a year inside a title, not a citation


def test_the_bibliography_is_indexed_by_first_author_and_year():
    table = course_citations.first_authors(ROOT / "book" / "references.bib")
    keys = [k for surnames in table.values() for ks in surnames.values() for k in ks]
    assert "kingma2015adam" in table["2015"]["Kingma"]
    assert len(keys) == len(set(keys)) and len(keys) > 50


def test_a_citation_over_two_source_lines_is_linked():
    """Markdown keeps a soft line break as two Text nodes; the link spans both."""
    from docutils import nodes

    paragraph = nodes.paragraph("", "", nodes.Text(" (Kingma and"), nodes.Text("\nBa, 2015). Next"))
    course_citations.LinkCitations._link(paragraph, list(paragraph.children), TABLE, "../references.html")
    links = [n for n in paragraph.children if isinstance(n, nodes.reference)]
    assert len(links) == 1 and links[0]["refuri"] == "../references.html#cite-kingma2015adam"
    assert links[0].astext() == "Kingma and\nBa, 2015"
    assert paragraph.astext() == " (Kingma and\nBa, 2015). Next"  # the text itself is unchanged
