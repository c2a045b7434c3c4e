"""Forms for the task pages. They shape input for tasks_app.services, which owns the rules."""

from __future__ import annotations

from django import forms

from tasks_app.config import FAILURE_TYPES, MAX_ATTEMPTS_RANGE
from tasks_app.models import MAX_INT, Task

# The services name config errors "self_healing_config.max_attempts"; the form shows them next to "max_attempts".
SERVICE_FIELD_TO_FORM = {
    "self_healing": "self_healing",
    **{f"self_healing_config.{key}": key for key in ("trigger_on", "max_attempts", "auto_deploy", "validation_required")},
    "self_healing_config": None,
}


class HealingConfigForm(forms.Form):
    self_healing = forms.BooleanField(required=False, label="Self-healing on")
    trigger_on = forms.MultipleChoiceField(
        required=False,
        label="Heal these failures",
        choices=[(t, t.replace("_", " ")) for t in FAILURE_TYPES],
        widget=forms.CheckboxSelectMultiple,
    )
    max_attempts = forms.IntegerField(
        label="Max heal attempts per step and version", min_value=MAX_ATTEMPTS_RANGE[0], max_value=MAX_ATTEMPTS_RANGE[1]
    )
    auto_deploy = forms.BooleanField(required=False, label="Deploy healed versions without review")
    validation_required = forms.BooleanField(required=False, label="Validate a healed version with a run first")

    @classmethod
    def for_task(cls, task: Task, data=None) -> HealingConfigForm:
        config = task.config
        initial = {"self_healing": task.self_healing, **{key: config[key] for key in config}}
        return cls(data=data, initial=initial)

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "self_healing": data["self_healing"],
            "self_healing_config": {
                "trigger_on": list(data["trigger_on"]),
                "max_attempts": data["max_attempts"],
                "auto_deploy": data["auto_deploy"],
                "validation_required": data["validation_required"],
            },
        }

    def add_service_error(self, field: str, message: str) -> None:
        self.add_error(SERVICE_FIELD_TO_FORM.get(field), message)


class DiffForm(forms.Form):
    """Two version numbers of one task to compare."""

    a = forms.IntegerField(min_value=1, max_value=MAX_INT, label="From version")
    b = forms.IntegerField(min_value=1, max_value=MAX_INT, label="To version")


class DeployForm(forms.Form):
    """The version number a deploy or rollback button sends."""

    # ASCII digits only: "²".isdigit() is true but int("²") raises (it was a 500), and int("٣") reads 3.
    version = forms.RegexField(regex=r"\A[0-9]{1,10}\Z")

    def clean_version(self) -> int:
        number = int(self.cleaned_data["version"])
        if not 1 <= number <= MAX_INT:
            raise forms.ValidationError("no such version")
        return number
