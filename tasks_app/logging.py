"""Log filtering that keeps secrets out of every log line."""

from __future__ import annotations

import logging
import re
import threading

# Credentials with a recognisable shape are masked wherever they appear.
_SHAPED = re.compile(r"\b(ak_[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|sk-[A-Za-z0-9_\-]{8,})")

_known_lock = threading.Lock()
_known_values: set[str] = set()


def register_secret_values(values) -> None:
    """Remember secret values (task secrets loaded in this process) so any log line that contains them is masked."""
    with _known_lock:
        _known_values.update(v for v in values if isinstance(v, str) and len(v) >= 4)


def mask_text(text: str) -> str:
    text = _SHAPED.sub("***", text)
    with _known_lock:
        known = sorted(_known_values, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    return text


class MaskSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        # A traceback repeats the exception's text (often a value the code was handling). Formatters print
        # a record's exc_text when it is set, so it is formatted and masked here once.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
