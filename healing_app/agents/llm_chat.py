"""What the LLM agent and the code writer share: the bounded Chat Completions loop, its limits, and
how page data and secrets are shaped before they reach a model.

The takeover agent (llm.py) and the writer of version 1 from a prompt (task_generation.py) both talk
to the model through `Chat`, show pages through `page_view`, keep secrets as `{{secret:NAME}}`
placeholders and record every call with `trace_entry`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets as pysecrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from healing_app.agents.llm import LLMAgent

logger = logging.getLogger(__name__)


OMITTED = "(older page view omitted)"


PLACEHOLDER = re.compile(r"^\{\{secret:([\w.-]+)\}\}$")


PLACEHOLDER_IN_CODE = re.compile(r"""(?P<q>["'])\{\{secret:(?P<key>[\w-]+)\}\}(?P=q)""")


@dataclass(frozen=True)
class Limits:
    """Bounds of one takeover or one patch. Defaults fit inside the runner's hand-over budget (300 s)
    and the `runs` job timeout; each can be set in settings (LLM_MAX_STEPS, ...)."""

    max_steps: int = 12  # model replies per takeover
    max_seconds: float = 60.0  # wall clock of a takeover, retries and page actions included
    max_tokens: int = 60_000  # prompt + completion tokens per takeover
    max_completion_tokens: int = 1_500  # per reply
    max_retries: int = 2  # per request, on 429, 5xx, timeouts and connection errors
    patch_seconds: float = 90.0
    max_elements: int = 60  # elements in one page view
    text_chars: int = 1_500  # page text in one page view
    max_wait_ms: int = 30_000  # longest wait or step timeout the model may ask for

    @classmethod
    def from_settings(cls) -> Limits:
        names = {
            "max_steps": "LLM_MAX_STEPS",
            "max_seconds": "LLM_TAKEOVER_SECONDS",
            "max_tokens": "LLM_MAX_TOKENS_PER_HEAL",
            "max_retries": "LLM_MAX_RETRIES",
        }
        return cls(**{field_: getattr(settings, name) for field_, name in names.items() if hasattr(settings, name)})


# A tool call needs a few dozen tokens; a reply allowed fewer than this is not worth the request.
MIN_COMPLETION_TOKENS = 64


def estimated_tokens(messages: list[dict], tools: list[dict]) -> int:
    """About four characters a token (no tokenizer offline); the request's own tokens, before sending it."""
    return len(json.dumps(messages, ensure_ascii=False)) // 4 + len(json.dumps(tools)) // 4


class LLMUnavailable(Exception):
    """The model could not be used for this request (after the bounded retries); fall back."""


class ModelRefused(LLMUnavailable):
    """The model declined the request (`message.refusal`): asking again gets the same answer, so fall back at once."""


class Stopped(Exception):
    """The run was stopped (cancelled, or out of time) while the model was being asked; its answer is not awaited.
    Not an LLMUnavailable: the model did nothing wrong, and there is no run left to hand to another agent."""


def tool(name: str, description: str, properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(required),
                "additionalProperties": False,
            },
        },
    }


