"""Hostile or broken task code is contained: the caller survives, the run fails with a reason."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from tasks_app.runner import BrowserPool, RunSpec, execute
from tasks_app.runner.browser import UID_BASE, chromium_pids, pids_of_uid, privileged

from .sites import serve

ROOT = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(not privileged(), reason="per-run uids need a root worker")


@pytest.fixture(scope="module")
def pool():
    with BrowserPool(memory_mb=1024) as p:
        yield p


def run(pool, code, **kw):
    kw.setdefault("wall_timeout_s", 30)
    kw.setdefault("action_timeout_ms", 10000)
    return execute(RunSpec(code=textwrap.dedent(code), params=kw.pop("params", {}), secrets=kw.pop("secrets", {}),
                           **kw), browser=pool)


@pytest.fixture
def allocated_uids(monkeypatch):
    """Every uid handed out while the test runs (other suites may run sandboxes concurrently)."""
    from tasks_app.runner import browser

    uids: list[int] = []
    real = browser.allocate_uid

    def recording() -> int | None:
        uid = real()
        if uid is not None:
            uids.append(uid)
        return uid

    monkeypatch.setattr(browser, "allocate_uid", recording)
    return uids


def leftovers(uids, pool=None):
    """Processes still owned by the given uids, except the pool's browser and its warm spare."""
    keep = {pool.uid, pool._spare.uid if pool._spare else None} if pool else set()
    return {uid: pids_of_uid(uid) for uid in uids if uid not in keep and pids_of_uid(uid)}


@needs_root
def test_task_runs_as_its_own_unprivileged_uid(pool):
    result = run(pool, """
        import os
        def run(page, params):
            return {"uid": os.getuid(), "euid": os.geteuid(), "cwd": os.getcwd(), "groups": os.getgroups()}
        """)
    assert result.status == "succeeded", result.error_message
    assert result.output["uid"] >= UID_BASE and result.output["euid"] == result.output["uid"]
    assert result.output["groups"] == []
    assert not os.path.exists(result.output["cwd"])  # the temp working dir is gone


@needs_root
def test_the_products_own_files_are_out_of_reach(pool, settings):
    """The SQLite database, its sessions and the admin's first password live in VAR_DIR."""
    secret = settings.VAR_DIR / "sandbox-probe.txt"
    secret.write_text("admin password")
    secret.chmod(0o644)  # even a world-readable file: the directory keeps other uids out
    try:
        result = run(pool, """
            import os
            def run(page, params):
                outcomes = {}
                for name, attempt in (("list", lambda: os.listdir(params["var"])),
                                      ("read", lambda: open(params["file"]).read())):
                    try:
                        outcomes[name] = attempt()
                    except OSError as exc:
                        outcomes[name] = type(exc).__name__
                return outcomes
            """, params={"var": str(settings.VAR_DIR), "file": str(secret)})
    finally:
        secret.unlink()
    assert result.status == "succeeded", result.error_message
    assert result.output == {"list": "PermissionError", "read": "PermissionError"}


@needs_root
@pytest.mark.parametrize("hidden", [True, False])
def test_a_worker_hides_its_settings_from_runs_under_its_own_uid(hidden):
    """A worker that is not root runs tasks under its own uid; being non-dumpable keeps its environment
    (DATABASE_URL, SECRET_KEY) out of their reach. The control: without it, they can read it."""
    import subprocess
    import sys

    from tasks_app.runner.browser import allocate_uid

    uid = allocate_uid()
    # Both start as root (this Python lives under /root) and become `uid`, as a worker started as that user.
    become = f"import ctypes, os; os.setgroups([]); os.setgid({uid}); os.setuid({uid}); ctypes.CDLL(None).prctl(4, 1, 0, 0, 0); "
    hide = "hide_from_same_uid(); " if hidden else ""
    worker = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); "
         f"from tasks_app.runner.browser import hide_from_same_uid; {become}{hide}print('ready', flush=True); time.sleep(30)"],
        env={"PATH": os.environ["PATH"], "WORKER_SECRET": "postgres://anchor:pw@db/anchor"},
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert worker.stdout.readline().strip() == "ready"
        probe = subprocess.run(
            [sys.executable, "-c", f"{become}print(open('/proc/{worker.pid}/environ', 'rb').read().decode(errors='replace'))"],
            capture_output=True, text=True, timeout=30,
        )
    finally:
        worker.kill()
        worker.wait(timeout=10)
    if hidden:
        assert "PermissionError" in probe.stderr and "postgres://" not in probe.stdout
    else:
        assert "postgres://anchor:pw@db/anchor" in probe.stdout, probe.stderr


