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
    assert cited("- D. P. Kingma, J. Ba (2015). *Adam.*") == [("D. P. Kingma, J. Ba (2015)", "kingma2015adam")]
    assert cited("see K.-R. Kingma (2015)") == [("K.-R. Kingma (2015)", "kingma2015adam")]
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


TITLES = {"he2016deep": "deep residual learning for image recognition",
          "he2016identity": "identity mappings in deep residual networks"}


def test_a_title_in_the_paragraph_settles_two_entries_of_one_year():
    text = "(He et al. 2016, "
    paragraph = text + "Identity Mappings in Deep Residual Networks)"
    found = course_citations.find_citations(text, TABLE, paragraph, TITLES)
    assert [(text[s:e], k) for s, e, k in found] == [("He et al. 2016", "he2016identity")]
    assert course_citations.find_citations(text, TABLE, text + "a paper)", TITLES) == []  # no title: no guess
    both = paragraph + " and Deep residual learning for image recognition"
    assert course_citations.find_citations(text, TABLE, both, TITLES) == []               # two titles: no guess


def reference_item(first_run, item):
    found = course_citations.find_reference_item(first_run, TABLE, item, TITLES)
    return found and (first_run[found[0]:found[1]], found[2])


def test_a_references_item_with_the_year_after_the_title():
    run = "D. P. Kingma, J. Ba, "
    assert reference_item(run, run + "Adam: a method for stochastic optimization, ICLR 2015.") == \
        ("D. P. Kingma, J. Ba", "kingma2015adam")
    run = "I. Goodfellow et al., "
    assert reference_item(run, run + "Deep Learning, MIT Press, 2016.") == ("I. Goodfellow et al.", "goodfellow2016deep")
    run = "K. He, X. Zhang, "
    assert reference_item(run, run + "Deep residual learning, CVPR 2016.") is None   # two entries fit
    assert reference_item(run, run + "Identity mappings in deep residual networks, ECCV 2016.") == \
        ("K. He, X. Zhang", "he2016identity")                                       # ... and the title settles it
    assert reference_item("A. Nobody, ", "A. Nobody, A title, 2015.") is None          # not in the bibliography
    run = "Z. He, D. P. Kingma, "
    assert reference_item(run, run + "A title, 2015.") == ("Z. He, D. P. Kingma", "he2015delving")  # the first author
    run = "D. P. Kingma and contributors, "
    assert reference_item(run, run + "A library, 2015.") == ("D. P. Kingma", "kingma2015adam")  # no dangling "and"
    run = "PyTorch documentation, see Kingma "
    assert reference_item(run, run + "2015") is None                                  # not the item's first author


def test_text_equal_to_other_text_of_the_paragraph_stays_in_place():
    """Text nodes compare as strings: the soft line break before an emphasis must not be taken
    for the one before the citation (it once glued "its" to "*local*")."""
    from docutils import nodes

    paragraph = nodes.paragraph("", "", nodes.Text("needs its"), nodes.Text("\n"),
                                nodes.emphasis("", "local"), nodes.Text("\n"), nodes.Text("rule (Kingma and Ba 2015)."))
    before = paragraph.astext()
    course_citations.LinkCitations._link(paragraph, list(paragraph.children)[3:], TABLE, "../references.html")
    assert paragraph.astext() == before
    assert [type(n).__name__ for n in paragraph.children][:4] == ["Text", "Text", "emphasis", "Text"]


def test_no_work_is_in_the_bibliography_twice():
    """Two entries of one work (same title and year) make its citations ambiguous: none gets a
    link. (A conference paper and its later journal version differ in year.)"""
    from pybtex.database import parse_file

    seen, twice = {}, []
    for key, entry in parse_file(str(ROOT / "book" / "references.bib")).entries.items():
        work = (course_citations._plain(entry.fields.get("title", "")), entry.fields.get("year"))
        if work in seen:
            twice.append((seen[work], key))
        seen.setdefault(work, key)
    assert not twice, f"one work entered twice: {twice}"


def test_an_item_whose_text_also_cites_another_work_still_links_its_authors():
    """A later citation in the item ("... after He et al. 2015") must not stop the item's own
    author list from being linked."""
    from docutils import nodes

    section = nodes.section("", nodes.title("", "References"))
    paragraph = nodes.paragraph("", "", nodes.Text("D. P. Kingma, "), nodes.emphasis("", "A title"),
                                nodes.Text(", 2015, after He et al. 2015."))
    section += nodes.bullet_list("", nodes.list_item("", paragraph))
    course_citations.LinkCitations._link_element(paragraph, TABLE, "../references.html", TITLES)
    links = [(n.astext(), n["refuri"].split("#")[1]) for n in paragraph.findall(nodes.reference)]
    assert links == [("D. P. Kingma", "cite-kingma2015adam"), ("He et al. 2015", "cite-he2015delving")]
    assert paragraph.astext() == "D. P. Kingma, A title, 2015, after He et al. 2015."
