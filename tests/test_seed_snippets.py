"""Every Python and JavaScript snippet of the seed (../shared/SEED.md) runs unchanged against a live server.

The snippets are cut out of SEED.md itself, so a change there is tested as written. Only the placeholder
key `your_api_key` and the example id `task_123` are replaced; the base URL comes from ANCHOR_BASE_URL.
Python snippets run in a subprocess with the SDK importable; JavaScript snippets run under Node's test
runner. After each one, the database is checked for its effect.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import django_rq
import pytest
from rq import Queue

from healing_app.models import HealingEvent
from tasks_app import services
from tasks_app.api_keys import api_key_create
from tasks_app.models import Run, Task

ROOT = Path(__file__).resolve().parent.parent
SEED = Path(os.environ.get("ANCHOR_SEED_PATH", ROOT.parent / "shared" / "SEED.md"))
SDK_PY = ROOT / "sdk" / "python"
SDK_JS = ROOT / "sdk" / "js"
NODE = shutil.which("node")
ALL_TRIGGERS = ["timeout", "element_not_found", "navigation_error", "authentication_failure", "captcha_detected"]

pytestmark = pytest.mark.skipif(not SEED.exists(), reason=f"the seed is not at {SEED}")


# -- cutting the snippets out of the seed --------------------------------------------------------------
#
# The seed is one text block: prose, then a Python snippet, then its JavaScript twin. A Python snippet
# starts at `from anchor_sdk import` or a `# ` comment and runs until its JavaScript twin starts (at
# `import { Anchor }` or a `// ` comment). A JavaScript snippet runs while its brackets are open or its
# lines read as JavaScript statements; the prose after it ends it.

PY_START = re.compile(r"^(from anchor_sdk import |# )")
JS_START = re.compile(r"^(import \{ Anchor \} from |// )")
JS_STATEMENT = re.compile(r"^(\s|const |let |var |import |await |//|[A-Za-z_$][\w$.]*\(|[})\]])")


@dataclass(frozen=True)
class Snippet:
    language: str  # "python" or "js"
    code: str

    @property
    def title(self) -> str:
        return self.code.strip().splitlines()[0] if not self.code.startswith(("from ", "import ")) else "setup"


def cut_snippets(text: str) -> list[Snippet]:
    # The seed's own words are the ```text block; the heading and note above it are ours.
    if "```text" in text:
        text = text.split("```text", 1)[1].rsplit("```", 1)[0]
    snippets: list[Snippet] = []
    language, lines, depth = None, [], 0

    def close() -> None:
        nonlocal language, lines, depth
        if language:
            snippets.append(Snippet(language, "\n".join(lines).strip("\n") + "\n"))
        language, lines, depth = None, [], 0

    for line in text.splitlines():
        if language != "js" and JS_START.match(line):
            close()
            language = "js"
        elif language is None and PY_START.match(line):
            language = "python"
        elif language == "js" and depth == 0 and line.strip() and not JS_STATEMENT.match(line):
            close()
            if not PY_START.match(line):
                continue
            language = "python"
        elif language is None:
            continue
        lines.append(line)
        if language == "js":
            depth += sum(line.count(c) for c in "({[") - sum(line.count(c) for c in ")}]")
    close()
    return snippets


def setup_lines(snippet: Snippet) -> str:
    """The first snippet's lines before its first comment: the import and the client."""
    comment = "# " if snippet.language == "python" else "// "
    head = snippet.code.split("\n" + comment, 1)[0]
    return head.rstrip("\n") + "\n\n"


@pytest.fixture(scope="module")
def seed() -> dict[str, list[Snippet]]:
    snippets = cut_snippets(SEED.read_text())
    by_language = {
        "python": [s for s in snippets if s.language == "python"],
        "js": [s for s in snippets if s.language == "js"],
    }
    return by_language


def test_the_seed_has_five_python_and_five_javascript_snippets_that_parse(seed, tmp_path):
    assert len(seed["python"]) == len(seed["js"]) == 5
    prelude = setup_lines(seed["python"][0])
    for snippet in seed["python"]:
        ast.parse(snippet.code if snippet is seed["python"][0] else prelude + snippet.code)
    assert "task_123" in seed["python"][1].code and "your_api_key" in seed["python"][0].code
    if NODE:
        js_prelude = setup_lines(seed["js"][0])
        for i, snippet in enumerate(seed["js"]):
            path = tmp_path / f"check{i}.mjs"
            path.write_text(snippet.code if i == 0 else js_prelude + snippet.code)
            check = subprocess.run([NODE, "--check", str(path)], check=False, capture_output=True, text=True)
            assert check.returncode == 0, check.stderr


# -- running them -----------------------------------------------------------------------------------------


