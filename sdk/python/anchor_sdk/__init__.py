"""Python client for the Anchor API: self-healing browser tasks.

    from anchor_sdk import Anchor

    anchor = Anchor(api_key="ak_...")  # base URL from ANCHOR_BASE_URL, or base_url=...
    task = anchor.tasks.create(name="form_submission", prompt="...", self_healing=True)

    message = verify_webhook(request.body, request.headers, "whsec_...")  # in a webhook receiver
"""

__version__ = "0.1.0"

from anchor_sdk.client import Anchor
from anchor_sdk.errors import (
    AnchorError,
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from anchor_sdk.models import (
    Diff,
    HealingEvent,
    Page,
    Run,
    SelfHealingConfig,
    Task,
    Version,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
)
from anchor_sdk.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "APIConnectionError",
    "Anchor",
    "AnchorError",
    "AuthenticationError",
    "ConflictError",
    "Diff",
    "HealingEvent",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "RateLimitError",
    "Run",
    "SelfHealingConfig",
    "ServerError",
    "Task",
    "ValidationError",
    "Version",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookSecret",
    "WebhookVerificationError",
    "verify_webhook",
]