def test_environment_holds_no_parent_secrets(pool, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@db/anchor")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "dj-secret")
    result = run(pool, """
        import os
        def run(page, params):
            try:
                parent = open(f"/proc/{os.getppid()}/environ", "rb").read().decode(errors="replace")
            except OSError as exc:
                parent = type(exc).__name__
            return {"env": dict(os.environ), "parent": parent, "secrets": params["secrets"]}
        """, secrets={"token": "task-own"})
    assert result.status == "succeeded", result.error_message
    env = result.output["env"]
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONUNBUFFERED"}
    text = str(result.output)
    for leaked in ("sk-parent-secret", "postgres://", "dj-secret"):
        assert leaked not in text
    if privileged():
        assert result.output["parent"] == "PermissionError"
    assert result.output["secrets"] == {"token": "***"}  # its own secrets reach it (masked in output)


@needs_root
def test_fork_bomb_is_contained(pool, allocated_uids):
    t0 = time.monotonic()
    result = run(pool, """
        import os
        def run(page, params):
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """, wall_timeout_s=5)
    assert result.status == "failed"
    assert result.error_type == "script_error"
    assert "wall-clock limit" in result.error_message
    assert time.monotonic() - t0 < 30
    assert allocated_uids and leftovers(allocated_uids, pool) == {}
    # the worker, the pool and its browser carry on
    assert run(pool, "def run(page, params):\n    return 1\n").output == 1


@needs_root
def test_fork_bomb_that_lets_errors_through_fails_fast(pool, allocated_uids):
    result = run(pool, """
        import os
        def run(page, params):
            while True:
                os.fork()
        """)
    assert result.status == "failed" and result.error_type == "script_error"
    assert "BlockingIOError" in result.error_message or "Resource temporarily unavailable" in result.error_message
    assert allocated_uids and leftovers(allocated_uids, pool) == {}


def test_memory_hog_is_stopped(pool):
    result = run(pool, """
        def run(page, params):
            hog = []
            while True:
                hog.append(bytearray(64 * 1024 * 1024))
        """)
    assert result.status == "failed" and result.error_type == "script_error"
    assert "memory" in result.error_message.lower()


def test_infinite_loop_hits_the_wall_clock_limit(pool):
    t0 = time.monotonic()
    result = run(pool, """
        def run(page, params):
            while True:
                pass
        """, wall_timeout_s=3)
    assert result.status == "failed" and result.error_type == "script_error"
    assert "wall-clock limit of 3 s" in result.error_message
    assert result.failure.details["reason"] == "wall_timeout"
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("url", ["file:///etc/passwd", "chrome://version", "data:text/html,<h1>x</h1>",
                                 "javascript:alert(1)", "ftp://127.0.0.1/"])
def test_non_http_navigation_is_blocked(pool, url):
    result = run(pool, f"""
        def run(page, params):
            page.goto({url!r})
            return page.content()
        """)
    assert result.status == "failed" and result.error_type == "script_error"
    assert "blocked" in result.error_message
    assert "root:x:0:0" not in str(result.to_dict())


def test_navigation_outside_allowed_hosts_is_blocked(pool):
    with serve({"/": '<a id="out" href="http://localhost:{port}/">out</a>'}) as site:
        site.pages["/"] = site.pages["/"].replace("{port}", str(site.port))
        code = """
            def run(page, params):
                page.goto(params["base"] + "/")
                try:
                    page.click("#out")
                    page.wait_for_timeout(300)
                except Exception:
                    pass
                outside = page.url
                page.goto("http://localhost:PORT/")
                return outside
            """.replace("PORT", str(site.port))
        result = run(pool, code, params={"base": site.url}, allowed_hosts=["127.0.0.1"])
    assert result.status == "failed" and "host not in allowed_hosts" in result.error_message
    assert site.hits["/"] == 1  # the link click to localhost never reached the server


def test_a_run_kept_to_its_sites_fails_if_it_tried_to_leave_even_when_it_caught_the_block(pool):
    """Unreviewed code (a validation run) that swallows the blocked navigation must not pass as a success;
    an embedded frame from another host is the site's business and is only blocked."""
    with serve({"/": '<a id="out" href="http://localhost:{port}/x">out</a>'
                     '<iframe src="http://localhost:{port}/frame"></iframe><h1>home</h1>'}) as site:
        site.pages["/"] = site.pages["/"].replace("{port}", str(site.port))
        framed = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                return page.inner_text("h1")
            """, params={"base": site.url}, allowed_hosts=["127.0.0.1"])
        assert (framed.status, framed.output) == ("succeeded", "home")

        caught = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                try:
                    page.click("#out")
                    page.wait_for_timeout(300)
                except Exception:
                    pass
                return page.inner_text("h1")
            """, params={"base": site.url}, allowed_hosts=["127.0.0.1"])
    assert (caught.status, caught.error_type, caught.output) == ("failed", "navigation_error", None)
    assert caught.error_message.startswith("the run tried to leave the task's sites: navigation to 'http://localhost:")
    assert site.hits.get("/x", 0) == 0 and site.hits.get("/frame", 0) == 0