class Chat:
    """Calls Chat Completions with bounded retries inside a deadline, and keeps the token count."""

    def __init__(self, agent: LLMAgent, *, deadline: float, trace: list[dict],
                 stop: threading.Event | None = None) -> None:
        self.agent = agent
        self.deadline = deadline
        self.trace = trace
        self.stop = stop  # set when the run underneath is stopped: a request in flight is abandoned
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @property
    def tokens(self) -> tuple[int, int]:
        return self.prompt_tokens, self.completion_tokens

    @property
    def tokens_total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def complete(
        self, messages: list[dict], *, tools: list[dict], tool_choice: Any = None, max_completion_tokens: int | None = None
    ):
        import openai

        limits = self.agent.limits
        body = {
            "model": self.agent.model,
            "messages": self.agent.scrub_secrets(messages),
            "tools": tools,
            "max_completion_tokens": max_completion_tokens or limits.max_completion_tokens,
        }
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        last_error = "no attempt"
        for attempt in range(1, limits.max_retries + 2):
            remaining = self.deadline - time.monotonic()
            if remaining < 1.0:
                raise LLMUnavailable(f"time budget used up ({last_error})" if attempt > 1 else "time budget used up")
            timeout = min(settings.OPENAI_TIMEOUT_S, remaining)
            started = time.monotonic()
            try:
                response = self._send(body, timeout, started)
            except openai.APIStatusError as exc:
                retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
                last_error = f"HTTP {exc.status_code}"
                self._failed(attempt, exc.request_id, last_error, started)
                if not retryable:
                    raise LLMUnavailable(
                        f"the LLM API refused the request: HTTP {exc.status_code} (request id {exc.request_id})"
                    ) from exc
                delay = retry_after(exc.response) or 0.5 * 2 ** (attempt - 1)
            except openai.APITimeoutError as exc:
                last_error = f"no answer within {timeout:.1f} s"
                self._failed(attempt, None, last_error, started)
                delay = 0.0
                if timeout < settings.OPENAI_TIMEOUT_S:  # the deadline, not the API, cut this one short
                    raise LLMUnavailable(f"time budget used up ({last_error})") from exc
            except openai.APIConnectionError as exc:
                last_error = f"connection failed: {type(exc.__cause__ or exc).__name__}"
                self._failed(attempt, None, last_error, started)
                delay = 0.5 * 2 ** (attempt - 1)
            except (openai.APIResponseValidationError, ValueError) as exc:  # a 200 that is no Chat Completion
                self._failed(attempt, None, "the answer is not a Chat Completion", started)
                raise LLMUnavailable(f"the LLM API answered with something that is not a Chat Completion: {exc}") from exc
            else:
                request_id, parsed = response
                return self._succeeded(parsed, body, request_id=request_id, attempt=attempt, started=started)
            if attempt > limits.max_retries:
                break
            self._pause(max(0.0, min(delay, self.deadline - time.monotonic() - 1.0)))
        raise LLMUnavailable(f"the LLM API failed {limits.max_retries + 1} times; last: {last_error}")

    def _send(self, body: dict, timeout: float, started: float):
        """One request. While the run underneath lives, it is awaited in a thread of its own, so that a cancel
        or the hand-over's deadline ends the takeover at once rather than after the model's answer."""

        def request():
            # The raw response, for its request id: an answer that is not a Chat Completion has none of its own.
            raw = self.agent.client.with_options(
                timeout=timeout, max_retries=0
            ).chat.completions.with_raw_response.create(**body)
            return raw.headers.get("x-request-id"), raw.parse()

        if self.stop is None:
            return request()
        if self.stop.is_set():
            raise Stopped("the run was stopped before the model was asked")
        answer: dict[str, Any] = {}
        done = threading.Event()

        def ask() -> None:
            try:
                answer["response"] = request()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                answer["error"] = exc
            finally:
                done.set()

        threading.Thread(target=ask, name="llm-request", daemon=True).start()
        while not done.wait(0.1):
            if self.stop.is_set():
                # The abandoned request may still be billed: its prompt counts, by estimate.
                estimate = estimated_tokens(body["messages"], body["tools"])
                self.prompt_tokens += estimate
                self.trace.append(trace_entry(
                    "llm_abandoned", reason="the run was stopped", estimated_prompt_tokens=estimate,
                    ms=int((time.monotonic() - started) * 1000),
                ))
                raise Stopped("the run was stopped while the model was being asked")
        if "error" in answer:
            raise answer["error"]
        return answer["response"]

    def _pause(self, seconds: float) -> None:
        if self.stop is None:
            time.sleep(seconds)
        elif self.stop.wait(seconds):
            raise Stopped("the run was stopped while waiting to ask the model again")

    def _failed(self, attempt: int, request_id: str | None, error: str, started: float) -> None:
        ms = int((time.monotonic() - started) * 1000)
        logger.warning("LLM request failed: %s (request id %s, attempt %d, %d ms)", error, request_id, attempt, ms)
        self.trace.append(trace_entry("llm_error", error=error, request_id=request_id, attempt=attempt, ms=ms))

    def _succeeded(self, response, body: dict, *, request_id: str | None, attempt: int, started: float):
        ms = int((time.monotonic() - started) * 1000)
        message = reply_message(response)
        prompt_tokens, completion_tokens, estimated = reply_usage(response, message, body)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if message is None:
            # A 200 from a gateway or a server that does not speak Chat Completions; it may still be billed.
            self._failed(attempt, request_id, "the answer is not a Chat Completion", started)
            raise LLMUnavailable(
                f"the LLM API answered with something that is not a Chat Completion (request id {request_id})"
            )
        model = getattr(response, "model", None)
        logger.info(
            "LLM request %s: model %s, %d prompt + %d completion tokens%s, %d ms",
            request_id, model, prompt_tokens, completion_tokens, " (estimated)" if estimated else "", ms,
        )
        self.trace.append(
            trace_entry(
                "llm_call",
                request_id=request_id,
                model=model if isinstance(model, str) else None,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                tokens_estimated=estimated or None,
                ms=ms,
                attempt=attempt,
            )
        )
        refusal = getattr(message, "refusal", None)
        if refusal:
            text = clip(str(refusal), 300)
            self.trace.append(trace_entry("model_refusal", request_id=request_id, text=text))
            raise ModelRefused(f"the model refused: {text}")
        return message


