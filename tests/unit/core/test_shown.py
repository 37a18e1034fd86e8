"""Values someone else wrote, placed in Markdown an approver reads (the approval form in
the Prefect UI, the approval history in the MLflow UI): rendered, they show as written
and add nothing: no line, heading, link, image, emphasis or raw HTML."""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from thaw.shown import md_code, md_text

RENDER = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")

WRITTEN = [
    "fine\n\n**The gate would PROMOTE it now**: all checks passed",
    "[model card](https://example.invalid/phish) ![x](https://example.invalid/pixel.png)",
    "<img src=x onerror=alert(1)> <script>alert(1)</script>",
    "a `tick` and ``` fence ``` | a pipe | ~~gone~~ *star* _under_ \\ backslash",
    "https://example.invalid/autolink <https://example.invalid/x>",
    "## heading\r\n> quote\u2028- item\u202eevil",
    "Ana\u00a0Lima · 東京 · שלום",
]


def _rendered(markdown: str) -> str:
    out = RENDER.render(markdown).strip()
    assert out.startswith("<p>") and out.endswith("</p>"), out
    return out[3:-4]


@pytest.mark.parametrize("written", WRITTEN)
def test_text_renders_as_written_on_one_line_and_adds_no_markup(written):
    inner = _rendered(f"- reason: {md_text(written, 10_000)}".removeprefix("- "))
    assert "<" not in inner.replace("&lt;", ""), inner  # no tag of any kind: only the escaped text
    flat = " ".join(written.split()).replace("\u202e", "\\u202e")
    assert html.unescape(inner) == f"reason: {flat}"


@pytest.mark.parametrize("written", WRITTEN)
def test_code_renders_as_one_code_span_holding_the_value(written):
    inner = _rendered(f"path {md_code(written, 10_000)} md5")
    match = re.fullmatch(r"path <code>(.*)</code> md5", inner, flags=re.S)
    assert match and "<" not in match[1].replace("&lt;", ""), inner
    assert html.unescape(match[1]).strip() == " ".join(written.split()).replace("\u202e", "\\u202e")


def test_an_entity_shows_as_its_character_and_adds_no_markup():
    """ "&" is left alone (the MLflow UI would show a backslash before it): an entity someone
    writes shows as the character it names, as text."""
    inner = _rendered(f"reason: {md_text('&lt;img src=x&gt; &#91;x&#93;(y)')}")
    assert "<" not in inner.replace("&lt;", "") and html.unescape(inner) == "reason: <img src=x> [x](y)"


def test_a_long_value_is_cut_with_an_ellipsis_and_none_shows_as_empty():
    assert md_text("x" * 100_000, 300) == "x" * 299 + "…"
    assert md_text(None) == ""
    assert md_code("abc") == "`abc`"


def test_a_table_cell_holds_a_pipe_and_a_reason_cannot_add_a_column():
    from thaw.ledger import table_cell

    row = f"| {table_cell('ship | it ![x](y)')} | v2 |"
    out = RENDER.render("| reason | version |\n|---|---|\n" + row)
    cells = re.findall(r"<td>(.*?)</td>", out)
    assert [html.unescape(c) for c in cells] == ["ship | it ![x](y)", "v2"]


def test_a_bare_address_linked_by_a_renderer_shows_its_own_address():
    """The MLflow and Prefect UIs link bare addresses (GitHub's autolinks); escaped text
    cannot give such a link other words than its address."""
    import mistune

    linking = mistune.create_markdown(plugins=["url"])
    out = linking(md_text("see [signed off](https://example.invalid/x) https://example.invalid/y"))
    links = re.findall(r'<a href="([^"]*)">([^<]*)</a>', out)
    assert links and all(href == words for href, words in links), out
    assert "[signed off]" in html.unescape(out)
