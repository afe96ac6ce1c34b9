"""Standard Webhooks signatures (https://www.standardwebhooks.com/): what a receiver checks.

    webhook-id:        msg_<delivery id>     (the same for every retry of one event)
    webhook-timestamp: <unix seconds>        (of this attempt)
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

The key is the base64-decoded part of the tenant's `whsec_...` secret. A receiver recomputes
the HMAC over the raw body it received, compares in constant time, and refuses timestamps
far from its clock (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from jobs.webhook_config import secret_key

MESSAGE_ID_PREFIX = "msg_"


def message_id(delivery_id: str) -> str:
    """The `webhook-id` of a delivery: receivers deduplicate retries by it."""
    return MESSAGE_ID_PREFIX + delivery_id


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of id.timestamp.body."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of one attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