def reply_message(response) -> Any | None:
    """The assistant message of a Chat Completion, or None when `response` is not one: the client accepts any
    JSON from a 200 (`[]`, `"hello"`, a choice without a message) and leaves the checking to us."""
    from openai.types.chat import ChatCompletionMessage

    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    message = getattr(choices[0], "message", None)
    if not isinstance(message, ChatCompletionMessage):
        return None
    if message.content is not None and not isinstance(message.content, str):
        return None
    calls = message.tool_calls
    if calls is not None and not (isinstance(calls, list) and all(_is_function_call(c) for c in calls)):
        return None
    return message


def _is_function_call(call) -> bool:
    function = getattr(call, "function", None)
    return isinstance(getattr(function, "name", None), str) and isinstance(getattr(function, "arguments", None), str | None)


def reply_usage(response, message, body: dict) -> tuple[int, int, bool]:
    """(prompt, completion, estimated) tokens of a reply. A server that reports no usage still bills: its tokens are
    estimated the way an abandoned request's are, rather than counted as free."""
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    estimated = False
    if not isinstance(prompt, int) or isinstance(prompt, bool):
        prompt, estimated = estimated_tokens(body["messages"], body["tools"]), True
    if not isinstance(completion, int) or isinstance(completion, bool):
        completion, estimated = estimated_reply_tokens(message), True
    return prompt, completion, estimated


def estimated_reply_tokens(message) -> int:
    if message is None:
        return 0
    text = (message.content or "") + "".join(
        (c.function.name or "") + (c.function.arguments or "") for c in message.tool_calls or []
    )
    return len(text) // 4


def tool_arguments(call) -> dict | None:
    """A tool call's arguments, or None when they are not a JSON object (an answer for the model, not a crash)."""
    try:
        args = json.loads(call.function.arguments or "{}")
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


def scrub_value(value: Any, secrets: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, secret in secrets.items():
            if secret in value:
                value = value.replace(secret, "{{secret:" + key + "}}")
        return value
    if isinstance(value, dict):
        return {k: scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v, secrets) for v in value]
    return value


def make_client():
    """The official client for the configured endpoint; retries are ours (bounded by the takeover's deadline)."""
    from openai import OpenAI

    return OpenAI(
        # Local servers (vLLM, Ollama, LM Studio) ignore the key, but the client requires one.
        api_key=settings.OPENAI_API_KEY or "not-needed",
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.OPENAI_TIMEOUT_S,
        max_retries=0,
    )


