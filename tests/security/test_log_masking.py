"""Log lines go through the product's own handler configuration (settings.LOGGING), and no secret gets
through it: not in the message, its arguments, an exception's text or its traceback."""

from __future__ import annotations

import io
import logging
import logging.config
import uuid

import pytest
from django.conf import settings

from tasks_app.logging import register_secret_values

SECRET = "hunter2-" + uuid.uuid4().hex[:10]


@pytest.fixture
def product_log():
    """A logger wired exactly like the product's console handler, writing into a buffer."""
    config = settings.LOGGING
    handler_conf = config["handlers"]["console"]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(config["formatters"][handler_conf["formatter"]]["format"]))
    for name in handler_conf["filters"]:
        spec = dict(config["filters"][name])
        factory = spec.pop("()")
        module, _, attr = factory.rpartition(".")
        handler.addFilter(getattr(__import__(module, fromlist=[attr]), attr)(**spec))
    logger = logging.getLogger(f"anchor.security.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    register_secret_values([SECRET])
    yield logger, stream
    logger.removeHandler(handler)


def test_a_secret_in_a_message_or_its_arguments_is_masked(product_log):
    logger, stream = product_log
    logger.info("signing in with %s", SECRET)
    logger.warning("params: %r", {"secrets": {"password": SECRET}})
    logger.error(f"inline {SECRET}")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("***") == 3


def test_a_secret_in_an_exception_and_its_traceback_is_masked(product_log):
    logger, stream = product_log
    try:
        raise ValueError(f"fill failed for value {SECRET!r}")
    except ValueError:
        logger.exception("the agent crashed")
    text = stream.getvalue()
    assert "the agent crashed" in text and "Traceback" in text and "ValueError" in text
    assert SECRET not in text


def test_credentials_with_a_known_shape_are_masked_even_if_never_registered(product_log):
    logger, stream = product_log
    for credential in ("ak_" + "A1b2C3d4E5f6G7h8", "whsec_" + "QUJDREVGR0hJSktMTU5P", "sk-" + "proj0123456789abcdef"):
        logger.info("using %s", credential)
        assert credential not in stream.getvalue()


def test_djangos_own_loggers_write_only_through_the_masking_handler():
    """Django gives its `django` logger a console handler of its own (DEBUG only, without our filter): each
    line it logged was printed twice, once unmasked. Its lines must go to the root's masked handler alone."""
    django_logger = logging.getLogger("django")
    assert django_logger.handlers == []
    assert django_logger.propagate
    root_filters = [type(f).__name__ for handler in logging.getLogger().handlers for f in handler.filters]
    assert "MaskSecretsFilter" in root_filters
