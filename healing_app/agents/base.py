"""The RuntimeAgent protocol: what every agent (heuristic or LLM) does during and after a takeover.

An agent works in the worker process while the sandboxed run is paused at its failing step. It talks
to the page only through the runner's `Handover` (observe, act, retry the step, resume, abort), so it
never holds the browser itself, and the child never sees the agent's keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class TakeoverContext:
    task_id: str
    prompt: str
    code: str
    failure: dict  # the runner's Failure as a dict: type, message, action, selector, line, step_key, url, http_status
    stored_fingerprint: dict | None  # what the element looked like when the step last succeeded
    rejected_elements: list[dict] = field(default_factory=list)  # reviewers rejected these for this step: never again
    rejected_paths: list[str] = field(default_factory=list)  # pages reviewers rejected as this step's moved page
    secret_keys: list[str] = field(default_factory=list)  # names only; values stay in the child
    allowed_hosts: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    # Selector -> the text its element had when a step after the failing one last succeeded: what the page
    # the run should be on reads like (a moved page is told from a look-alike by it).
    later_texts: dict[str, str] = field(default_factory=dict)
    # The fingerprints of the elements of the steps after the failing one, when they last succeeded: a form whose
    # later steps' elements the page still shows was not moved into a frame.
    later_elements: list[dict] = field(default_factory=list)


@dataclass
class TakeoverOutcome:
    """What the takeover did. `recovery` is the machine-readable fix that code generation turns into a patch."""

    recovered: bool
    reason: str = ""
    recovery: dict | None = None
    # Other fixes the takeover needed for `recovery` to work (a banner it closed over the re-found element).
    also: list[dict] = field(default_factory=list)
    needs_human: bool = False
    trace: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    chosen_element: dict | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Patch:
    root_cause: str
    code: str | None  # None: no code change is needed (for example a transient error that a retry fixed)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    trace: list[dict] = field(default_factory=list)  # the model's requests for the patch (request ids), if any


class RuntimeAgent(Protocol):
    kind: str

    def take_over(self, context: TakeoverContext, handover: Any) -> TakeoverOutcome:
        """Complete the paused step through `handover` (retry_step / resume) or abort it."""

    def write_patch(self, *, code: str, recoveries: list[dict], failure: dict, prompt: str) -> Patch:
        """Name the root cause and produce the new code from what the takeover did."""
