"""Play the whole self-healing loop once: run the demo tasks, break the demo site, watch them heal."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.demo.seed import DEMO, demo_seed, demo_switch
from tasks_app.models import Run

SETTLED = (HealingEvent.Status.DEPLOYED, HealingEvent.Status.PENDING_REVIEW, HealingEvent.Status.FAILED, HealingEvent.Status.REJECTED)


class Command(BaseCommand):
    help = "Seed the demo, run it on version 1, switch the site to version 2, and wait for the heals."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each phase")

    def handle(self, *args, timeout: float, **options):
        tasks = demo_seed()
        base = settings.ANCHOR_SITE_URL.rstrip("/")
        self.stdout.write("1/3 Running the demo tasks on the demo site's version 1 (they succeed, and the product learns their elements)…")
        runs = [services.run_enqueue(task=task, actor=DEMO) for task in tasks]
        self._wait_runs(runs, timeout)
        self.stdout.write("2/3 Changing the demo site to version 2: the contact button is renamed and the catalog moves…")
        runs = demo_switch(version=2)
        self._wait_runs(runs, timeout)
        self.stdout.write("3/3 Waiting for the healed versions to be validated…")
        # A run that succeeded met nothing to heal; one that failed before healing started has its event already.
        broken = [run.pk for run in Run.objects.filter(pk__in=[run.pk for run in runs]).exclude(status=Run.Status.SUCCEEDED)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = list(HealingEvent.objects.filter(run__in=broken).select_related("task", "new_version"))
            if len(events) >= len(broken) and all(e.status in SETTLED for e in events):
                break
            time.sleep(0.5)
        else:
            waiting = ", ".join(f"{e.pk} ({e.status})" for e in events if e.status not in SETTLED) or "no heal started"
            raise CommandError(f"the heals did not settle in time: {waiting}; see the worker's log")
        for event in events:
            version = f"v{event.new_version.number}" if event.new_version else "no new version"
            self.stdout.write(self.style.SUCCESS(f"  {event.task.name}: {event.error_type} → {event.status} ({version})"))
            self.stdout.write(f"    {event.root_cause or event.reason}")
            if event.status == HealingEvent.Status.FAILED and event.root_cause and event.reason:
                # Played again, the catalog's fix is the one waiting for review since the last play.
                self.stdout.write(f"    Not deployed: {event.reason}")
            self.stdout.write(f"    {base}/events/{event.pk}/")
        self.stdout.write(f"Open {base}/ to review the heal that waits for you.")

    def _wait_runs(self, runs: list[Run], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ids = [run.pk for run in runs]
        while time.monotonic() < deadline:
            finished = list(Run.objects.filter(pk__in=ids, status__in=Run.FINISHED).select_related("task"))
            if len(finished) == len(ids):
                for run in finished:
                    detail = f" ({run.error_type}: {run.error_message[:80]})" if run.status == Run.Status.FAILED else ""
                    self.stdout.write(f"  {run.task.name}: {run.status}{detail}")
                return
            time.sleep(0.3)
        raise CommandError("runs did not finish in time; is an RQ worker running (`manage.py rqworker runs healing webhooks`)?")
