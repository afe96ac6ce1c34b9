"""Webhook destinations, secrets, retry delays and signatures, without a database."""

from __future__ import annotations

import pytest

from jobs.settings import Settings
from jobs.webhook_config import (
    TERMINAL_EVENTS,
    WebhookEvent,
    WebhookRefused,
    WebhookSpec,
    check_destination,
    retry_delays,
    secret_for,
    tenant_secrets,
)
from jobs.webhook_signing import signature, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_matches_the_specification_s_example() -> None:
    # The example of the Standard Webhooks specification (and of its reference libraries).
    got = signature(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = signed_headers(SECRET, "msg_1", 1614265330, b"{}")
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1614265330"


def test_unset_allowed_hosts_refuse_every_webhook_naming_the_setting() -> None:
    for unset in (None, "", " , "):
        with pytest.raises(WebhookRefused, match="DEADWEIGHT_WEBHOOK_ALLOWED_HOSTS"):
            check_destination("https://hooks.example.com/x", unset)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/x", "hooks.example.com"),
        ("https://HOOKS.example.com:8443/x?a=1", "other.org, hooks.example.com"),
        ("http://127.0.0.1:9000/hook", "127.0.0.1:9000"),
        ("https://hooks.example.com/x", "hooks.example.com:443"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_allowed_destinations(url: str, allowed: str) -> None:
    check_destination(url, allowed)


@pytest.mark.parametrize(
    ("url", "allowed", "message"),
    [
        ("http://127.0.0.1:9001/hook", "127.0.0.1:9000", "127.0.0.1:9001 is not allowed"),
        ("http://hooks.example.com/x", "hooks.example.com:443", "hooks.example.com:80 is not"),
        ("http://169.254.169.254/latest", "hooks.example.com", "169.254.169.254:80 is not"),
        ("https://hooks.example.com.evil.org/", "hooks.example.com", "is not allowed"),
        ("ftp://hooks.example.com/x", "hooks.example.com", "http:// or https://"),
        ("file:///etc/passwd", "hooks.example.com", "http:// or https://"),
        ("https://user:pw@hooks.example.com/", "hooks.example.com", "credentials"),
        ("https://hooks.example.com:99999/", "hooks.example.com", "not a valid URL"),
        ("https://hooks.example.com/a b", "hooks.example.com", "without spaces"),
        ("https:///path", "hooks.example.com", "with a host"),
    ],
)
def test_refused_destinations(url: str, allowed: str, message: str) -> None:
    with pytest.raises(WebhookRefused, match=message):
        check_destination(url, allowed)


def test_secrets_per_tenant_with_a_fallback() -> None:
    other = "whsec_" + "A" * 32
    raw = f"acme={SECRET}, *={other}"
    assert tenant_secrets(raw) == {"acme": SECRET, "*": other}
    assert secret_for("acme", raw) == SECRET
    assert secret_for("globex", raw) == other
    assert secret_for("globex", f"acme={SECRET}") is None
    assert secret_for("default", None) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("acme", "tenant=secret pairs"),
        ("acme=plain-text", "whsec_<base64>"),
        ("acme=whsec_not base64!", "not base64"),
        ("acme=whsec_c2hvcnQ=", "at least 24 bytes"),
        (f"acme={SECRET},acme={SECRET}", "twice"),
    ],
)
def test_bad_secrets_stop_the_start(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(webhook_secrets=raw)


def test_retry_delays_and_their_settings() -> None:
    assert retry_delays("5,30, 120") == (5.0, 30.0, 120.0)
    for bad in ("", "x", "5,-1"):
        with pytest.raises(ValueError, match="DEADWEIGHT_WEBHOOK_RETRY_SECONDS"):
            retry_delays(bad)
    with pytest.raises(ValueError, match="DEADWEIGHT_WEBHOOK_TIMEOUT_SECONDS must be above 0"):
        Settings(webhook_timeout_seconds=0)


def test_spec_round_trip_and_old_configs() -> None:
    spec = WebhookSpec("https://h/x", (WebhookEvent.STARTED, WebhookEvent.FAILED))
    assert WebhookSpec.from_config({"webhook": spec.to_json()}) == spec
    assert WebhookSpec.from_config({"webhook": {"url": "https://h/x"}}) == WebhookSpec(
        "https://h/x", TERMINAL_EVENTS
    )
    # Configurations stored before webhooks existed have no such key.
    assert WebhookSpec.from_config({"criterion": "seed"}) is None
