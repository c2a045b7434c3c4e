"""Public ids shaped like the seed's (`task_…`, `run_…`, `heal_…`, `wh_…`)."""

import re
import secrets
from typing import TypeVar

from django.db.models import Model, QuerySet
from django.http import Http404

M = TypeVar("M", bound=Model)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # no i, l, o, u: easy to read aloud


def new_id(prefix: str, length: int = 16) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


# Model defaults must be importable module-level callables so migrations can reference them.
def new_task_id() -> str:
    return new_id("task")


def new_run_id() -> str:
    return new_id("run")


def new_heal_id() -> str:
    return new_id("heal")


def new_webhook_id() -> str:
    return new_id("wh")


def new_key_id() -> str:
    return new_id("key")


# What may be an id, in a URL or an API path: every id we make fits, and so does a hand-written test id. Anything
# else cannot name a row, so it is a 404 before any query (PostgreSQL refuses a NUL with an error, not a miss).
ID_PATTERN = r"[0-9A-Za-z_-]{1,40}"
_ID = re.compile(ID_PATTERN)


def could_be_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def object_or_404(queryset: QuerySet[M], object_id: str, *, what: str) -> M:
    """The row with this id in `queryset`, or Http404 "no such <what>" (also for a string that cannot be an id)."""
    found = queryset.filter(pk=object_id).first() if could_be_id(object_id) else None
    if found is None:
        raise Http404(f"no such {what}")
    return found


class IdConverter:
    """`<id:task_id>` in URL patterns: only strings that could be an id reach the view."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
