"""Run a task synchronously in this process and print its trace as it goes: for people debugging a task."""

import json

from django.core.management.base import BaseCommand, CommandError

from tasks_app import execution, services
from tasks_app.audit import Actor
from tasks_app.models import Run, Task


class Command(BaseCommand):
    help = "Run a task now (no worker needed), printing each step as it happens."

    def add_arguments(self, parser):
        parser.add_argument("task_id")
        # Not --version: Django's BaseCommand owns that one (it prints Django's version).
        parser.add_argument("--code-version", dest="version", type=int, help="version number to run (default: current)")
        parser.add_argument("--params", default="{}", help="JSON object merged over the task's params")

    def handle(self, *args, task_id: str, version: int | None, params: str, **options):
        task = Task.objects.filter(pk=task_id).first() or Task.objects.filter(name=task_id).first()
        if task is None:
            raise CommandError(f"no task with id or name {task_id!r}")
        try:
            extra = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not JSON: {exc.msg}") from exc
        chosen = task.versions.filter(number=version).first() if version else task.current_version
        if version and chosen is None:
            raise CommandError(f"{task.pk} has no version {version}")
        try:
            run = services.run_create(task=task, version=chosen, params=extra, actor=Actor(via="run_task command"))
        except services.InputError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from exc
        claimed = execution.run_claim(run.pk)
        self.stdout.write(f"{run.pk}: {task.name} v{chosen.number}")
        result = execution.run_execute(claimed, on_step_extra=self._print_step)
        run = execution.run_finish(claimed, result)
        style = self.style.SUCCESS if run.status != Run.Status.FAILED else self.style.ERROR
        self.stdout.write(style(f"{run.status}" + (f": {run.error_type}: {run.error_message}" if run.error_type else "")))
        if run.output is not None:
            self.stdout.write(json.dumps(run.output, indent=2))

    def _print_step(self, step) -> None:
        mark = {"ok": "✓", "recovered": "↻", "error": "✗"}.get(step.outcome, "?")
        target = f" {step.selector}" if step.selector else ""
        self.stdout.write(f"  {mark} line {step.line}: {step.action}{target} ({step.duration_ms:.0f} ms)")
