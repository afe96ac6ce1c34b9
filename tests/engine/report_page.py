"""report.html read back with an HTML parser, and the checks every report must pass: it
loads nothing from elsewhere, runs no script, shows one row per candidate and links each
published file once (tests/engine/test_report_html.py, and a real run in test_sweep.py)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    """Every start tag with its attributes, the text, and the links, with where they sit."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.links: list[tuple[str, str | None]] = []  # (href, id of the enclosing list)
        self._lists: list[str | None] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        if tag == "ul":
            self._lists.append(values.get("id"))
        if tag == "a":
            self.links.append((values["href"], self._lists[-1] if self._lists else None))

    def handle_endtag(self, tag: str) -> None:
        if tag == "ul":
            self._lists.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.tags if t == tag]


def assert_self_contained(html: str, page: Page) -> None:
    assert "http://" not in html and "https://" not in html
    assert not page.all("script") and not page.all("iframe") and not page.all("link")
    for _, attrs in page.tags:
        assert "src" not in attrs
        assert not any(k.startswith("on") for k in attrs)  # no event handler attributes


def assert_report_of(folder: Path) -> Page:
    """The folder's report.html holds one row per candidate of its results.json, in order,
    and links each file the folder publishes once, and nothing else; returns it parsed."""
    html = (folder / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert_self_contained(html, page)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    rows = [a["data-candidate"] for a in page.all("tr") if "data-candidate" in a]
    assert rows == [str(c["index"]) for c in results["candidates"]]
    published = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    listed = [href for href, where in page.links if where == "files"]
    assert listed == [n for n in published if n != "report.html"]  # each once, in order
    assert {href for href, _ in page.links} == set(listed)  # nothing else is linked
    return page
