"""The live websocket through the real ASGI stack (origin check, session auth) and the real Redis channel layer."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from healing_app import broadcast

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def private_channel_layer(settings):
    """Our own group-name prefix: other test runs on this Redis must not see our broadcasts, nor we theirs."""
    layers = {name: {**conf, "CONFIG": {**conf["CONFIG"], "prefix": f"anchor-test-{uuid.uuid4().hex[:8]}"}}
              for name, conf in settings.CHANNEL_LAYERS.items()}
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _application():
    from anchor_site.asgi import application

    return application


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def _communicator(path: str, *, cookie: bytes | None = None, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(_application(), path, headers=headers)


def test_anonymous_visitors_are_refused():
    async def scenario():
        communicator = _communicator("/ws/live/")
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_a_foreign_origin_is_refused_even_with_a_session(member):
    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/", cookie=cookie, origin=b"http://evil.example")
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_a_logged_in_user_receives_broadcasts_for_the_page(member):
    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/?task=task_abc&obj=heal_xyz", cookie=cookie)
        connected, _ = await communicator.connect()
        assert connected
        await sync_to_async(broadcast.publish)(
            kind="healing.pending_review", task_id="task_abc", data={"event": "heal_xyz", "status": "pending_review"}
        )
        first = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first

    message = async_to_sync(scenario)()
    assert message == {"kind": "healing.pending_review", "task_id": "task_abc",
                       "data": {"event": "heal_xyz", "status": "pending_review"}}


def test_run_steps_arrive_with_their_rendered_html(member):
    cookie = _session_cookie(member)
    step = {"index": 2, "line": 5, "action": "click", "selector": "#submit<b>", "outcome": "ok", "duration_ms": 42.0}

    async def scenario():
        communicator = _communicator("/ws/live/?task=task_abc", cookie=cookie)
        assert (await communicator.connect())[0]
        await sync_to_async(broadcast.publish)(kind="run.step", task_id="task_abc", data={"run": "run_1", "step": step})
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert message["data"]["step"] == step
    assert 'data-index="2"' in message["html"] and "#submit&lt;b&gt;" in message["html"]


def test_run_steps_go_to_their_task_and_run_pages_not_to_the_shared_feed(member):
    cookie = _session_cookie(member)
    step = {"index": 0, "line": 2, "action": "goto", "outcome": "ok"}

    async def scenario():
        queue = _communicator("/ws/live/", cookie=cookie)
        run_page = _communicator("/ws/live/?obj=run_1", cookie=cookie)
        assert (await queue.connect())[0] and (await run_page.connect())[0]
        await sync_to_async(broadcast.publish)(kind="run.step", task_id="task_abc", data={"run": "run_1", "step": step})
        on_run_page = await run_page.receive_json_from(timeout=5)
        queue_silent = await queue.receive_nothing(timeout=0.5)
        await queue.disconnect()
        await run_page.disconnect()
        return on_run_page, queue_silent

    on_run_page, queue_silent = async_to_sync(scenario)()
    assert on_run_page["kind"] == "run.step" and queue_silent


def test_a_detail_page_gets_only_its_own_objects_messages_once(member):
    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/?obj=heal_mine", cookie=cookie)
        assert (await communicator.connect())[0]
        publish = sync_to_async(broadcast.publish)
        await publish(kind="healing.healing", task_id="task_other", data={"event": "heal_other"})
        await publish(kind="healing.deployed", task_id="task_abc", data={"event": "heal_mine"})
        received = [await communicator.receive_json_from(timeout=5)]
        nothing_more = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return received, nothing_more

    received, nothing_more = async_to_sync(scenario)()
    assert [m["data"]["event"] for m in received] == ["heal_mine"] and nothing_more


def test_a_heals_page_hears_its_tasks_new_versions_and_nothing_else_of_the_task(member):
    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/?obj=heal_mine&versions=task_abc", cookie=cookie)
        assert (await communicator.connect())[0]
        publish = sync_to_async(broadcast.publish)
        await publish(kind="run.step", task_id="task_abc", data={"run": "run_1", "step": {"index": 0}})
        await publish(kind="run.finished", task_id="task_abc", data={"run": "run_1"})
        await publish(kind="task.version_deployed", task_id="task_other", data={"task": "task_other", "version": 2})
        await publish(kind="task.version_deployed", task_id="task_abc", data={"task": "task_abc", "version": 3})
        received = [await communicator.receive_json_from(timeout=5)]
        nothing_more = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return received, nothing_more

    received, nothing_more = async_to_sync(scenario)()
    assert [(m["kind"], m["task_id"]) for m in received] == [("task.version_deployed", "task_abc")] and nothing_more


def test_the_queue_hears_about_every_event(member):
    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/", cookie=cookie)
        assert (await communicator.connect())[0]
        await sync_to_async(broadcast.publish)(kind="healing.triggered", task_id="task_any", data={"event": "heal_any"})
        message = await communicator.receive_json_from(timeout=5)
        nothing_more = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return message, nothing_more

    message, nothing_more = async_to_sync(scenario)()
    assert message["data"] == {"event": "heal_any"} and nothing_more


def test_group_names_from_the_query_string_are_sanitised(member):
    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/?task=../../etc&obj=%C3%A9" + "x" * 100, cookie=cookie)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is True  # connected, but joined only the shared events group


def test_switching_the_demo_site_tells_open_dashboards(member):
    """The demo control on every open queue re-renders when the site is switched elsewhere."""
    from tasks_app.demo.seed import demo_switch

    cookie = _session_cookie(member)

    async def scenario():
        communicator = _communicator("/ws/live/", cookie=cookie)
        assert (await communicator.connect())[0]
        await sync_to_async(demo_switch)(version=2, run=False)
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message

    assert async_to_sync(scenario)() == {"kind": "demo.site_changed", "task_id": None, "data": {"version": 2}}


@pytest.mark.parametrize("sign_out", ["logout", "deactivate"])
def test_a_socket_stops_delivering_once_its_session_no_longer_signs_in(member, sign_out, monkeypatch):
    from django.contrib.sessions.models import Session

    from healing_app import consumers

    monkeypatch.setattr(consumers, "SESSION_RECHECK_S", 0)
    cookie = _session_cookie(member)
    publish = sync_to_async(broadcast.publish)

    async def scenario():
        communicator = _communicator("/ws/live/", cookie=cookie)
        assert (await communicator.connect())[0]
        await publish(kind="healing.triggered", task_id="task_any", data={"event": "heal_1"})
        before = await communicator.receive_json_from(timeout=5)
        if sign_out == "logout":
            await sync_to_async(Session.objects.all().delete)()
        else:
            member.is_active = False
            await sync_to_async(member.save)()
        await publish(kind="healing.triggered", task_id="task_any", data={"event": "heal_2"})
        after = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return before, after

    before, after = async_to_sync(scenario)()
    assert before["data"] == {"event": "heal_1"}
    assert after == {"type": "websocket.close", "code": 4401}