def test_a_run_kept_to_its_sites_fails_if_a_route_of_its_own_let_it_leave(pool):
    """A page's routes come before its context's, where the host guard is: a heal of code that routes (to skip
    images, say) may keep one route and let every request through it."""
    with serve({"/": "<h1>home</h1>", "/internal": "internal data"}) as site:
        site.pages["/"] = f'<a id="out" href="http://localhost:{site.port}/internal">out</a>'
        result = run(pool, """
            def run(page, params):
                page.route("**/*", lambda route: route.continue_())
                page.goto(params["base"] + "/")
                page.click("#out")
                page.wait_for_url("**/internal")
                return page.inner_text("body")
            """, params={"base": site.url}, allowed_hosts=["127.0.0.1"], contained=True)
    assert (result.status, result.error_type, result.output) == ("failed", "navigation_error", None)
    assert result.error_message.startswith("the run tried to leave the task's sites: navigation to 'http://localhost:")


def test_frame_hosts_let_a_frame_load_but_never_the_page_itself(pool):
    """A validation run may load the consent frame its heal closed a banner in, from that exact host; the code
    may still not navigate there."""
    with serve({"/": '<iframe src="http://localhost:{port}/frame"></iframe><h1>home</h1>',
                "/links": '<a id="out" href="http://localhost:{port}/frame">consent</a>',
                "/frame": "<p>consent</p>"}) as site:
        for path in ("/", "/links"):
            site.pages[path] = site.pages[path].replace("{port}", str(site.port))
        framed = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                page.frame_locator("iframe").locator("p").wait_for()
                return page.inner_text("h1")
            """, params={"base": site.url}, allowed_hosts=["127.0.0.1"], frame_hosts=["localhost"])
        left = run(pool, """
            def run(page, params):
                page.goto(params["base"].replace("127.0.0.1", "localhost") + "/frame")
            """, params={"base": site.url}, allowed_hosts=["127.0.0.1"], frame_hosts=["localhost"])
        clicked = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/links")
                page.click("#out")  # the page itself, sent there by a link: the route guard's call, not goto's
                page.wait_for_timeout(300)
                return page.url
            """, params={"base": site.url}, allowed_hosts=["127.0.0.1"], frame_hosts=["localhost"])
    assert (framed.status, framed.output) == ("succeeded", "home")
    assert site.hits["/frame"] == 1  # the frame's load; the page's goto and the link never reached the server
    assert left.status == "failed" and "host not in allowed_hosts" in left.error_message
    assert clicked.status == "failed" and clicked.error_message.startswith("the run tried to leave the task's sites")


