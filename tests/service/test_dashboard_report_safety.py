"""The job page shows the job's report.html inside the dashboard: whatever that file holds
(it is the job's own artifact), nothing in it may run, load anything, cover the page or link
anywhere but its own sections and the job's files. `showReport` (report_view.js) is fed a
hostile report in a real Chromium (tests/service/browser.py) and what it shows is read back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.browser import Browser, Page, Watched, chromium, offline_page
from tests.service.live_server import running

TIMEOUT_MS = 60_000


@pytest.fixture
def watched() -> Iterator[Watched]:
    browser: Browser
    with chromium() as browser, offline_page(browser, TIMEOUT_MS) as page:
        yield page


# Everything a sanitiser must drop, beside what a report is made of (a style, a table, an
# SVG chart, links to a file and to a section), all of which must stay.
HOSTILE_REPORT = """<!doctype html><html><head>
<style>h1 { color: rgb(1, 2, 3) } @import url(evil.css);</style>
<script>window.ranScript = 1</script><base href="http://evil.example/">
<meta http-equiv="refresh" content="0;url=javascript:window.ranMeta=1">
<link rel="stylesheet" href="evil.css"></head><body>
<h1 id="top" onclick="window.ranHandler=1">Pruning report</h1>
<div style="position:fixed;inset:0;background:red" id="overlay">cover</div>
<table><tr><td title="a&lt;b" style="background: u\\72l(x.png)">cell</td></tr></table>
<a href="results.csv">results</a> <a href="#top">up</a>
<a href=" java&#9;script:window.ranLink=1" id="js">bad</a>
<a href="//evil.example/x" id="other">other</a>
<img src="x.png" srcset="y.png 2x" onerror="window.ranImg=1">
<iframe srcdoc="<script>parent.ranFrame=1</script>"></iframe>
<form action="v1/jobs" method="post"><button formaction="v1/jobs">go</button></form>
<input name="key" value="x"><object data="x.svg"></object><embed src="x.swf">
<svg width="10" height="10"><circle cx="5" cy="5" r="4" fill="url(x.svg#p)"/>
<a xlink:href="javascript:window.ranSvg=1" href="javascript:window.ranSvg=1"><text>svg</text></a>
<use href="x.svg#a"/><image href="x.png"/><set attributeName="href" to="javascript:1"/>
<animate attributeName="href" values="#;javascript:1"/>
<foreignObject><div>fo</div></foreignObject><style>text { fill: red }</style></svg>
<math><mi xlink:href="javascript:1">m</mi></math>
<template><img src="t.png"></template><noscript><img src="n.png"></noscript>
</body></html>"""


def test_a_hostile_report_is_shown_without_anything_that_runs_or_loads(
    tmp_path: Path, watched: Watched
) -> None:
    """The job page's report is the job's own file: whatever it holds, nothing in it runs,
    loads anything, leaves its box or links anywhere but its sections and the job's files."""
    page = watched.page
    with running(tmp_path) as server:  # open mode: no key, no worker needed
        page.goto(f"{server.url}/#/jobs")
        page.wait_for_selector("#jobs")
        _check_the_sanitiser(page, watched)


def _check_the_sanitiser(page: Page, watched: Watched) -> None:
    # Every module the page loaded came by its fingerprinted address (the import map).
    loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    modules = [u for u in loaded if "/static/dashboard/js/" in u]
    assert len(modules) >= 5 and all(re.search(r"\.js\?v=[0-9a-f]{12}$", u) for u in modules)
    before = len(loaded)
    shown = page.evaluate(
        """async (html) => {
            const { showReport } = await import("./static/dashboard/js/report_view.js");
            const box = document.createElement("div");
            box.className = "report-box";
            const host = document.createElement("div");
            box.append(host);
            document.querySelector("main").append(box);
            showReport(host, () => {}, html);
            await new Promise((resolve) => setTimeout(resolve, 300));
            const root = host.shadowRoot;
            const attributes = [...root.querySelectorAll("*")].flatMap(
                (e) => [...e.attributes].map((a) => `${e.localName} ${a.name}=${a.value}`));
            const overlay = root.getElementById("overlay").getBoundingClientRect();
            const boxRect = box.getBoundingClientRect();
            return {
                tags: [...new Set([...root.querySelectorAll("*")].map((e) => e.localName))].sort(),
                attributes,
                ran: Object.keys(window).filter((k) => k.startsWith("ran")),
                h1: getComputedStyle(root.querySelector("h1")).color,
                overlayInBox:
                    overlay.top >= boxRect.top - 1 && overlay.bottom <= boxRect.bottom + 1,
                loads: performance.getEntriesByType("resource").length,
            };
        }""",
        HOSTILE_REPORT,
    )
    assert shown["ran"] == []
    assert shown["tags"] == sorted(
        {"style", "h1", "div", "table", "tbody", "tr", "td", "a", "svg", "circle"}
    ), shown["tags"]
    links = [a for a in shown["attributes"] if a.startswith("a href=")]
    assert links == ["a href=results.csv", "a href=#top"], links
    assert not [a for a in shown["attributes"] if re.search(r" (on|xlink|src|fill=url)", a)]
    assert not [a for a in shown["attributes"] if a.startswith("td style")]  # CSS escapes
    assert shown["h1"] == "rgb(1, 2, 3)"  # the report's own style applies
    assert shown["overlayInBox"]  # its fixed-position box stays inside the report's
    assert shown["loads"] == before  # nothing fetched, from here or anywhere
    # Parsing alone (before the allow-list runs) meets the page's policy, which refuses the
    # hostile <base> and handlers, and says so: those messages, and only those, are expected.
    assert watched.errors and all("Content Security Policy" in e for e in watched.errors)
    watched.errors.clear()
