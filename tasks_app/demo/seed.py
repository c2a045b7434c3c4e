"""Demo data: two self-healing tasks against the bundled demo site, and the switch that breaks the site."""

from __future__ import annotations

from django.conf import settings

from healing_app import broadcast
from tasks_app import services
from tasks_app.audit import Actor, audit_log
from tasks_app.demo.site import demo_site_set_version
from tasks_app.models import Run, Task

CONTACT_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.fill("#email", params["email"])
    page.fill("#message", "Do you ship to Lisbon?")
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''

CATALOG_CODE = '''def run(page, params):
    # The catalog lists every product with its price.
    page.goto(params["base_url"] + "/catalog")
    return {"products": page.inner_text(".products")}
'''

DEMO_TASKS = (
    {
        "name": "demo: contact form",
        "prompt": "Fill out the contact form on the demo site and return the confirmation",
        "code": CONTACT_CODE,
        "params": {"name": "Ada", "email": "ada@example.com"},
        "self_healing_config": {"auto_deploy": True},
    },
    {
        "name": "demo: price check",
        "prompt": "Extract product prices from the catalog",
        "code": CATALOG_CODE,
        "params": {},
        "self_healing_config": {"auto_deploy": False},
    },
)
DEMO = Actor(via="demo")


def demo_base_url() -> str:
    return settings.ANCHOR_SITE_URL.rstrip("/") + "/demo-site"


def demo_seed() -> list[Task]:
    """Create the demo tasks once (or return them), and put the demo site back on version 1 and the tasks back on
    the code they were seeded with, so that playing the demo again breaks and heals them again."""
    demo_site_set_version(1)
    audit_log(actor=DEMO, action="demo.switch", object_type="demo_site", object_id="1", data={"version": 1})
    tasks = []
    for spec in DEMO_TASKS:
        task = Task.objects.filter(name=spec["name"]).first()
        params = {"base_url": demo_base_url(), **spec["params"]}
        if task is None:
            task = services.task_create(
                name=spec["name"],
                prompt=spec["prompt"],
                code=spec["code"],
                params=params,
                self_healing=True,
                self_healing_config=spec["self_healing_config"],
                actor=DEMO,
            )
        elif task.params.get("base_url") != params["base_url"]:
            task = services.task_update(task=task, params=params, actor=DEMO)
        seeded = task.versions.order_by("number").first()
        if seeded is not None and task.current_version_id != seeded.pk:
            task = services.version_deploy(task=task, version=seeded, actor=DEMO, reason="the demo starts again")
        tasks.append(task)
    return tasks


def demo_tasks() -> list[Task]:
    return list(Task.objects.filter(name__in=[spec["name"] for spec in DEMO_TASKS]).order_by("name"))


def demo_switch(*, version: int, run: bool = True, actor: Actor = DEMO) -> list[Run]:
    """Switch the demo site to `version`, audited on the site and on every demo task (it changes what their runs
    meet); with `run`, start every demo task so the change shows at once."""
    demo_site_set_version(version)
    audit_log(actor=actor, action="demo.switch", object_type="demo_site", object_id=str(version), data={"version": version})
    for task in demo_tasks():
        audit_log(actor=actor, action="demo.switch", obj=task, data={"version": version})
    # Live pages only (the demo control on open dashboards); it is not a webhook event.
    broadcast.publish(kind="demo.site_changed", task_id=None, data={"version": version})
    if not run:
        return []
    return [services.run_enqueue(task=task, actor=actor) for task in demo_tasks() if task.current_version]