def flat_secrets(secrets: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (secrets or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_secrets(value, name + "."))
        elif value not in (None, ""):
            out[name] = str(value)
    return out


# The agent trace is stored on the event and shown on its page: what the model sends (a tool call's arguments can
# be megabytes) is clipped before it gets there.
TRACE_VALUE_CHARS = 300  # one string of a tool call's arguments
TRACE_ARGS_CHARS = 2_000  # a tool call's arguments, all told
TRACE_ENTRY_CHARS = 8_000  # one trace entry, whatever it holds


def trace_entry(action: str, **details: Any) -> dict:
    entry = {"at": round(time.time(), 3), "action": action, **{k: v for k, v in details.items() if v is not None}}
    if len(_json(entry)) <= TRACE_ENTRY_CHARS:
        return entry
    share = TRACE_ENTRY_CHARS // len(entry)
    return {k: v if len(_json(v)) <= share else clip(_json(v), share) for k, v in entry.items()}


def trace_args(args: Any) -> Any:
    """A tool call's arguments as the trace keeps them: every string clipped, and the whole kept small."""
    clipped = _clip_strings(args)
    text = _json(clipped)
    return clipped if len(text) <= TRACE_ARGS_CHARS else {"clipped": clip(text, TRACE_ARGS_CHARS)}


def _clip_strings(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value, TRACE_VALUE_CHARS)
    if isinstance(value, dict):
        return {clip(str(k), TRACE_VALUE_CHARS): _clip_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip_strings(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def nonce() -> str:
    return pysecrets.token_hex(8)


def clip(text: str, n: int) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def clip_dict(data: dict) -> dict:
    return {k: clip(v, 300) if isinstance(v, str) else v for k, v in data.items()}


def retry_after(response) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) / divisor)
            except ValueError:
                continue
    return None


def assistant_dict(message) -> dict:
    out: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for c in message.tool_calls
        ]
    return out


def append_tool_reply(messages: list[dict], page_messages: list[int], *, call_id: str, reply: dict) -> None:
    """Answer one tool call. A fenced page view in the reply (`page`) travels after the JSON and is
    remembered in `page_messages`, so stub_old_pages can shorten it once newer pages have been shown."""
    page_block = reply.pop("page", None)
    content = json.dumps(reply, ensure_ascii=False)
    if page_block:
        page_messages.append(len(messages))
        content += "\n" + page_block
    messages.append({"role": "tool", "tool_call_id": call_id, "content": content})


def stub_old_pages(messages: list[dict], page_messages: list[int]) -> None:
    """Only the newest page view stays in full; older ones cost tokens and add nothing."""
    for index in page_messages[:-1]:
        message = messages[index]
        head, _, rest = message["content"].partition("\n")
        if rest and rest != OMITTED:
            message["content"] = head + "\n" + OMITTED


_VIEW_KEYS = (
    "ref",
    "tag",
    "role",
    "name_text",
    "text",
    "id",
    "name",
    "type",
    "class",
    "href",
    "aria_label",
    "placeholder",
    "data_testid",
    "title",
    "alt",
    "value",
)


# A <select>'s options in a view: the snapshot records up to 250 of them (a country list), which would cost
# thousands of tokens per select and page view; a view shows a few and says how many there are.
OPTIONS_PER_SELECT = 12  # per <select> in a page view or a candidate
OPTIONS_PER_VIEW = 60  # all the selects of one page view together
OPTION_CHARS = 60  # one option's value, and its label


