"""Public ids shaped like the seed's (`task_…`, `run_…`, `heal_…`, `wh_…`)."""

import secrets

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