def test_a_host_is_allowed_with_its_subdomains_but_not_as_the_tail_of_another_name():
    from tasks_app.runner.harness import _on_hosts

    assert _on_hosts("shop.example", ["shop.example"]) and _on_hosts("Login.Shop.example", ["shop.example"])
    assert not _on_hosts("evilshop.example", ["shop.example"])
    assert not _on_hosts("shop.example.evil.test", ["shop.example"])
    assert not _on_hosts("", ["shop.example"]) and _on_hosts("anything.test", None)


SENDS_A_SECRET_FROM_PYTHON = """
    import urllib.parse
    def run(page, params):
        page.goto(params["base"] + "/")
        way_out = urllib.parse.sys.modules["socket"]  # past the static gate, as a crafted heal might get
        with way_out.create_connection(("127.0.0.1", params["port"]), timeout=5) as conn:
            conn.sendall(b"GET /leak?" + params["secrets"]["pw"].encode() + b" HTTP/1.0\\r\\n\\r\\n")
            conn.recv(100)
        return page.inner_text("h1")
    """


def test_contained_code_reaches_the_web_only_through_its_page(pool):
    """Machine-written code runs contained: its browser works, but from Python it opens no socket and starts no
    process, so nothing past the static gate can send the task's secrets out."""
    with serve({"/": "<h1>home</h1>", "/leak": "ok"}) as site:
        params = {"base": site.url, "port": site.port}
        free = run(pool, SENDS_A_SECRET_FROM_PYTHON, params=params, secrets={"pw": "hunter2"})
        assert (free.status, free.output, site.hits.get("/leak")) == ("succeeded", "home", 1)  # the probe works

        contained = run(pool, SENDS_A_SECRET_FROM_PYTHON, params=params, secrets={"pw": "hunter2"}, contained=True)
        spawns = run(pool, """
            import urllib.parse
            def run(page, params):
                page.goto(params["base"] + "/")
                urllib.parse.sys.modules["os"].system("true")
            """, params=params, contained=True)
        popens = run(pool, """
            import urllib.parse
            def run(page, params):
                page.goto(params["base"] + "/")
                return urllib.parse.sys.modules["subprocess"].run(["/bin/true"]).returncode
            """, params=params, contained=True)
        browses = run(pool, """
            def run(page, params):
                page.goto(params["base"] + "/")
                page.reload()
                return page.inner_text("h1")
            """, params=params, contained=True)
    assert contained.status == "failed" and "is not allowed: machine-written task code" in contained.error_message
    assert site.hits.get("/leak") == 1  # still only the uncontained probe's
    assert spawns.status == "failed" and "os.system is not allowed" in spawns.error_message
    assert popens.status == "failed" and "subprocess.Popen is not allowed" in popens.error_message
    assert (browses.status, browses.output) == ("succeeded", "home")


ASKS_THE_DRIVER = {
    # What the Playwright driver, a process the audit hook does not see, would do for the code.
    "fetch": """
        def run(page, params):
            page.goto(params["base"] + "/")
            return page.context.request.get(params["base"] + "/internal").text()
        """,
    "launch": """
        def run(page, params):
            page.goto(params["base"] + "/")
            try:
                page.context.browser.browser_type.launch(
                    executable_path="/bin/sh", ignore_default_args=True, args=["-c", "exit 0"], timeout=3000)
            except PermissionError:
                raise
            except Exception as exc:  # a shell is no browser: the driver did start it, then gave up on it
                return type(exc).__name__
        """,
    "unroute": """
        def run(page, params):
            page.goto(params["base"] + "/")
            page.context.unroute_all()  # the host guard is the context's route
            page.click("#elsewhere")  # a link to another host: only that route stops it
            page.wait_for_url("**/internal")
            return page.inner_text("body")
        """,
    "new_context": """
        def run(page, params):
            page.goto(params["base"] + "/")
            other = page.context.browser.new_context().new_page()  # no route guard in there
            other.goto(params["base"] + "/internal")
            return other.inner_text("body")
        """,
    "upload": """
        def run(page, params):
            page.goto(params["base"] + "/upload")
            with page.expect_file_chooser() as chooser:  # no guarded name on the way: only the driver can refuse
                page.click("#file")
            chooser.value.set_files("/etc/passwd")  # the driver reads the worker machine's file into the page
            return page.locator("#file").input_value()
        """,
}


