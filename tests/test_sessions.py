"""A websocket lives as long as its session: the real web server, real clients with real session cookies.
Logging out, changing the password, being deactivated, or the session expiring closes the user's
sockets within seconds, and nothing reaches them afterwards."""

import datetime as dt
import json
import statistics
import time
from importlib import import_module

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from notifications.services import notify
from tests.helpers import LiveSession, record

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def connected(session: LiveSession):
    """An open socket with its replay read."""
    socket = session.websocket()
    with pytest.raises(TimeoutError):
        while True:
            socket.recv(timeout=0.5)
    return socket


def seconds_to_close(socket, timeout: float = 10, started: float | None = None) -> float:
    """How long (from `started`, default now) until the server closes the socket; fails if it sends
    anything else meanwhile."""
    started = started or time.monotonic()
    try:
        message = socket.recv(timeout=timeout)
    except ConnectionClosed:
        assert socket.close_code == 4401
        return time.monotonic() - started
    raise AssertionError(f"The socket stayed open and got {message!r}")


def test_logging_out_closes_that_sessions_sockets_and_only_those(alice, web_server):
    delays = []
    for _ in range(20):
        session, other = LiveSession(web_server, alice), LiveSession(web_server, alice)
        socket, other_socket = connected(session), connected(other)
        started = time.monotonic()
        status, _, _ = session.request("POST", "/logout/")
        assert status in (200, 302)
        delays.append(seconds_to_close(socket, started=started))
        notify(alice, type="report.ready", title="After the logout")
        assert json.loads(other_socket.recv(timeout=5))["notification"]["title"] == "After the logout"
        other_socket.close()
    record(case="socket close after logout", median=round(statistics.median(delays), 3), worst=round(max(delays), 3))
    assert max(delays) < 5


def test_a_password_change_closes_every_socket_of_the_user(alice, web_server):
    sockets = [connected(LiveSession(web_server, alice)) for _ in range(2)]
    alice.set_password("a-new-password-1234")
    alice.save()
    assert all(seconds_to_close(socket) < 5 for socket in sockets)


def test_deactivation_closes_the_users_sockets(alice, make_user, web_server):
    socket, bobs = connected(LiveSession(web_server, alice)), connected(LiveSession(web_server, make_user("bob")))
    alice.is_active = False
    alice.save()
    assert seconds_to_close(socket) < 5
    bobs.send(json.dumps({"action": "seen_all"}))
    # other users' sockets stay
    assert json.loads(bobs.recv(timeout=5))["type"] == "seen"


def test_an_expiring_session_closes_its_socket(alice, web_server):
    session = LiveSession(web_server, alice)
    store = import_module(settings.SESSION_ENGINE).SessionStore(session.session)
    store.set_expiry(3)
    store.save()
    socket = connected(session)
    started = time.monotonic()
    seconds_to_close(socket, timeout=15)
    # about when it expired (3 s after it was set)
    assert 2 <= time.monotonic() - started + 1 < 6


def test_a_socket_closes_at_its_sessions_real_expiry_in_the_database(alice, web_server):
    """A session saved with the default age keeps no expiry in its data: the row's expire_date is the
    one that counts (here cut to 3 s from now, as a shorter SESSION_COOKIE_AGE at its last save would)."""
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    session = LiveSession(web_server, alice)
    Session.objects.filter(session_key=session.session).update(expire_date=timezone.now() + dt.timedelta(seconds=3))
    socket = connected(session)
    started = time.monotonic()
    seconds_to_close(socket, timeout=15)
    assert time.monotonic() - started < 6
