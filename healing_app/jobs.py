"""RQ jobs for healing. Thin: each calls one pipeline step by id; the step itself is idempotent."""

from healing_app import pipeline


def heal_generate(event_id: str) -> None:
    pipeline.heal_generate(event_id)
