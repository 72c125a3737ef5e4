"""The websocket consumer through the real ASGI stack: origin check, session auth, replay, isolation."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from notifications.models import Notification
from notifications.services import notify
from project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def communicator(cookie: str | None = None, origin: str | None = "http://localhost:8000"):
    headers = [(b"host", b"localhost:8000")]
    if origin:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/notifications/", headers=headers)


def run(coro):
    return asyncio.run(coro)


async def connect(comm):
    connected, code = await comm.connect(timeout=5)
    return connected, code


def test_anonymous_is_rejected():
    async def scenario():
        comm = communicator()
        connected, code = await connect(comm)
        assert not connected and code == 4401

    run(scenario())


def test_foreign_origin_is_rejected(alice):
    cookie = session_cookie(alice)

    async def scenario():
        comm = communicator(cookie, origin="https://evil.example")
        connected, _ = await connect(comm)
        assert not connected

    run(scenario())


def test_missing_origin_is_rejected(alice):
    cookie = session_cookie(alice)

    async def scenario():
        comm = communicator(cookie, origin=None)
        connected, _ = await connect(comm)
        assert not connected

    run(scenario())


def test_unseen_notifications_are_replayed_oldest_first_and_can_be_marked_seen(alice, make_user):
    first = notify(alice, type="report.ready", title="First", payload={"job": {"id": "a"}})
    second = notify(alice, type="report.failed", title="Second", body="boom", payload={"job": {"id": "b"}})
    seen = notify(alice, type="report.ready", title="Old")
    Notification.objects.filter(pk=seen.pk).mark_seen()
    notify(make_user("bob"), type="report.ready", title="Bob's")
    cookie = session_cookie(alice)

    async def scenario():
        comm = communicator(cookie)
        assert (await connect(comm))[0]
        one, two = await comm.receive_json_from(timeout=5), await comm.receive_json_from(timeout=5)
        assert [one["notification"]["title"], two["notification"]["title"]] == ["First", "Second"]
        assert one["type"] == "report.ready" and one["job"] == {"id": "a"} and one["replay"] is True
        assert two["notification"]["body"] == "boom"
        assert await comm.receive_nothing(timeout=0.3)
        await comm.send_json_to({"action": "seen", "ids": [first.pk, second.pk, 999999]})
        assert await comm.receive_json_from(timeout=5) == {"type": "seen", "count": 2}
        await comm.disconnect()

        again = communicator(cookie)
        assert (await connect(again))[0]
        # nothing unseen left to replay
        assert await again.receive_nothing(timeout=0.3)
        await again.disconnect()

    run(scenario())
    assert not Notification.objects.filter(user=alice).unseen().exists()


def test_pushes_reach_only_their_user_whatever_the_client_sends(alice, make_user):
    bob = make_user("bob")
    alice_cookie, bob_cookie = session_cookie(alice), session_cookie(bob)
    bobs = notify(bob, type="report.ready", title="Bob's", store=True)
    Notification.objects.filter(pk=bobs.pk).mark_seen()

    async def scenario():
        a, b = communicator(alice_cookie), communicator(bob_cookie)
        assert (await connect(a))[0] and (await connect(b))[0]
        # Alice tries to join Bob's group, and to mark Bob's notification seen: neither is an action.
        await a.send_json_to({"action": "subscribe", "group": f"user.{bob.pk}"})
        assert (await a.receive_json_from(timeout=5))["type"] == "error"
        await a.send_json_to({"action": "seen", "ids": [bobs.pk]})
        assert await a.receive_json_from(timeout=5) == {"type": "seen", "count": 0}

        from asgiref.sync import sync_to_async

        await sync_to_async(notify)(bob, type="report.progress", payload={"job": {"id": "x"}}, store=False)
        assert (await b.receive_json_from(timeout=5)) == {"type": "report.progress", "job": {"id": "x"}}
        assert await a.receive_nothing(timeout=0.5)
        await a.disconnect()
        await b.disconnect()

    run(scenario())


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        '{"action": "seen", "ids": "all"}',
        "x" * 5000,
        "[1]",
        "[" * 2000 + "]" * 2000,
        "[" * 4000,
        '{"a":' * 800 + "1" + "}" * 800,
    ],
)
def test_bad_client_messages_get_an_error_and_the_socket_stays_open(alice, message):
    cookie = session_cookie(alice)

    async def scenario():
        comm = communicator(cookie)
        assert (await connect(comm))[0]
        await comm.send_to(text_data=message)
        assert (await comm.receive_json_from(timeout=5))["type"] == "error"
        # still open and answering
        await comm.send_json_to({"action": "seen_all"})
        assert await comm.receive_json_from(timeout=5) == {"type": "seen", "count": 0}
        await comm.disconnect()

    run(scenario())


@pytest.mark.parametrize(
    ("origin", "scheme", "allowed"),
    [
        ("http://localhost:8000", "ws", True),
        # another port of the same host
        ("http://localhost:1", "ws", False),
        # another scheme
        ("https://localhost:8000", "ws", False),
        # a page over HTTP opening a socket of the HTTPS site
        ("http://localhost:8000", "wss", False),
        ("https://localhost:8000", "wss", True),
        ("http://localhost:8000.evil.example", "ws", False),
        ("null", "ws", False),
        # listed in CSRF_TRUSTED_ORIGINS
        ("https://reports.example", "ws", True),
    ],
)
def test_the_origin_must_be_this_site_exactly(alice, settings, origin, scheme, allowed):
    settings.CSRF_TRUSTED_ORIGINS = ["https://reports.example"]
    cookie = session_cookie(alice)

    async def scenario():
        comm = communicator(cookie, origin=origin)
        comm.scope["scheme"] = scheme
        connected, _ = await connect(comm)
        assert connected is allowed
        if connected:
            await comm.disconnect()

    run(scenario())


def test_a_host_outside_allowed_hosts_is_refused_even_from_its_own_origin(alice):
    cookie = session_cookie(alice)

    async def scenario():
        headers = [
            (b"host", b"evil.example"),
            (b"origin", b"http://evil.example"),
            (b"cookie", f"sessionid={cookie}".encode()),
        ]
        comm = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
        assert not (await connect(comm))[0]

    run(scenario())


def test_a_flood_of_client_messages_is_dropped_beyond_the_rate(alice):
    """500 seen_all frames at once: the first burst is answered, the rest dropped with one warning."""
    from notifications.consumers import CLIENT_MESSAGES_BURST

    cookie = session_cookie(alice)
    Notification.objects.create(user=alice, type="report.ready", title="Unseen")

    async def scenario():
        comm = communicator(cookie)
        assert (await connect(comm))[0]
        # the replay
        await comm.receive_json_from(timeout=5)
        for _ in range(500):
            await comm.send_json_to({"action": "seen_all"})
        replies = []
        while not await comm.receive_nothing(timeout=1):
            replies.append(await comm.receive_json_from(timeout=5))
        await comm.disconnect()
        return replies

    replies = run(scenario())
    answered = [r for r in replies if r["type"] == "seen"]
    warnings = [r for r in replies if r["type"] == "error"]
    assert CLIENT_MESSAGES_BURST <= len(answered) <= CLIENT_MESSAGES_BURST + 10
    assert 1 <= len(warnings) <= 3 and "slow down" in warnings[0]["error"]


def test_a_user_has_at_most_so_many_sockets_opened_at_most_so_fast(alice, make_user, monkeypatch):
    from notifications import consumers

    monkeypatch.setattr(consumers, "USER_SOCKETS", consumers.UserSockets())
    monkeypatch.setattr(consumers, "MAX_SOCKETS_PER_USER", 3)
    monkeypatch.setattr(consumers, "OPENS_BURST", 5)
    alices, bobs = session_cookie(alice), session_cookie(make_user("bob"))

    async def scenario():
        sockets = [communicator(alices) for _ in range(4)]
        accepted = [(await connect(comm))[0] for comm in sockets]
        # the fourth is accepted only to be closed, with its reason
        assert accepted == [True] * 4
        assert (await sockets[3].receive_output(timeout=5)) == {"type": "websocket.close", "code": 4429}
        bob = communicator(bobs)
        # another user has sockets of their own
        assert (await connect(bob))[0]
        await sockets[0].disconnect()
        again = communicator(alices)
        assert (await connect(again))[0]
        # one closed: room for one more, and it stays
        assert await again.receive_nothing(timeout=0.3)
        # Opened too fast: 5 at once, then no more until the bucket fills again.
        await again.disconnect()
        for comm in sockets[1:3]:
            await comm.disconnect()
        burst = [communicator(alices) for _ in range(2)]
        for comm in burst:
            await connect(comm)
        assert (await burst[-1].receive_output(timeout=5))["code"] == 4429
        for comm in [*burst, bob]:
            await comm.disconnect()

    run(scenario())
