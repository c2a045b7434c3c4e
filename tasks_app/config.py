"""The seed's self_healing_config: defaults, validation and merging. Pure; no Django."""

from __future__ import annotations

from typing import Any

FAILURE_TYPES = ("timeout", "element_not_found", "navigation_error", "authentication_failure", "captcha_detected")

DEFAULT_CONFIG: dict[str, Any] = {
    "auto_deploy": False,
    "trigger_on": ["timeout", "element_not_found", "navigation_error"],
    "max_attempts": 3,
    "validation_required": True,
}
MAX_ATTEMPTS_RANGE = (1, 10)


class InputError(ValueError):
    """A bad value in a request; `field` names it the way the API caller wrote it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_config_changes(changes: Any, *, field: str = "self_healing_config") -> dict[str, Any]:
    """Check a partial config (the keys a caller sent) and return it normalised."""
    if changes is None:
        return {}
    if not isinstance(changes, dict):
        raise InputError(field, "must be an object")
    unknown = sorted(set(changes) - set(DEFAULT_CONFIG))
    if unknown:
        allowed = ", ".join(DEFAULT_CONFIG)
        raise InputError(f"{field}.{unknown[0]}", f"unknown key (allowed: {allowed})")
    clean: dict[str, Any] = {}
    for key, value in changes.items():
        name = f"{field}.{key}"
        if key in ("auto_deploy", "validation_required"):
            if not isinstance(value, bool):
                raise InputError(name, "must be true or false")
            clean[key] = value
        elif key == "max_attempts":
            low, high = MAX_ATTEMPTS_RANGE
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(name, "must be an integer")
            if not low <= value <= high:
                raise InputError(name, f"must be between {low} and {high}")
            clean[key] = value
        elif key == "trigger_on":
            clean[key] = _validate_triggers(value, name)
    return clean


def _validate_triggers(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(name, "must be a list of failure types")
    unknown = [item for item in value if item not in FAILURE_TYPES]
    if unknown:
        raise InputError(name, f"unknown failure type {unknown[0]!r} (allowed: {', '.join(FAILURE_TYPES)})")
    if not value:
        # An empty list is self-healing that never starts: failures would go unhealed with nothing said.
        raise InputError(name, "must list at least one failure type (self-healing on or off is what starts or stops healing)")
    # Keep the canonical order and drop duplicates so equal configs compare equal.
    return [item for item in FAILURE_TYPES if item in value]


def merge_config(current: dict[str, Any] | None, changes: Any) -> dict[str, Any]:
    """Keys given replace those keys; keys not given keep their values; missing keys get defaults."""
    merged = {**DEFAULT_CONFIG, **(current or {})}
    merged.update(validate_config_changes(changes))
    return merged
