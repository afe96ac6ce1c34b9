"""A submitted job's webhook, checked at the door: a destination this server may call and a
secret to sign with, or a 422 that names the setting to change."""

from __future__ import annotations

from typing import Any

from jobs.settings import Settings
from jobs.webhook_config import SECRETS_SETTING, WebhookRefused, check_destination, secret_for
from service.errors import InvalidJob
from service.webhook_schemas import WebhookIn


def with_webhook(
    config: dict[str, Any], webhook: WebhookIn | None, tenant: str, settings: Settings
) -> dict[str, Any]:
    """The job's stored config, with its checked webhook under `webhook` (if it has one).

    Raises:
        InvalidJob: (422, code `invalid_webhook`) the host is not allowed, webhooks are off,
            or no secret applies to the tenant.
    """
    if webhook is None:
        return config
    try:
        check_destination(webhook.url, settings.webhook_allowed_hosts)
    except WebhookRefused as exc:
        raise InvalidJob(str(exc), code="invalid_webhook") from None
    if secret_for(tenant, settings.webhook_secrets) is None:
        raise InvalidJob(
            f"no webhook secret applies to tenant {tenant!r}: an operator adds "
            f"{tenant}=whsec_... (or *=whsec_...) to {SECRETS_SETTING}",
            code="invalid_webhook",
        )
    return {**config, "webhook": webhook.spec().to_json()}
