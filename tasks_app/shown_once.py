"""A new secret (an API key, a webhook signing secret) shown once, on the page a POST redirects to.

Post/Redirect/Get, so that reloading the page does not send the POST again: a second API key, or a second
rotation that replaces the secret just shown. The secret crosses the redirect in the session (sessions live in
the database, not in a cookie), encrypted like the secrets at rest, and the first GET takes it. Never in the URL
or a message: a message cookie is signed, not encrypted.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from tasks_app.crypto import decrypt_secrets, encrypt_secrets

SESSION_PREFIX = "shown_once."


def stash_secrets(request: HttpRequest, slot: str, secrets: dict[str, str]) -> None:
    """Keep `secrets` for the next `take_secrets(request, slot)`; a newer stash in the same slot wins."""
    request.session[SESSION_PREFIX + slot] = encrypt_secrets(secrets)


def take_secrets(request: HttpRequest, slot: str) -> dict[str, str]:
    """What was stashed in `slot`, once: {} on every later call."""
    token = request.session.pop(SESSION_PREFIX + slot, None)
    return decrypt_secrets(token) if token else {}


def uncached(response: HttpResponse) -> HttpResponse:
    """No cache, nor the browser's Back, may keep a copy of a page that showed a secret."""
    response["Cache-Control"] = "no-store"
    return response
