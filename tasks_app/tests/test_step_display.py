"""How a step reads on the dashboard (a run's steps, live or not, and a heal's failing step)."""

from django.template.loader import render_to_string


def test_a_step_inside_an_iframe_reads_as_its_selector_in_that_frame():
    step = {"index": 0, "line": 3, "action": "fill", "outcome": "recovered",
            "selector": "#contact-form >> internal:control=enter-frame >> #name<b>",
            "recovery": {"how": "retry", "selector": "#contact-form >> internal:control=enter-frame >> #name<b>"}}

    html = render_to_string("tasks/_step.html", {"step": step})

    assert html.count("#name&lt;b&gt; (in the frame #contact-form)") == 2 and "enter-frame" not in html


def test_a_step_of_the_page_itself_reads_as_its_selector():
    step = {"index": 0, "line": 3, "action": "click", "outcome": "ok", "selector": "form >> text=Send"}

    assert '<span class="mono">form &gt;&gt; text=Send</span>' in render_to_string("tasks/_step.html", {"step": step})
