"""The shipped deployment configuration (deploy/): Procfile, systemd units, compose file and nginx, read and
checked for what the product needs. Docker cannot run here, so the compose file is linted, not started;
the nginx part is exercised for real in test_reverse_proxy.py. A worker unit's stop is played on a cluster
worker: the signal it sends, to the processes it sends it to."""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.reliability.helpers import descendants, worker_running
from tests.reliability.sites import CONTACT_CODE, contact_site

pytestmark = pytest.mark.reliability

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WORKER = "manage.py rqworker runs healing webhooks --with-scheduler --worker-class tasks_app.worker.AnchorWorker"
WEB = "daphne"
ASGI = "anchor_site.asgi:application"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_the_procfile_has_web_worker_and_release():
    lines = dict(line.split(":", 1) for line in (DEPLOY / "Procfile").read_text().splitlines() if line and not line.startswith("#"))
    assert WORKER in lines["worker"]
    assert lines["web"].strip().startswith(WEB) and ASGI in lines["web"]
    assert "migrate" in lines["release"]


def test_the_systemd_units_run_the_documented_commands_and_restart():
    web = _unit("anchor-web@.service")["Service"]
    assert WEB in web["ExecStart"] and ASGI in web["ExecStart"] and "--bind 127.0.0.1 --port %i" in web["ExecStart"]
    assert web["Restart"] == "always" and web["EnvironmentFile"] == "/etc/anchor/anchor.env"
    worker = _unit("anchor-worker@.service")["Service"]
    assert worker["ExecStart"].endswith(WORKER)
    assert worker["Restart"] == "always"
    # A crashed or stopped worker takes its RQ scheduler process, Chromium and sandboxes with it, once it has
    # exited (test_stopping_a_worker_as_its_unit_does_lets_the_run_in_flight_finish).
    assert worker["KillMode"] == "mixed"
    assert int(worker["TimeoutStopSec"]) >= 90  # a warm shutdown lets the running task end
    assert web["ProtectProc"] == worker["ProtectProc"] == "invisible"
    target = _unit("anchor.target")["Unit"]["Wants"].split()
    ports = sorted(re.findall(r"anchor-web@(\d+)\.service", " ".join(target)))
    upstream = sorted(re.findall(r"server 127\.0\.0\.1:(\d+)", (DEPLOY / "nginx" / "anchor.conf").read_text()))
    assert ports == upstream == ["8001", "8002"]
    assert sum(unit.startswith("anchor-worker@") for unit in target) == 2
    env = dict(line.split("=", 1) for line in (DEPLOY / "systemd" / "anchor.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    for key in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "SECURE_HTTPS", "BEHIND_PROXY"):
        assert key in env


def test_stopping_a_worker_as_its_unit_does_lets_the_run_in_flight_finish(c):
    """`systemctl stop` or `restart` sends the unit's KillSignal to its main process (KillMode=mixed) or to every
    process of its cgroup (control-group, where Chromium and the sandbox got it too and the run failed). The
    worker's warm shutdown must end the run it holds as it would have ended, then exit."""
    service = _unit("anchor-worker@.service")["Service"]
    with contact_site() as site:
        held = site.hold("GET /contact", 1)
        task = c.call("task_make", name=f"stopped mid-run {uuid.uuid4().hex[:6]}", code=CONTACT_CODE,
                      params={"base_url": site.url, "name": "Ada"}, self_healing=True)
        [run_id] = c.call("runs_enqueue", task)
        c.wait_for("the run to reach the site", lambda: site.counts["GET /contact"] >= 1, 60)
        worker = c.workers[worker_running(c, f"run-{run_id}")]
        group = descendants(worker.pid) if service["KillMode"] == "control-group" else set()
        for pid in [worker.pid, *group]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, getattr(signal, service["KillSignal"]))
        time.sleep(0.5)
        held.set()
        assert worker.wait(timeout=int(service["TimeoutStopSec"])) == 0
        run = c.call("run_get", run_id)

    assert run["status"] == "succeeded", run
    assert site.counts["POST /thanks"] == 1
    assert c.call("stuck", [task]) == {"runs": [], "events": []}


def test_the_compose_file_has_postgres_redis_two_webs_two_workers_and_nginx():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web1", "web2", "worker", "nginx"} <= set(services)
    for name in ("web1", "web2"):
        command = " ".join(services[name]["command"])
        assert command.startswith(WEB) and ASGI in command and "--bind 0.0.0.0 --port 8000" in command
    worker = services["worker"]
    assert " ".join(worker["command"]).endswith(WORKER)
    assert worker["deploy"]["replicas"] == 2
    for name in ("web1", "web2", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://anchor:") and env["DATABASE_URL"].endswith("@postgres:5432/anchor")
        # Task code runs on the workers and can open sockets: Redis (whose queues say what to run) takes a password.
        assert env["REDIS_URL"] == "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in deploy/.env}@redis:6379/0"
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert env["DEBUG"] == "false" and env["SECURE_HTTPS"] == "true" and env["BEHIND_PROXY"] == "true"
    for name in ("web1", "web2", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    redis = services["redis"]
    assert redis["command"][-2:] == ["--requirepass", "${REDIS_PASSWORD:?set REDIS_PASSWORD in deploy/.env}"]
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")  # the healthcheck authenticates
    assert "REDIS_PASSWORD=" in (DEPLOY / "env.example").read_text()
    nginx = services["nginx"]
    mounted = {volume.split(":")[0] for volume in nginx["volumes"]}
    for path in mounted:
        if path.endswith(".conf"):
            assert (DEPLOY / path).exists(), path
    assert set(nginx["depends_on"]) == {"web1", "web2"}
    upstream = re.findall(r"server (web\d):8000", (DEPLOY / "nginx" / "compose.conf").read_text())
    assert upstream == ["web1", "web2"]


@pytest.mark.django_db
def test_the_web_healthcheck_passes_under_the_production_settings(live_server, settings):
    """compose starts nginx only once the web processes are healthy, so the check must pass with the settings
    compose gives them: an https redirect and only the public host allowed."""
    check = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["web1"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    settings.ALLOWED_HOSTS = ["anchor.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    environment = {**os.environ, "ALLOWED_HOSTS": "anchor.example.com,www.anchor.example.com"}

    def passes(code: str) -> bool:
        code = code.replace("http://127.0.0.1:8000", live_server.url)
        return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, timeout=30).returncode == 0

    assert passes(check[3])
    # The control: a plain request to 127.0.0.1 is refused by these settings.
    assert not passes("import urllib.request as u; u.urlopen('http://127.0.0.1:8000/accounts/login/', timeout=3)")


def test_both_nginx_configs_upgrade_websockets_and_forward_the_client():
    locations = (DEPLOY / "nginx" / "anchor-locations.conf").read_text()
    ws = locations.split("location /ws/", 1)[1].split("}", 1)[0]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert "proxy_http_version 1.1;" in ws
    assert re.search(r"proxy_read_timeout\s+\d+h", ws)
    assert locations.count("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;") == 2
    assert locations.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2
    for name in ("anchor.conf", "compose.conf"):
        conf = (DEPLOY / "nginx" / name).read_text()
        assert "upstream anchor_web" in conf and "map $http_upgrade $connection_upgrade" in conf
        assert "include /etc/nginx/snippets/anchor-locations.conf;" in conf
        assert "return 301 https://$host$request_uri;" in conf


def test_the_dockerfile_installs_chromium_and_serves_the_asgi_app():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "chromium" in dockerfile and "requirements.txt" in dockerfile
    cmd = re.search(r'^CMD (\[.*\])$', dockerfile, re.M).group(1)
    assert shlex.join(yaml.safe_load(cmd)).startswith(WEB)


REDIS_CHECK = """
import django_rq
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from anchor_site import api
job = django_rq.get_queue("webhooks").enqueue("builtins.len", "abc")
layer = get_channel_layer()
async_to_sync(layer.send)("password-check", {"type": "checked"})
print(job.id, async_to_sync(layer.receive)("password-check")["type"], api._count("key", "password-check")[0])
"""


def test_the_product_speaks_to_a_redis_that_requires_a_password(tmp_path):
    """The deployment files give Redis a password in REDIS_URL: RQ, the channel layer and the API's rate
    limiter must all carry it, while a client without it is refused."""
    import redis as redis_py

    from tests.browser.live import free_port

    port, password = free_port(), "s3cretRedis"
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--requirepass", password, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        authed = redis_py.Redis(host="127.0.0.1", port=port, password=password)
        for _ in range(100):
            try:
                authed.ping()
                break
            except redis_py.ConnectionError:
                time.sleep(0.05)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "DJANGO_"))}
        env.update(DEBUG="1", REDIS_URL=f"redis://:{password}@127.0.0.1:{port}/0",
                   DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", ANCHOR_VAR_DIR=str(tmp_path))
        env.pop("ANCHOR_TESTING", None)
        result = subprocess.run([sys.executable, "manage.py", "shell", "-c", REDIS_CHECK], cwd=DEPLOY.parent, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        job_id, received, count = result.stdout.split()[-3:]  # Django's shell may print a line first
        assert authed.exists(f"rq:job:{job_id}") and received == "checked" and count == "1"
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(host="127.0.0.1", port=port).ping()
    finally:
        server.kill()
        server.wait(timeout=10)