class Runner:
    """Runs one snippet as written, with the real key and id swapped in, against the live server."""

    def __init__(self, *, base_url: str, api_key: str, seed: dict[str, list[Snippet]], workdir: Path):
        self.base_url = base_url
        self.api_key = api_key
        self.seed = seed
        self.workdir = workdir
        self.env = {
            **os.environ,
            "ANCHOR_BASE_URL": base_url,
            "PYTHONPATH": os.pathsep.join([str(SDK_PY), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
        self.env.pop("ANCHOR_API_KEY", None)  # the snippets give their key themselves
        modules = workdir / "node_modules" / "@anchor-sdk"
        modules.mkdir(parents=True, exist_ok=True)
        link = modules / "client"
        if not link.exists():
            link.symlink_to(SDK_JS, target_is_directory=True)

    def source(self, language: str, index: int, task_id: str | None) -> str:
        snippets = self.seed[language]
        code = snippets[index].code
        if index > 0:  # later snippets use the client the first one made, as the seed reads
            code = setup_lines(snippets[0]) + code
        code = code.replace("your_api_key", self.api_key)
        if task_id is not None:
            assert "task_123" in code
            code = code.replace("task_123", task_id)
        return code

    def python(self, index: int, task_id: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-c", self.source("python", index, task_id)],
            check=False, capture_output=True, text=True, env=self.env, cwd=self.workdir, timeout=120,
        )
        assert result.returncode == 0, f"Python snippet {index + 1} failed:\n{result.stderr}"
        return result.stdout

    def js(self, index: int, task_id: str | None = None) -> str:
        assert NODE, "node is needed for the JavaScript snippets"
        path = self.workdir / f"seed_snippet_{index + 1}.test.mjs"
        path.write_text(self.source("js", index, task_id))
        result = subprocess.run(
            [NODE, "--test", "--test-reporter=tap", path.name],
            check=False, capture_output=True, text=True, env=self.env, cwd=self.workdir, timeout=120,
        )
        assert result.returncode == 0 and "# fail 0" in result.stdout, (
            f"JavaScript snippet {index + 1} failed under node --test:\n{result.stdout}\n{result.stderr}"
        )
        # The test runner reports what the file printed as "# ..." lines before its subtest line.
        printed = result.stdout.split("# Subtest:", 1)[0].splitlines()
        return "\n".join(line[2:] for line in printed if line.startswith("# ")) + "\n"

    def run(self, language: str, index: int, task_id: str | None = None) -> str:
        return self.python(index, task_id) if language == "python" else self.js(index, task_id)


@pytest.fixture
def runner(live_server, django_user_model, seed, tmp_path, settings):
    user = django_user_model.objects.create_user("seed-user")
    _, raw = api_key_create(user=user, name="seed snippets")
    return Runner(base_url=live_server.url, api_key=raw, seed=seed, workdir=tmp_path)


LANGUAGES = ["python", pytest.param("js", marks=pytest.mark.skipif(not NODE, reason="node is not installed"))]


def _new_task(name: str, before: set[str]) -> Task:
    created = Task.objects.filter(name=name).exclude(pk__in=before)
    assert created.count() == 1, f"expected one new task {name!r}, found {created.count()}"
    return created.get()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_seed_snippets_create_configure_and_disable_tasks(runner, language):
    # 1. Enable self-healing: create a task.
    before = set(Task.objects.values_list("pk", flat=True))
    runner.run(language, 0)
    task = _new_task("form_submission", before)
    assert task.prompt == "Fill out the contact form on example.com"
    assert task.self_healing is True
    assert task.config == {
        "auto_deploy": True,
        "trigger_on": ["timeout", "element_not_found", "navigation_error"],
        "max_attempts": 3,
        "validation_required": True,
    }

    # 2. Configure triggers on an existing task: exactly the keys given change.
    existing = services.task_create(
        name="existing",
        prompt="keep me",
        self_healing=True,
        self_healing_config={"auto_deploy": True, "trigger_on": ["timeout"], "max_attempts": 7, "validation_required": False},
    )
    runner.run(language, 1, task_id=existing.pk)
    existing.refresh_from_db()
    assert existing.config == {
        "trigger_on": ALL_TRIGGERS,
        "max_attempts": 3,
        "auto_deploy": False,
        "validation_required": False,  # not in the snippet, so unchanged
    }
    assert (existing.name, existing.prompt, existing.self_healing) == ("existing", "keep me", True)

    # 3. Auto-deploy fixes: another new task.
    before = set(Task.objects.values_list("pk", flat=True))
    runner.run(language, 2)
    extraction = _new_task("data_extraction", before)
    assert extraction.prompt == "Extract product prices from the catalog"
    assert extraction.self_healing is True
    assert extraction.config == {
        "auto_deploy": True,
        "validation_required": True,
        "trigger_on": ["timeout", "element_not_found", "navigation_error"],
        "max_attempts": 3,
    }

    # 5. Disable self-healing: only that changes.
    config_before = existing.config
    runner.run(language, 4, task_id=existing.pk)
    existing.refresh_from_db()
    assert existing.self_healing is False
    assert existing.config == config_before


# -- the healing events snippet prints the events of a real heal ---------------------------------------------

CONTACT_CODE = '''def run(page, params):
    page.goto(params["base_url"] + "/contact")
    page.fill("#name", params["name"])
    page.click("#submit")
    return {"confirmation": page.inner_text(".confirmation")}
'''


def contact_page(version: int) -> str:
    # Version 2 renames the button: the change that breaks automation most often.
    button = (
        '<button id="submit" type="submit">Send</button>'
        if version == 1
        else '<button id="send-message" type="submit" data-testid="send">Send message</button>'
    )
    return (
        '<html><body><h1>Contact</h1><form method="post" action="/thanks">'
        f'<label for="name">Name</label><input id="name" name="name">{button}</form></body></html>'
    )


@pytest.fixture
def sync_queues(monkeypatch):
    """Real RQ queues in Redis that run each job as it is enqueued, under names no other worker reads."""
    prefix = f"seed-{uuid.uuid4().hex}"
    made: dict[str, Queue] = {}

    def get_queue(name: str = "default", **_):
        if name not in made:
            made[name] = Queue(f"{prefix}-{name}", connection=django_rq.get_connection("runs"), is_async=False)
        return made[name]

    def failures() -> list[str]:
        """What the jobs that raised said: RQ runs them synchronously but keeps their errors to itself."""
        found = []
        for queue in made.values():
            for job in queue.failed_job_registry.get_job_ids():
                fetched = queue.fetch_job(job)
                text = (fetched and fetched.exc_info or "").strip().splitlines()
                found.append(f"{fetched and fetched.func_name}: {text[-1] if text else '?'}")
        return found

    monkeypatch.setattr(django_rq, "get_queue", get_queue)
    yield failures
    for queue in made.values():
        queue.delete(delete_jobs=True)


def heal_for_real(site_url: str, site_version: dict, job_failures) -> Task:
    """A task that works on version 1 of a local page, breaks on version 2, and heals during the run."""
    from tasks_app.jobs import run_task

    task = services.task_create(
        name="contact_form",
        prompt="Fill out the contact form",
        code=CONTACT_CODE,
        params={"base_url": site_url, "name": "Ada"},
        self_healing=True,
        self_healing_config={"auto_deploy": True},
    )
    first = services.run_create(task=task)
    run_task(first.pk)
    first.refresh_from_db()
    assert first.status == Run.Status.SUCCEEDED, f"{first.error_type}: {first.error_message}"

    site_version["v"] = 2
    broken = services.run_create(task=task)
    run_task(broken.pk)
    broken.refresh_from_db()
    event = HealingEvent.objects.filter(run=broken).first()
    assert broken.status == Run.Status.HEALED, (
        f"run {broken.status} ({broken.error_type}: {broken.error_message}); "
        f"event {event and (event.status, event.reason)}; failed jobs: {job_failures()}"
    )
    event.refresh_from_db()
    assert event.status == HealingEvent.Status.DEPLOYED, (
        f"event {event.status} ({event.reason}); failed jobs: {job_failures()}"
    )
    return task


def _printed_events(output: str) -> list[dict]:
    pattern = re.compile(
        r"Triggered at: (?P<timestamp>.+)\nError type: (?P<error_type>.+)\nStatus: (?P<status>.+)\nCode version: (?P<version>.+)"
    )
    return [m.groupdict() for m in pattern.finditer(output)]


def _parse_printed_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))


@pytest.mark.django_db(transaction=True)
def test_the_healing_events_snippets_print_the_events_of_a_real_heal(runner, sync_queues):
    from tasks_app.tests.sites import serve

    if not Path("/usr/bin/chromium").exists() and not shutil.which("chromium"):
        pytest.skip("a real heal needs Chromium")
    try:
        from healing_app.agents.heuristic import HeuristicAgent  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the healing pipeline is not integrated yet (the heuristic agent does not import: {exc})")
    site_version = {"v": 1}
    pages = {
        "/contact": lambda request: contact_page(site_version["v"]),
        "/thanks": lambda request: f'<p class="confirmation">Thanks, {request.form.get("name")}!</p>',
    }
    with serve(pages) as site:
        task = heal_for_real(site.url, site_version, sync_queues)

    events = list(HealingEvent.objects.filter(task=task).select_related("new_version").order_by("-created_at"))
    assert events and events[0].status == HealingEvent.Status.DEPLOYED
    assert events[0].new_version is not None
    expected = [
        {"error_type": e.error_type, "status": e.status, "version": str(e.new_version.number), "at": e.created_at}
        for e in events
    ]

    languages = ["python"] + (["js"] if NODE else [])
    for language in languages:
        printed = _printed_events(runner.run(language, 3, task_id=task.pk))
        assert [(p["error_type"], p["status"], p["version"]) for p in printed] == [
            (e["error_type"], e["status"], e["version"]) for e in expected
        ], f"{language} printed {printed}"
        for shown, event in zip(printed, expected):
            # The API sends times to the millisecond.
            assert abs(_parse_printed_time(shown["timestamp"]) - event["at"]) < timedelta(milliseconds=1)
