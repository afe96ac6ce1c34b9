"""A real headless Chromium for the page tests, cut off from every host but this machine.

Debian's `chromium`, driven by Playwright (which downloads no browser of its own). Each page
may reach 127.0.0.1 only: any request to another host is aborted and recorded, and the
test fails if there was one; so does any script error or refused load the console reports.
Import this module first in a test module: without the browser the module is skipped, except
on CI (`.ci/run` installs it and sets DEADWEIGHT_REQUIRE_BROWSER=1, so CI never skips).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and os.environ.get("DEADWEIGHT_REQUIRE_BROWSER") != "1":
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright  # noqa: E402

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A second wall behind the routing below: no name but the loopback resolves.
LAUNCH_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """A page, the requests it tried to make to other hosts, and what went wrong in it."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def offline_page(
    browser: Browser,
    timeout_ms: float,
    tolerated: Callable[[str], bool] = lambda text: False,
    **context_options: object,
) -> Iterator[Watched]:
    """A new page in a context of its own; on leaving, no other host was asked for anything
    and nothing went wrong: no uncaught error, and no console error or warning but those
    `tolerated` accepts (by their text)."""
    context = browser.new_context(**context_options)  # type: ignore[arg-type]
    page = context.new_page()
    watched = Watched(page)

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            watched.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    def console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"} and not tolerated(message.text):
            watched.errors.append(f"console {message.type}: {message.text}")

    context.route("**/*", only_local)
    page.set_default_timeout(timeout_ms)
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    page.on("console", console)
    try:
        yield watched
    finally:
        context.close()
    assert watched.errors == [], watched.errors
    assert watched.blocked == [], watched.blocked
