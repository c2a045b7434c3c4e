"""Builders for healing tests: a task with two versions and an event waiting for review."""

from __future__ import annotations

from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.models import CodeVersion, Run

CODE_V1 = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.click("#submit")
    return {"ok": True}
'''
CODE_V2 = CODE_V1.replace('"#submit"', '"[data-testid=\\"send\\"]"')


def pending_event(*, auto_deploy: bool = False) -> HealingEvent:
    task = services.task_create(
        name="contact form", code=CODE_V1, self_healing=True, self_healing_config={"auto_deploy": auto_deploy}
    )
    original = task.current_version
    new = services.version_create(task=task, code=CODE_V2, source=CodeVersion.Source.HEALED, parent=original)
    run = Run.objects.create(task=task, version=original, status=Run.Status.HEALED)
    event = HealingEvent.objects.create(
        task=task,
        run=run,
        error_type="element_not_found",
        original_version=original,
        new_version=new,
        status=HealingEvent.Status.PENDING_REVIEW,
        chosen_element={"tag": "BUTTON", "id": "send-btn", "text": "Send", "xpath": "/html/body/form/button"},
        step_key="3:click:#submit",
    )
    return event
