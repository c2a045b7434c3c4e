"""Standard Webhooks delivery. (Being built: fan-out, signing, SSRF guard.)"""


def webhooks_fan_out(*, event_type: str, task_id: str | None, data: dict) -> None:
    return None
