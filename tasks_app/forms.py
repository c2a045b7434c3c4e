"""Forms for the task pages. They shape input for tasks_app.services, which owns the rules."""

from __future__ import annotations

from django import forms

from tasks_app.config import DEFAULT_CONFIG, FAILURE_TYPES, MAX_ATTEMPTS_RANGE
from tasks_app.models import MAX_INT, Task

# The services name config errors "self_healing_config.max_attempts"; the form shows them next to "max_attempts".
SERVICE_FIELD_TO_FORM = {
    "self_healing": "self_healing",
    **{f"self_healing_config.{key}": key for key in ("trigger_on", "max_attempts", "auto_deploy", "validation_required")},
    "self_healing_config": None,
}


class HealingConfigFields(forms.Form):
    """The four self_healing_config fields, as the dashboard's settings form and the admin both show them."""

    trigger_on = forms.MultipleChoiceField(
        required=False,
        label="Heal these failures",
        choices=[(t, t.replace("_", " ")) for t in FAILURE_TYPES],
        widget=forms.CheckboxSelectMultiple,
        initial=DEFAULT_CONFIG["trigger_on"],
    )
    max_attempts = forms.IntegerField(
        label="Max heal attempts per step and version",
        min_value=MAX_ATTEMPTS_RANGE[0],
        max_value=MAX_ATTEMPTS_RANGE[1],
        initial=DEFAULT_CONFIG["max_attempts"],
    )
    auto_deploy = forms.BooleanField(
        required=False, label="Deploy healed versions without review", initial=DEFAULT_CONFIG["auto_deploy"]
    )
    validation_required = forms.BooleanField(
        required=False,
        label="Validate a healed version with a run first",
        initial=DEFAULT_CONFIG["validation_required"],
    )

    def show_config_of(self, task: Task) -> None:
        for key, value in task.config.items():
            self.fields[key].initial = value

    def config_changes(self) -> dict:
        data = self.cleaned_data
        return {
            "trigger_on": list(data["trigger_on"]),
            "max_attempts": data["max_attempts"],
            "auto_deploy": data["auto_deploy"],
            "validation_required": data["validation_required"],
        }


class HealingConfigForm(HealingConfigFields):
    self_healing = forms.BooleanField(required=False, label="Self-healing on")
    field_order = ["self_healing", "trigger_on", "max_attempts", "auto_deploy", "validation_required"]

    @classmethod
    def for_task(cls, task: Task, data=None) -> HealingConfigForm:
        form = cls(data=data, initial={"self_healing": task.self_healing})
        form.show_config_of(task)
        return form

    def service_kwargs(self) -> dict:
        return {"self_healing": self.cleaned_data["self_healing"], "self_healing_config": self.config_changes()}

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
