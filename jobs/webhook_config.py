"""A job's webhook: its events, where it may send them, and the secret each tenant signs with.

Checked twice: when a job is submitted (`service.webhook_checks`, a 422 naming the setting)
and again by the worker right before each attempt (`jobs.webhook_dispatch`), because the
settings may have changed in between. Destinations are compared as given, `host` or
`host:port`, without resolving names: a name that resolves to an internal address is the
operator's choice to allow, and a check that resolved would race with the send anyway.

A leaf module: the settings import it to check themselves at start.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from jobs.states import JobStatus

SECRETS_SETTING: Final = "DEADWEIGHT_WEBHOOK_SECRETS"
ALLOWED_HOSTS_SETTING: Final = "DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS"
SECRET_PREFIX: Final = "whsec_"
# `*=secret` in the secrets setting: every tenant's secret (and the open mode's).
ANY_TENANT: Final = "*"
MAX_URL_LENGTH: Final = 2048
_SCHEMES: Final = ("http", "https")


# The events a webhook receives; a job asks for the terminal ones unless it names others.
class WebhookEvent(StrEnum):
    STARTED = "job.started"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"
    CANCELLED = "job.cancelled"


TERMINAL_EVENTS: Final = (WebhookEvent.SUCCEEDED, WebhookEvent.FAILED, WebhookEvent.CANCELLED)
_EVENT_OF_STATUS: Final = {
    JobStatus.RUNNING: WebhookEvent.STARTED,
    JobStatus.SUCCEEDED: WebhookEvent.SUCCEEDED,
    JobStatus.FAILED: WebhookEvent.FAILED,
    JobStatus.CANCELLED: WebhookEvent.CANCELLED,
}


def event_for(status: JobStatus | str) -> WebhookEvent | None:
    """The event a job entering `status` emits (None for `queued`)."""
    return _EVENT_OF_STATUS.get(JobStatus(status))


class WebhookRefused(ValueError):
    """A webhook this server will not call; the message names what to change."""


@dataclass(frozen=True)
class WebhookSpec:
    """A job's webhook as its row stores it, under the key `webhook` of its config."""

    url: str
    events: tuple[WebhookEvent, ...] = TERMINAL_EVENTS

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "events": [e.value for e in self.events]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WebhookSpec | None:
        """The webhook stored in a job's config; None for jobs without one (and every job
        stored before webhooks existed)."""
        raw = config.get("webhook")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("url"), str):
            return None
        events = raw.get("events") or [e.value for e in TERMINAL_EVENTS]
        return cls(url=raw["url"], events=tuple(WebhookEvent(e) for e in events))


# -- destinations ----------------------------------------------------------------------------
def allowed_hosts(raw: str | None) -> frozenset[str] | None:
    """The allowed `host` and `host:port` entries, lower-cased; None when the setting is unset
    (no webhook may be sent at all)."""
    if raw is None or not raw.strip():
        return None
    return frozenset(entry.strip().lower() for entry in raw.split(",") if entry.strip())


def check_destination(url: str, allowed: str | None) -> None:
    """Refuse a URL that is not http(s), carries credentials, or names a host not allowed.

    An entry `host` allows that host on any port; `host:port` only that port (the scheme's
    default port when the URL names none).

    Raises:
        WebhookRefused: naming the setting or the host to allow.
    """
    hosts = allowed_hosts(allowed)
    if hosts is None:
        raise WebhookRefused(
            f"webhooks are off on this server: {ALLOWED_HOSTS_SETTING} is not set (an "
            "operator lists the hosts jobs may call, e.g. hooks.example.com:443)"
        )
    parts = _split(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    if host not in hosts and f"{shown}:{port}" not in hosts:
        raise WebhookRefused(
            f"webhook host {shown}:{port} is not allowed on this server "
            f"({ALLOWED_HOSTS_SETTING} lists the hosts jobs may call)"
        )


def _split(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH or not url.isascii() or any(c.isspace() for c in url):
        raise WebhookRefused(
            f"webhook url must be an ASCII URL of at most {MAX_URL_LENGTH} characters, "
            "without spaces"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise WebhookRefused(f"webhook url is not a valid URL: {exc}") from None
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise WebhookRefused("webhook url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused(
            "webhook url must not carry credentials: the receiver checks the signature instead"
        )
    return parts


# -- secrets ---------------------------------------------------------------------------------
def tenant_secrets(raw: str | None) -> dict[str, str]:
    """Tenant (or `*`) -> `whsec_...` secret, parsed from the secrets setting.

    Raises:
        ValueError: a pair is not `tenant=whsec_<base64>`, or a tenant is given twice.
    """
    out: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        tenant, sep, secret = (part.strip() for part in item.partition("="))
        if not sep or not tenant or not secret:
            raise ValueError(f"{SECRETS_SETTING} must be comma-separated tenant=secret pairs")
        if tenant in out:
            raise ValueError(f"{SECRETS_SETTING} gives tenant {tenant!r} twice")
        secret_key(secret)  # checked here, so a bad secret stops the start, not a delivery
        out[tenant] = secret
    return out


def secret_for(tenant: str, raw: str | None) -> str | None:
    """The tenant's own secret, else the `*` one, else None."""
    secrets = tenant_secrets(raw)
    return secrets.get(tenant, secrets.get(ANY_TENANT))


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the Standard Webhooks form).

    Raises:
        ValueError: not of that form, or a key shorter than 24 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"{SECRETS_SETTING}: a secret has the form whsec_<base64>")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"{SECRETS_SETTING}: the part after whsec_ is not base64") from None
    # The specification asks for 24 to 64 bytes; fewer would make the HMAC guessable.
    if len(key) < 24:
        raise ValueError(f"{SECRETS_SETTING}: a secret's key must be at least 24 bytes")
    return key


def retry_delays(raw: str) -> tuple[float, ...]:
    """The delays between attempts, in seconds (`5,30,120`); the last one repeats.

    Raises:
        ValueError: empty, not numbers, or a negative delay.
    """
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        delays = ()
    if not delays or any(d < 0 for d in delays):
        raise ValueError(
            "DEADWEIGHT_WEBHOOK_RETRY_SECONDS must be comma-separated non-negative seconds, "
            f"got {raw!r}"
        )
    return delays


def subscribed(spec: WebhookSpec | None, event: WebhookEvent) -> bool:
    return spec is not None and event in spec.events


def webhook_problems(
    secrets: str | None, retry_seconds: str, positive: Mapping[str, float]
) -> list[str]:
    """What is wrong with the webhook settings, for the settings' start-up check."""
    problems = []
    for check in (lambda: tenant_secrets(secrets), lambda: retry_delays(retry_seconds)):
        try:
            check()
        except ValueError as exc:
            problems.append(str(exc))
    problems += [
        f"DEADWEIGHT_{name.upper()} must be above 0, got {value}"
        for name, value in positive.items()
        if not value > 0
    ]
    return problems
