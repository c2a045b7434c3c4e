"""Forms for the task pages. They shape input for tasks_app.services, which owns the rules."""

from __future__ import annotations

import json

from django import forms

from tasks_app import services
from tasks_app.config import DEFAULT_CONFIG, FAILURE_TYPES, MAX_ATTEMPTS_RANGE, InputError, validate_config_changes
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

    def clean(self):
        cleaned = super().clean()
        # The services' rules for each key, all at once: a form that shows one error per submit is a chore.
        for key, value in self.config_changes().items():
            try:
                validate_config_changes({key: value})
            except InputError as exc:
                self.add_error(key, exc.message)
        return cleaned

    def config_changes(self) -> dict:
        """The config keys whose fields are valid (all four, once the form is)."""
        data = self.cleaned_data
        changes = {key: data[key] for key in ("trigger_on", "max_attempts", "auto_deploy", "validation_required") if key in data}
        if "trigger_on" in changes:
            changes["trigger_on"] = list(changes["trigger_on"])
        return changes


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


class TypedJSONField(forms.JSONField):
    """A JSON textarea that shows back exactly what was typed. Django re-encodes the parsed value, which
    loses the person's layout and, for a lone surrogate escape ("\\ud800"), makes a page that cannot be
    encoded (it was a 500 instead of the error next to the field)."""

    def bound_data(self, data, initial):
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        return forms.fields.InvalidJSONInput(data)  # the type JSONField renders as it is, unparsed


class WriteOnlyTextarea(forms.Textarea):
    """Never shows a value: a form sent back with an error must not put the secrets typed into it in the page."""

    def format_value(self, value):
        return None


class TaskForm(HealingConfigFields, forms.ModelForm):
    """A whole task, as the dashboard's new and edit pages and the admin show it. Config and code are plain
    fields here, handed to the services as one partial update; the services' own checks run in clean()."""

    code = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 16, "cols": 100, "spellcheck": "false"}),
        required=False,
        strip=False,
        help_text="Saving changed code creates a new version (source: manual); versions are never edited.",
    )
    new_secrets = forms.CharField(
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        required=False,
        label="Replace secrets",
        help_text='JSON object, e.g. {"username": "...", "password": "..."}. Write-only: current values are never shown.',
    )

    class Meta:
        model = Task
        fields = ["name", "prompt", "params", "self_healing", "healing_agent", "monthly_budget_usd", "schedule"]
        labels = {"self_healing": "Self-healing on", "monthly_budget_usd": "Monthly LLM budget (USD)"}
        widgets = {"prompt": forms.Textarea(attrs={"rows": 3}), "params": forms.Textarea(attrs={"rows": 3})}
        field_classes = {"params": TypedJSONField}

    # The dashboard's order (the admin groups the same fields in fieldsets of its own).
    field_order = [
        "name", "prompt", "code", "params", "new_secrets", "self_healing", "trigger_on", "max_attempts", "auto_deploy",
        "validation_required", "healing_agent", "monthly_budget_usd", "schedule",
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        task = self.instance
        # Not task.pk: a new Task has one already (its id is a default), so that read every form as an edit.
        self.existing = task if not task._state.adding else None
        if self.existing:
            self.show_config_of(task)
            if task.current_version:
                self.fields["code"].initial = task.current_version.code
        else:
            self.fields["new_secrets"].label = "Secrets"
            self.fields["code"].help_text = (
                "A module with def run(page, params). Left empty, a configured LLM writes it from the prompt."
            )

    def clean_new_secrets(self):
        raw = self.cleaned_data["new_secrets"].strip()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc.msg}") from None

    def clean(self):
        cleaned = super().clean()  # the config keys are checked there
        # The services' own checks now, one value at a time, so that every bad value shows next to its field
        # at once instead of failing the save (and then the next one, one per submit).
        changes = self.service_changes()
        for field, value in changes.items():
            if field == "self_healing_config":
                continue
            try:
                services.task_field_check(self.existing, field, value)
            except InputError as exc:
                self.add_error(None, self.errors_for(exc))
        if not {"prompt", "code"} & set(self.errors):  # the rule across both, once each is sound on its own
            try:
                services.task_code_or_prompt_check(self.existing, changes)
            except InputError as exc:
                self.add_error(None, self.errors_for(exc))
        if self.errors and self.data.get(self.add_prefix("new_secrets"), "").strip() and "new_secrets" not in self.errors:
            self.add_error("new_secrets", "type the secrets again: a form sent back with errors does not show them")
        return cleaned

    def errors_for(self, exc: InputError) -> dict:
        """The service's error next to the form field it is about."""
        top, _, inner = exc.field.partition(".")
        if top in ("params", "secrets"):  # JSON fields: say where inside them
            field = "new_secrets" if top == "secrets" else top
            return {field: f"{inner}: {exc.message}" if inner else exc.message}
        field = exc.field.rsplit(".", 1)[-1]  # self_healing_config.max_attempts has a field of its own
        return {field if field in self.fields else None: exc.message}

    def service_changes(self) -> dict:
        """The form's values as the services take them: every field once the form is valid (in clean(), the
        fields valid so far)."""
        data = self.cleaned_data
        plain = ("name", "prompt", "self_healing", "healing_agent", "schedule", "monthly_budget_usd")
        changes = {field: data[field] for field in plain if field in data}
        if "params" in data:
            changes["params"] = data["params"] or {}
        changes["self_healing_config"] = self.config_changes()
        if data.get("new_secrets") is not None:
            changes["secrets"] = data["new_secrets"]
        # Browsers send textarea line breaks as CRLF; compare and store code with plain newlines.
        code = (data.get("code") or "").replace("\r\n", "\n")
        current = self.existing.current_version.code if self.existing and self.existing.current_version else None
        if code.strip() and code != current:
            changes["code"] = code
        return changes


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
