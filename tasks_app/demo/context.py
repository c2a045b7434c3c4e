"""Template context for the demo control: shown only when the demo tasks exist."""

from django.utils.functional import SimpleLazyObject

from tasks_app.demo.seed import DEMO_TASKS
from tasks_app.demo.site import demo_site_version
from tasks_app.models import Task


def demo(request) -> dict:
    # Lazy: only pages that show the control pay for the query.
    return {"demo": SimpleLazyObject(lambda: _demo_state(request))}


def _demo_state(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not Task.objects.filter(name=DEMO_TASKS[0]["name"]).exists():
        return {}
    return {"version": demo_site_version()}