def options_view(options: Any, *, limit: int, first: tuple[Any, ...] = ()) -> list:
    """A <select>'s [value, label] pairs as a model sees them: at most `limit`, in the page's order, each clipped and
    one string where value and label read the same. Options whose value or label is, or holds, one of `first` (the
    value a step asked for, the label it had) are kept before others: in a list of 250 they are the ones that count."""
    pairs = [(str(o[0]), str(o[1])) for o in options or [] if isinstance(o, list | tuple) and len(o) == 2]
    needles = [n.strip().lower() for n in first if isinstance(n, str) and n.strip()]

    def rank(index: int) -> tuple[int, int]:
        value, label = pairs[index][0].lower(), pairs[index][1].lower()
        if any(n in (value, label) for n in needles):
            return (0, index)
        return (1 if any(n in value or n in label for n in needles) else 2, index)

    kept = sorted(sorted(range(len(pairs)), key=rank)[: max(0, limit)])
    return [
        clip(pairs[i][1], OPTION_CHARS) if pairs[i][0] == pairs[i][1] else [clip(v, OPTION_CHARS) for v in pairs[i]]
        for i in kept
    ]


def element_view(element: dict, *, options: int = OPTIONS_PER_SELECT) -> dict:
    """What the model sees of one element; a <select> shows at most `options` of its options."""
    out = {}
    for key in _VIEW_KEYS:
        value = element.get(key)
        if value in (None, "", "no"):
            continue
        if key == "value" and (element.get("type") or "").lower() == "password":
            continue
        if key == "name_text" and value == element.get("text"):
            continue
        out[key] = clip(value, 80 if key in ("text", "name_text") else 120) if isinstance(value, str) else value
    if element.get("enabled") is False:
        out["disabled"] = True
    if isinstance(element.get("options"), list) and element["options"]:
        shown = options_view(element["options"], limit=options)
        if shown:
            out["options"] = shown
        if len(shown) < len(element["options"]):
            out["options_total"] = len(element["options"])
    return out


def full_element(element: dict | None) -> dict | None:
    if element is None:
        return None
    return {k: v for k, v in element.items() if k not in ("ref", "value")}


def page_view(obs: dict, limits: Limits, *, keep_refs: list[int]) -> dict:
    elements = obs.get("elements") or []
    wanted = set(keep_refs)
    chosen = [e for e in elements if e.get("ref") in wanted]
    rest = sorted(
        (e for e in elements if e.get("ref") not in wanted and e.get("visible", True) is not False),
        key=lambda e: (not e.get("interactable", e.get("is_button") == "yes"), e.get("y") or 0),
    )
    chosen += rest[: max(0, limits.max_elements - len(chosen))]
    chosen.sort(key=lambda e: e.get("ref", 0))
    forms = [
        {
            "id": f.get("id"),
            "action": f.get("action"),
            "inputs": [
                {
                    k: v
                    for k, v in i.items()
                    if k in ("ref", "type", "name", "id", "label", "placeholder") and v not in ("", None)
                }
                for i in f.get("inputs") or []
            ][:15],
            "submits": [
                {k: v for k, v in s.items() if k in ("ref", "text", "id") and v not in ("", None)}
                for s in f.get("submits") or []
            ][:5],
        }
        for f in (obs.get("forms") or [])[:5]
    ]
    views = []
    options_left = OPTIONS_PER_VIEW
    for element in chosen:
        views.append(element_view(element, options=min(OPTIONS_PER_SELECT, options_left)))
        options_left -= len(views[-1].get("options") or [])
    return {
        "url": obs.get("url"),
        "title": obs.get("title"),
        "http_status": obs.get("http_status"),
        "login_form": obs.get("login_form"),
        "captcha": obs.get("captcha"),
        "elements": views,
        "elements_omitted": max(0, len(elements) - len(chosen)),
        "forms": forms,
        "text_excerpt": clip(obs.get("text_excerpt") or "", limits.text_chars),
    }


def placeholders_to_params(code: str) -> str:
    """A literal "{{secret:password}}" in generated code means params["secrets"]["password"]."""
    return PLACEHOLDER_IN_CODE.sub(lambda m: f'params["secrets"]["{m.group("key")}"]', code)
