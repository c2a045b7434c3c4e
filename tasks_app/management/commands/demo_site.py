from django.core.management.base import BaseCommand, CommandError

from tasks_app.demo.seed import demo_switch
from tasks_app.demo.site import VERSIONS, demo_site_version


class Command(BaseCommand):
    help = "Show or change the bundled demo site's version (2 breaks the demo tasks so they heal)."

    def add_arguments(self, parser):
        # Positional: Django's BaseCommand owns --version (it prints Django's version).
        parser.add_argument("version", nargs="?", type=int, choices=VERSIONS, help="switch the demo site to this version")
        parser.add_argument("--run", action="store_true", help="also start every demo task right away")

    def handle(self, *args, version=None, run=False, **options):
        if version is None:
            self.stdout.write(f"The demo site is on version {demo_site_version()}.")
            return
        try:
            runs = demo_switch(version=version, run=run)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"The demo site is now on version {version}."))
        for started in runs:
            self.stdout.write(f"  started {started.pk} for {started.task.name}")
