"""Where the service is and who is calling: arguments first, then `DEADWEIGHT_URL` and
`DEADWEIGHT_API_KEY`, as the `deadweight` command reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from deadweight_client.version import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "DEADWEIGHT_URL"
API_KEY_VARIABLE = "DEADWEIGHT_API_KEY"


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str | None
    timeout: float

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None, timeout: float) -> Connection:
        url = url or os.environ.get(URL_VARIABLE) or DEFAULT_URL
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE) or None
        return cls(url.rstrip("/"), api_key, timeout)

    def httpx_options(self) -> dict[str, Any]:
        """What both httpx clients are built with."""
        headers = {"User-Agent": f"deadweight-client/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        # Connecting is quick or it fails (then retried); an upload or a download may take
        # as long as it takes between two packets, up to `timeout`.
        return {
            "base_url": self.url,
            "headers": headers,
            "timeout": httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
        }