@pytest.mark.parametrize("way", sorted(ASKS_THE_DRIVER))
def test_contained_code_cannot_have_the_playwright_driver_act_for_it(pool, way):
    with serve({"/": "<h1>home</h1>", "/internal": "internal data", "/upload": '<input type="file" id="file">'}) as site:
        elsewhere = site.url.replace("127.0.0.1", "localhost") + "/internal"
        site.pages["/"] = f'<h1>home</h1><a id="elsewhere" href="{elsewhere}">elsewhere</a>'
        params = {"base": site.url}
        free = run(pool, ASKS_THE_DRIVER[way], params=params, allowed_hosts=["127.0.0.1"])
        contained = run(pool, ASKS_THE_DRIVER[way], params=params, allowed_hosts=["127.0.0.1"], contained=True)
    if way == "unroute":  # the probe left the task's sites, and a run kept to them fails for that
        assert free.error_message.startswith("the run tried to leave the task's sites") and site.hits["/internal"] == 1
    else:
        assert free.status == "succeeded" and free.output  # the probe works
    assert contained.status == "failed" and "is not allowed: machine-written task code" in contained.error_message


TYPES_THEN_FAILS = """
    def run(page, params):
        page.goto(params["base"] + "/")
        page.fill("#token", params["secrets"]["token"] if params["secrets"] else params["token"])
        page.click("#missing")
    """


def test_a_secret_typed_into_a_text_field_is_blacked_out_in_the_failure_screenshot(pool):
    def failure_shot(**typed) -> str:
        result = run(pool, TYPES_THEN_FAILS, params={"base": site.url, **typed.get("params", {})},
                     secrets=typed.get("secrets", {}), action_timeout_ms=500)
        assert result.status == "failed"
        return next(shot["png_b64"] for shot in result.screenshots if shot["name"] == "failure")

    with serve({"/": '<label>Token <input id="token" style="width:300px;font-size:30px"></label>'}) as site:
        secret_a = failure_shot(secrets={"token": "hunter2-hunter2"})
        secret_b = failure_shot(secrets={"token": "swordfish-swordfish"})
        plain_a = failure_shot(params={"token": "hunter2-hunter2"})
        plain_b = failure_shot(params={"token": "swordfish-swordfish"})
    assert plain_a != plain_b  # the control: what is typed shows in the picture
    assert secret_a == secret_b  # a secret does not: the field is a black box whatever it holds


def test_no_chromium_left_after_a_killed_cold_run(allocated_uids):
    before = set(chromium_pids())
    with serve({"/": "<h1>hi</h1>"}) as site:
        result = execute(RunSpec(code=textwrap.dedent("""
            def run(page, params):
                page.goto(params["base"] + "/")
                while True:
                    pass
            """), params={"base": site.url}, secrets={}, wall_timeout_s=4))
    assert result.status == "failed" and "wall-clock" in result.error_message
    assert result.timings.get("browser_start_ms")  # this run started (and must have stopped) its own Chromium
    if privileged():
        # Chromium ran as its own uid, the child as another: nothing of either may be left
        assert len(allocated_uids) == 2
        assert leftovers(allocated_uids) == {}
    else:  # without per-run uids, fall back to comparing the machine's Chromium processes
        assert set(chromium_pids()) - before == set()


