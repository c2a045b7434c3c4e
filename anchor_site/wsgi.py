import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anchor_site.settings")
application = get_wsgi_application()

from tasks_app.runner.browser import hide_from_same_uid  # noqa: E402

hide_from_same_uid()  # as the ASGI entry point: runs under this uid cannot read our environment
