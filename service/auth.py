"""API keys: `Authorization: Bearer <key>` -> the caller's tenant.

`DEADWEIGHT_API_KEYS` holds `tenant=key` pairs. The API keeps only SHA-256 digests of the
keys, and compares a presented key's digest with every stored one in constant time
(`hmac.compare_digest`, never stopping at the first match), so neither the response time
nor a memory dump of the key ring gives a key away. Without keys the service is open, and
`deadweight serve` allows that only on a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from fastapi import Request
from fastapi.security import HTTPBearer
from fastapi.security.base import SecurityBase

from jobs.logging_setup import set_log_field
from service.errors import Unauthorized

OPEN_TENANT = "default"  # every record's owner while authentication is off


class KeyRing:
    """SHA-256 digests of the API keys, each with its tenant."""

    def __init__(self, key_tenants: dict[str, str]) -> None:
        self._entries = [(_digest(key), tenant) for key, tenant in key_tenants.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def tenant_for(self, key: str) -> str | None:
        """The tenant of `key`, or None; the time taken does not depend on which key matched."""
        presented = _digest(key)
        found = None
        for digest, tenant in self._entries:
            if hmac.compare_digest(presented, digest):
                found = tenant
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class TenantFromKey(SecurityBase):
    """The dependency that names the caller's tenant; to OpenAPI, the `HTTPBearer` scheme.

    One dependency rather than a function over `HTTPBearer`'s: FastAPI solves each
    dependency of a request separately (and a repeated one again, down to its leaves), a
    real part of a polled route's cost. The header is parsed by `HTTPBearer` itself.
    """

    def __init__(self) -> None:
        # auto_error=False: a missing header is answered here, in the API's error format.
        self._bearer = HTTPBearer(auto_error=False, description=_SCHEME_DESCRIPTION)
        self.model = self._bearer.model
        self.scheme_name = "HTTPBearer"

    async def __call__(self, request: Request) -> str:
        """The caller's tenant: from the API key, or the open tenant when keys are off.

        `async`: a few SHA-256 digests cost microseconds, far less than the hop to the
        thread pool that FastAPI makes for a plain `def` dependency.
        """
        keyring: KeyRing = request.app.state.keyring
        if not keyring.enabled:
            set_log_field("tenant", OPEN_TENANT)
            return OPEN_TENANT
        credentials = await self._bearer(request)
        if credentials is None:
            raise _challenge("send your API key as `Authorization: Bearer <key>`")
        tenant = keyring.tenant_for(credentials.credentials)
        if tenant is None:
            raise _challenge("the API key is not valid")
        set_log_field("tenant", tenant)  # the request's later lines name it (never the key)
        return tenant


_SCHEME_DESCRIPTION = "an API key from DEADWEIGHT_API_KEYS"
get_tenant = TenantFromKey()


def _challenge(message: str) -> Unauthorized:
    return Unauthorized(message, headers={"WWW-Authenticate": "Bearer"})