def test_secrets_are_masked_in_steps_errors_and_logs(pool):
    page = '<input id="user"><input id="pw" type="password"><p id="greet"></p>'
    with serve({"/login": page}) as site:
        result = run(pool, """
            def run(page, params):
                s = params["secrets"]
                page.goto(params["base"] + "/login")
                page.fill("#user", s["user"])
                page.fill("#pw", s["password"])
                print("logging in with", s["password"])
                page.fill("#missing-" + s["password"], "x", timeout=500)
            """, params={"base": site.url}, secrets={"user": "ann@example.com", "password": "hunter2-pw"})
    dump = str(result.to_dict())
    assert "hunter2-pw" not in dump and "ann@example.com" not in dump
    assert result.steps[1].args == {"value": "***"} and result.steps[2].args == {"value": "***"}
    assert result.steps[1].fingerprint["tag"] == "INPUT"
    assert "#missing-***" in result.failure.selector or "#missing-***" in result.error_message
    assert "logging in with ***" in result.logs


@pytest.mark.parametrize("secret", ["C:\\vault\\key-1", "pässwörd-42", "-----BEGIN KEY-----\nAbc123\n-----END KEY-----"])
def test_a_secret_printed_inside_a_dict_or_as_json_is_masked_as_escaped_there(pool, secret):
    """`print(params)` and `json.dumps` write a backslash, a line break or an accent escaped: the secret's text is not
    there as it is, yet anyone reading the logs or the error can read it."""
    result = run(pool, """
        import json
        def run(page, params):
            print("params:", params)
            print("as JSON:", json.dumps(params))
            raise ValueError(params["secrets"])
        """, secrets={"key": secret})
    assert result.status == "failed" and "params: {'secrets': {'key': '***'}}" in result.logs
    for shown in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]):
        assert shown not in result.logs and shown not in result.error_message, shown


def test_a_run_that_finished_keeps_its_result_when_recycling_the_browser_after_it_fails(pool, monkeypatch, caplog):
    from tasks_app.runner.browser import BrowserError, BrowserPool

    def restart_fails(self, clean):
        raise BrowserError("Chromium did not open its DevTools port within 20 s")

    with serve({"/": "<h1>sent</h1>"}) as site:
        code = 'def run(page, params):\n    page.goto(params["base"] + "/")\n    return page.inner_text("h1")\n'
        monkeypatch.setattr(BrowserPool, "release", restart_fails)
        finished = run(pool, code, params={"base": site.url})
        monkeypatch.undo()
        after = run(pool, code, params={"base": site.url})  # the next run starts a browser of its own
    assert (finished.status, finished.output) == ("succeeded", "sent")  # not failed: the form may have been sent
    assert [step.action for step in finished.steps] == ["goto", "inner_text"]
    assert "its browser is discarded" in caplog.text
    assert (after.status, after.output) == ("succeeded", "sent")


def test_a_secret_printed_just_before_the_sandbox_dies_is_masked_in_the_error(pool):
    # The last line the child wrote becomes the error message when it dies without reporting.
    result = run(pool, """
        import os
        def run(page, params):
            print("logging in as", params["secrets"])
            os._exit(3)
        """, secrets={"password": "hunter2-Sekret"})
    assert result.status == "failed" and "exited unexpectedly (code 3): logging in as" in result.error_message
    assert "hunter2-Sekret" not in str(result.to_dict())


def test_secrets_are_masked_in_output_keys_and_in_what_task_code_writes_to_the_channel_itself(pool):
    # Secrets are the task's to use; masking keeps them out of what Anchor stores and shows. The parent
    # masks again, because task code shares the child's process and can write the channel directly.
    result = run(pool, """
        import json, os, sys
        def run(page, params):
            secret = params["secrets"]["token"]
            fd = next(fd for fd in range(3, 64) if _is_socket(fd))
            step = {"index": 99, "line": 1, "action": "click", "selector": "#" + secret, "args": {},
                    "url": "", "started_ms": 0, "duration_ms": 0, "outcome": "ok", "error": None,
                    "step_key": "k", "fingerprint": None, "recovery": None}
            os.write(fd, (json.dumps({"t": "step", "step": step}) + "\\n").encode())
            return {secret: "as a key", "value": secret}

        def _is_socket(fd):
            import stat
            try:
                return stat.S_ISSOCK(os.fstat(fd).st_mode)
            except OSError:
                return False
        """, secrets={"token": "tok-123-secret"})
    assert result.status == "succeeded", result.error_message
    assert result.output == {"***": "as a key", "value": "***"}
    assert [step.selector for step in result.steps] == ["#***"]  # the forged step, the run's only one
    assert "tok-123-secret" not in str(result.to_dict())


