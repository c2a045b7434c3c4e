"""How the dashboard shows a step."""

from django import template

from tasks_app.runner.protocol import ENTER_FRAME

register = template.Library()


@register.filter
def readable_selector(selector: str | None) -> str | None:
    """Playwright's selector into an iframe as a person says it: `#form >> internal:control=enter-frame >> #name`
    is `#name` in the frame `#form`."""
    if not selector or ENTER_FRAME not in selector:
        return selector
    *frames, inner = selector.split(ENTER_FRAME)
    return f"{inner} (in the frame {' › '.join(frames)})"
