"""Create an API key for a user (printed once, never again), or revoke one by its id."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tasks_app.api_keys import api_key_create, api_key_revoke
from tasks_app.audit import Actor
from tasks_app.config import InputError
from tasks_app.models import ApiKey

ACTOR = Actor(via="create_api_key command")


class Command(BaseCommand):
    help = "Create an API key for --user (the key is printed once), or --revoke KEY_ID."

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--user", help="username of the key's owner; the API acts as this user")
        group.add_argument("--revoke", metavar="KEY_ID", help="revoke the key with this id (key_…)")
        parser.add_argument("--name", default="", help="a label to tell keys apart, e.g. 'CI'")

    def handle(self, *args, user: str | None, revoke: str | None, name: str, **options):
        if revoke:
            self._revoke(revoke)
            return
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user named {user!r}")
        if not owner.is_active:
            raise CommandError(f"user {user!r} is inactive; its keys would not work")
        try:
            key, raw = api_key_create(user=owner, name=name or "API key", actor=ACTOR)
        except InputError as exc:
            raise CommandError(f"--{exc.field} {exc.message}") from exc
        # The key alone on stdout, so scripts can capture it; everything else goes to stderr.
        self.stderr.write(f"Created {key.id} ({key.name}) for {owner.get_username()}. It is shown only now:")
        self.stdout.write(raw)

    def _revoke(self, key_id: str) -> None:
        key = ApiKey.objects.filter(pk=key_id).first()
        if key is None:
            raise CommandError(f"no API key with id {key_id!r}")
        if not key.is_active:
            self.stderr.write(f"{key.id} was already revoked at {key.revoked_at:%Y-%m-%d %H:%M} UTC")
            return
        api_key_revoke(key=key, actor=ACTOR)
        self.stdout.write(f"Revoked {key.id} ({key.name}) of {key.user.get_username()}")