# Task code writing steps to the channel itself, as fast as it can: `claimed` is the index each one says it has.
FORGES_STEPS = """
    import json, os, stat
    def run(page, params):
        fd = next(fd for fd in range(3, 64) if stat.S_ISSOCK(os.fstat(fd).st_mode))
        step = {"index": params["claimed"], "line": 1, "action": "click", "selector": "#" + "x" * params["size"],
                "args": {}, "url": "", "started_ms": 0, "duration_ms": 0, "outcome": "ok"}
        line = (json.dumps({"t": "step", "step": step}) + "\\n").encode()
        for _ in range(params["count"]):
            os.write(fd, line)
        return "done"
    """


@pytest.mark.parametrize("size, count, limits", [
    (100_000, 100, {"MAX_TRACE_BYTES": 2_000_000}),  # a gigabyte in seconds, unbounded
    (1, 500, {"MAX_STEPS": 50}),  # each step one more write to the database while it runs
])
def test_a_flood_of_steps_stops_the_run_before_the_worker_holds_it_all(pool, monkeypatch, size, count, limits):
    from tasks_app.runner import sandbox

    for name, value in limits.items():
        monkeypatch.setattr(sandbox, name, value)
    result = run(pool, FORGES_STEPS, params={"claimed": 0, "size": size, "count": count})
    assert result.status == "failed" and "more steps than a run may keep" in result.error_message
    assert result.failure.details["reason"] == "step_limit"
    assert len(result.steps) <= 50 and sum(len(step.selector) for step in result.steps) <= 2_000_000


def test_a_step_takes_its_place_in_the_run_whatever_index_it_claims(pool):
    """The worker stores a run's first steps as they come, by index: a forged index 0 must not make every step one
    of them."""
    result = run(pool, FORGES_STEPS, params={"claimed": 0, "size": 1, "count": 3})
    assert result.status == "succeeded", result.error_message
    assert [step.index for step in result.steps] == [0, 1, 2]


# Task code writing one line of its own to the control channel, then carrying on.
WRITES_TO_THE_CHANNEL = """
    import os, stat
    def run(page, params):
        fd = next(fd for fd in range(3, 64) if stat.S_ISSOCK(os.fstat(fd).st_mode))
        os.write(fd, params["line"].encode() + b"\\n")
        return "done"
    """


@pytest.mark.parametrize("line, what", [
    ('not json', "a line that is not JSON (b'not json')"),
    ('[1, 2]', "a message that is a list, not an object"),
    ('{"t": "step"}', "a step is null, not an object"),
    ('{"t": "step", "step": {"line": 1}}', "a step has no 'action'"),
    ('{"t": "step", "step": {"line": "one", "action": "click", "selector": null, "args": {}, "url": "", '
     '"started_ms": 0, "duration_ms": 0}}', "a step's 'line' is a string, not a number or null"),
    ('{"t": "handover", "failure": 5}', "a hand-over's failure is a number, not an object"),
    ('{"t": "handover", "failure": {"type": "timeout", "message": "x"}}',
     "a hand-over of a 'timeout' failure, which this run does not hand over"),
    ('{"t": "result", "result": {"status": "ok", "failure": {"type": 3, "message": "x"}}}',
     "the result's 'failure''s 'type' is a number, not a string"),
    ('{"t": "closed"}', "a 'closed' message before the run's result"),
    ('{"t": "infra_error", "error": "the browser went away"}', "an infra_error after the task's code started"),
], ids=["not JSON", "not an object", "step without a step", "step without fields", "step field of another type",
        "hand-over failure not an object", "hand-over not asked for", "result's failure field of another type",
        "closed before the result", "infra_error from the task"])
