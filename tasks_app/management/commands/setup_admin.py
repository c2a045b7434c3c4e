import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from healing_app.permissions import reviewers_group
from tasks_app.audit import Actor, audit_log


class Command(BaseCommand):
    help = "Create the 'admin' superuser (a reviewer) with a random password, once; print how to log in."

    def handle(self, *args, **options):
        User = get_user_model()
        actor = Actor(via="setup_admin command")
        password_file = settings.VAR_DIR / "admin_password.txt"
        user = User.objects.filter(username="admin").first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser("admin", "admin@localhost", password)
            audit_log(actor=actor, action="user.create", obj=user, data={"name": "admin", "superuser": True})
            password_file.write_text(password)
            password_file.chmod(0o600)
        reviewers = reviewers_group()
        if not user.groups.filter(pk=reviewers.pk).exists():
            user.groups.add(reviewers)
            audit_log(actor=actor, action="user.update", obj=user, data={"groups": [reviewers.name]})
        password = password_file.read_text().strip() if password_file.exists() else "(set before; see manage.py changepassword admin)"
        self.stdout.write(f"Log in as: admin / {password}")