def test_a_malformed_message_task_code_writes_to_the_channel_fails_the_run_as_its_own_error(pool, line, what):
    """Not as the runner's: an exception out of execute() was a runner_error, and a forged infra_error ran the task's
    code a second time on a fresh browser first."""
    result = run(pool, WRITES_TO_THE_CHANNEL, params={"line": line})

    assert result.status == "failed" and result.error_type == "script_error", result.error_message
    assert result.error_message.startswith("the task wrote to the runner's control channel what the runner never gets")
    assert what in result.error_message, result.error_message
    assert result.failure.details["reason"] == "malformed_message"
    assert "runner_retries" not in result.timings  # the task's code ran once


def test_what_task_code_writes_to_the_channel_is_masked_in_the_reason(pool):
    result = run(pool, WRITES_TO_THE_CHANNEL, params={"line": "tok-123-secret"}, secrets={"token": "tok-123-secret"})

    assert result.error_type == "script_error" and "a line that is not JSON (b'***')" in result.error_message


@needs_root
def test_files_a_run_leaves_in_shared_temp_directories_are_removed(pool):
    result = run(pool, """
        import os
        def run(page, params):
            paths = ["/tmp/anchor-probe-left", "/dev/shm/anchor-probe-left", "/run/lock/anchor-probe-left"]
            for path in paths:
                with open(path, "w") as fh:
                    fh.write("x" * 1000)
            os.makedirs("/var/tmp/anchor-probe-dir/inner", exist_ok=True)
            return [p for p in paths if os.path.exists(p)]
        """)
    assert result.status == "succeeded", result.error_message
    assert result.output == ["/tmp/anchor-probe-left", "/dev/shm/anchor-probe-left", "/run/lock/anchor-probe-left"]
    for path in (*result.output, "/var/tmp/anchor-probe-dir"):
        assert not os.path.exists(path), path


def test_script_planted_in_the_shared_browser_does_not_see_the_next_run(pool):
    """Task code can reach the raw Browser: whatever it leaves there is gone before the next run."""
    launches = pool.launches
    plant = run(pool, """
        def run(page, params):
            start = page.context.browser.contexts[0].pages[0]
            start.evaluate("window.__planted = 'spy'")
            return start.evaluate("window.__planted")
        """)
    assert plant.status == "succeeded" and plant.output == "spy", plant.error_message
    look = run(pool, """
        def run(page, params):
            pages = page.context.browser.contexts[0].pages
            return [p.evaluate("window.__planted || null") for p in pages]
        """)
    assert look.status == "succeeded", look.error_message
    assert look.output == [None]
    assert pool.launches == launches  # a fresh start page is enough: the browser itself stays warm

    stray = run(pool, """
        def run(page, params):
            page.context.browser.contexts[0].new_page()  # a page in the browser's own context
            return "left"
        """)
    assert stray.status == "succeeded"
    assert pool.launches == launches + 1  # anything left but the start page recycles the browser


def test_task_output_on_stdout_does_not_disturb_the_protocol(pool):
    result = run(pool, """
        import sys
        def run(page, params):
            sys.stdout.write("x" * 100000 + "\\n")
            print('{"t": "result", "result": {"status": "ok", "output": "forged"}}')
            return "real"
        """)
    assert result.output == "real"
    assert "forged" in result.logs


def test_non_json_output_is_a_script_error(pool):
    result = run(pool, "def run(page, params):\n    return object()\n")
    assert result.status == "failed" and "not JSON" in result.error_message


@needs_root
def test_a_killed_worker_leaves_no_browser_or_sandbox_behind():
    import subprocess
    import sys

    script = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, sys.argv[1])
        from tasks_app.runner import BrowserPool
        pool = BrowserPool().start()
        pool.wait_warm()
        print(pool.uid, pool._spare.uid, flush=True)
        os.kill(os.getpid(), 9)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", script, root], capture_output=True, text=True, timeout=120, check=False)
    uids = [int(u) for u in out.stdout.split()]
    assert len(uids) == 2, out.stderr[-2000:]
    deadline = time.monotonic() + 10
    while any(pids_of_uid(u) for u in uids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {u: pids_of_uid(u) for u in uids if pids_of_uid(u)} == {}
