"""The example chat (websocket_app): rooms as channels, object-level access, history, sends."""

from __future__ import annotations

import json
from unittest.mock import Mock, patch

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.views.defaults import permission_denied

from django_aws_api_gateway_websockets.models import ChannelMessage, WebSocketSession
from tests.seed.headers import api_gateway_connect_headers, api_gateway_headers
from websocket_app.models import ChatMessage, Room
from websocket_app.views import HISTORY_LENGTH

pytestmark = pytest.mark.django_db


@pytest.fixture
def users(django_user_model):
    return {
        name: django_user_model.objects.create_user(username=name, password=name)
        for name in ("alice", "bob", "mallory")
    }


@pytest.fixture
def rooms(users):
    private = Room.objects.create(slug="team-a", title="Team A", is_private=True)
    private.members.add(users["alice"], users["bob"])
    return {"public": Room.objects.create(slug="general", title="General"), "private": private}


def connect_as(user, api_gateway, channel, connection_id):
    client = Client()
    client.force_login(user)
    token = client.post("/api/ws-token/").json()["token"]
    headers = api_gateway_connect_headers(connection_id=connection_id)
    del headers["HTTP_COOKIE"]
    return client.post(
        f"/ws/connect?channel={channel}&ws_token={token}",
        data="",
        content_type="application/json",
        **headers,
    )


def message(body, connection_id):
    return Client().post(
        "/ws/default",
        data=json.dumps(body),
        content_type="application/json",
        **api_gateway_headers(connection_id=connection_id),
    )


@pytest.fixture(autouse=True)
def aws_client():
    """Presence and chat messages are sent through a mocked @connections client."""
    client = Mock()
    client.post_to_connection.return_value = {}
    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client):
        yield client


def test_members_join_private_room_others_cannot(users, rooms, api_gateway):
    assert connect_as(users["alice"], api_gateway, "team-a", "alice-1").status_code == 200
    refused = connect_as(users["mallory"], api_gateway, "team-a", "mallory-1")
    assert refused.status_code == 403
    assert not WebSocketSession.objects.filter(connection_id="mallory-1").exists()


def test_chat_message_is_stored_and_sent_to_the_room_only(users, rooms, api_gateway, aws_client):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    connect_as(users["bob"], api_gateway, "general", "bob-1")
    connect_as(users["mallory"], api_gateway, "elsewhere", "mallory-1")

    response = message({"action": "chat_message", "message": "hello"}, "alice-1")

    assert response.status_code == 200
    assert response.json() == {"type": "ack", "delivered": 2}
    sent_to = {call.kwargs["ConnectionId"] for call in aws_client.post_to_connection.call_args_list}
    assert sent_to == {"alice-1", "bob-1"}
    event = json.loads(aws_client.post_to_connection.call_args.kwargs["Data"])
    assert (event["type"], event["user"], event["message"]) == ("chat_message", "alice", "hello")
    assert event["seq"] == 1  # stored in the room's replay log: the page's history
    assert ChatMessage.objects.get().room == rooms["public"]


@pytest.mark.parametrize("text", ["", "   ", None, 5, "x" * 2001])
def test_invalid_chat_message_is_400(users, rooms, api_gateway, aws_client, text):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    response = message({"action": "chat_message", "message": text}, "alice-1")
    assert response.status_code == 400
    assert not ChatMessage.objects.exists()
    aws_client.post_to_connection.assert_not_called()


def test_removed_member_can_no_longer_post(users, rooms, api_gateway, aws_client):
    connect_as(users["bob"], api_gateway, "team-a", "bob-1")
    rooms["private"].members.remove(users["bob"])
    response = message({"action": "chat_message", "message": "still here?"}, "bob-1")
    assert response.status_code == 403
    assert not ChatMessage.objects.exists()


def test_messages_are_kept_in_their_rooms_replay_log(users, rooms, api_gateway, aws_client):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    connect_as(users["bob"], api_gateway, "team-a", "bob-1")
    for text in ("one", "two"):
        message({"action": "chat_message", "message": text}, "alice-1")
    message({"action": "chat_message", "message": "secret"}, "bob-1")
    log = ChannelMessage.objects.filter(channel_name="general").order_by("seq")
    assert [(m.seq, json.loads(m.payload)["message"]) for m in log] == [(1, "one"), (2, "two")]
    assert ChannelMessage.objects.get(channel_name="team-a").seq == 1


def test_room_page_replays_the_last_messages_of_each_room(users, rooms, api_gateway):
    for seq in range(1, HISTORY_LENGTH + 21):
        ChannelMessage.objects.create(channel_name="general", seq=seq, payload="{}")
    ChannelMessage.objects.create(channel_name="team-a", seq=7, payload="{}")
    client = Client()
    client.force_login(users["alice"])
    page = client.get("/rooms/general/")
    assert page.context["client_config"]["since"] == 20  # the last HISTORY_LENGTH
    html = page.content.decode()
    # Room links carry theirs, for a room change: team-a's only kept message is 7 (no gap).
    assert 'data-room="team-a" data-since="6"' in html
    assert 'data-room="general" data-since="20"' in html


def test_room_page_of_an_empty_room_replays_from_the_start(users, rooms, api_gateway):
    client = Client()
    client.force_login(users["alice"])
    assert client.get("/rooms/general/").context["client_config"]["since"] == 0


def test_change_room_respects_membership(users, rooms, api_gateway):
    connect_as(users["mallory"], api_gateway, "general", "mallory-1")
    refused = message({"action": "change_channel", "channel": "team-a"}, "mallory-1")
    assert refused.status_code == 403
    assert WebSocketSession.objects.get(connection_id="mallory-1").channel_name == "general"
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    moved = message({"action": "change_channel", "channel": "team-a"}, "alice-1")
    assert moved.json() == {"channel": "team-a"}


def test_restricted_handler_needs_can_use_chat(users, rooms, api_gateway):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    assert message({"action": "restricted"}, "alice-1").status_code == 403
    users["alice"].user_permissions.add(Permission.objects.get(codename="can_use_chat"))
    assert message({"action": "restricted"}, "alice-1").status_code == 200


def test_unknown_action_is_400(users, rooms, api_gateway):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    assert message({"action": "launch_missiles"}, "alice-1").status_code == 400


def test_index_lists_rooms_the_user_may_see(users, rooms, api_gateway):
    client = Client()
    client.force_login(users["mallory"])
    page = client.get("/").content.decode()
    assert "General" in page and "Team A" not in page
    client.force_login(users["alice"])
    assert "Team A" in client.get("/").content.decode()


def test_createdemo_is_idempotent():
    call_command("createdemo")
    call_command("createdemo")
    assert Room.objects.count() == 3
    assert Client().login(username="demo", password="demo")


def test_presence_is_announced_to_the_room_on_connect_and_disconnect(
    users, rooms, api_gateway, aws_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        connect_as(users["alice"], api_gateway, "general", "alice-1")
    aws_client.post_to_connection.reset_mock()
    with django_capture_on_commit_callbacks() as after_commit:
        connect_as(users["bob"], api_gateway, "general", "bob-1")
    # Nothing is sent while $connect's transaction is open ...
    aws_client.post_to_connection.assert_not_called()
    for callback in after_commit:
        callback()
    # ... the announcement goes out once it has committed.
    calls = aws_client.post_to_connection.call_args_list
    # Only alice is told: bob's own connection is still in its $connect.
    assert [call.kwargs["ConnectionId"] for call in calls] == ["alice-1"]
    assert json.loads(calls[0].kwargs["Data"]) == {
        "type": "presence",
        "channel": "general",
        "event": "join",
        "user": "bob",
        "users": ["alice", "bob"],
        "anonymous": 0,
    }
    aws_client.post_to_connection.reset_mock()
    with django_capture_on_commit_callbacks(execute=True):
        Client().post(
            "/ws/disconnect",
            data="",
            content_type="application/json",
            **api_gateway_headers(connection_id="bob-1"),
        )
    calls = aws_client.post_to_connection.call_args_list
    assert [json.loads(call.kwargs["Data"])["users"] for call in calls] == [["alice"]]
    assert json.loads(calls[0].kwargs["Data"])["event"] == "leave"


def room_lookups(captured):
    """The queries that load a room (not the audience's subqueries on the room table)."""
    return [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].startswith('SELECT "websocket_app_room"."id"')
    ]


def test_a_connect_and_a_message_look_their_room_up_once(
    users, rooms, api_gateway, aws_client, django_capture_on_commit_callbacks
):
    """The channel check, the presence audience and the chat handler share one lookup."""
    with (
        CaptureQueriesContext(connection) as connecting,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert connect_as(users["alice"], api_gateway, "team-a", "alice-1").status_code == 200
    with CaptureQueriesContext(connection) as chatting:
        response = message({"action": "chat_message", "message": "hi"}, "alice-1")
    assert response.json() == {"type": "ack", "delivered": 1}
    assert len(room_lookups(connecting)) == 1, room_lookups(connecting)
    assert len(room_lookups(chatting)) == 1, room_lookups(chatting)


def test_a_removed_member_hears_no_more_joins_or_leaves(
    users, rooms, api_gateway, aws_client, django_capture_on_commit_callbacks
):
    rooms["private"].members.add(users["mallory"])
    with django_capture_on_commit_callbacks(execute=True):
        connect_as(users["bob"], api_gateway, "team-a", "bob-1")
        connect_as(users["mallory"], api_gateway, "team-a", "mallory-1")
    rooms["private"].members.remove(users["bob"])
    aws_client.post_to_connection.reset_mock()
    with django_capture_on_commit_callbacks(execute=True):
        connect_as(users["alice"], api_gateway, "team-a", "alice-1")
        Client().post(
            "/ws/disconnect",
            data="",
            content_type="application/json",
            **api_gateway_headers(connection_id="alice-1"),
        )
    told = [
        (call.kwargs["ConnectionId"], json.loads(call.kwargs["Data"])["event"])
        for call in aws_client.post_to_connection.call_args_list
    ]
    assert told == [("mallory-1", "join"), ("mallory-1", "leave")]


def test_only_the_chats_actions_are_handlers(users, rooms, api_gateway):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    for action in ("room", "_room", "setup", "presence_audience", "is_channel_allowed"):
        response = message({"action": action}, "alice-1")
        assert (response.status_code, response.json()) == (400, {"error": "Unknown action"})


def test_a_message_to_a_channel_without_a_room_creates_it(users, api_gateway, aws_client):
    connect_as(users["alice"], api_gateway, "brand-new", "alice-1")
    response = message({"action": "chat_message", "message": "first!"}, "alice-1")
    assert response.json() == {"type": "ack", "delivered": 1}
    assert ChatMessage.objects.get().room.slug == "brand-new"


def test_who_is_here_lists_the_room_including_the_newcomer(users, rooms, api_gateway):
    connect_as(users["alice"], api_gateway, "general", "alice-1")
    connect_as(users["bob"], api_gateway, "general", "bob-1")
    connect_as(users["mallory"], api_gateway, "random", "mallory-1")
    answer = message({"action": "who_is_here"}, "alice-1").json()
    assert answer == {"type": "here_now", "channel": "general", "users": ["alice", "bob"]}


def test_room_page_needs_login_and_membership(users, rooms, api_gateway):
    client = Client()
    assert client.get("/rooms/general/").status_code == 302
    client.force_login(users["mallory"])
    assert client.get("/rooms/team-a/").status_code == 404
    assert client.get("/rooms/nowhere/").status_code == 404
    page = client.get("/rooms/general/")
    assert page.status_code == 200
    config = page.context["client_config"]
    assert config["channel"] == "general" and config["tokenUrl"] == "/api/ws-token/"
    assert "websocket-client.js" in page.content.decode()


def test_removed_member_stops_receiving_and_reading(users, rooms, api_gateway, aws_client):
    connect_as(users["alice"], api_gateway, "team-a", "alice-1")
    connect_as(users["bob"], api_gateway, "team-a", "bob-1")
    rooms["private"].members.remove(users["bob"])
    aws_client.post_to_connection.reset_mock()
    message({"action": "chat_message", "message": "bob is gone"}, "alice-1")
    recipients = {c.kwargs["ConnectionId"] for c in aws_client.post_to_connection.call_args_list}
    assert recipients == {"alice-1"}
    assert message({"action": "who_is_here"}, "bob-1").status_code == 403


FAVICON = '<link rel="icon" href="/static/websocket_app/favicon.svg" type="image/svg+xml">'
STYLESHEET = '<link rel="stylesheet" href="/static/websocket_app/chat.css">'


@override_settings(LOGOUT_REDIRECT_URL=None)
def test_logout_lands_on_the_chats_login_page_not_the_admins(users):
    client = Client()
    client.force_login(users["alice"])
    response = client.post("/logout/", follow=True)
    assert response.redirect_chain == [("/login/", 302)]
    assert "registration/login.html" in [t.name for t in response.templates]
    assert "You have logged out." in response.content.decode()
    assert "_auth_user_id" not in client.session


@override_settings(LOGIN_URL="/accounts/login/", LOGIN_REDIRECT_URL="/accounts/profile/")
def test_login_redirects_stay_in_the_chat_whatever_the_project_settings(users, rooms):
    """A project with Django's defaults has no /accounts/ pages."""
    client = Client()
    assert client.get("/rooms/general/")["Location"] == "/login/?next=/rooms/general/"
    logged_in = client.post("/login/", {"username": "alice", "password": "alice"})
    assert logged_in["Location"] == "/"
    after_next = client.post(
        "/login/?next=/rooms/general/", {"username": "alice", "password": "alice"}
    )
    assert after_next["Location"] == "/rooms/general/"


def test_room_page_passes_the_login_url_to_the_script(users, rooms):
    client = Client()
    client.force_login(users["alice"])
    assert client.get("/rooms/general/").context["client_config"]["loginUrl"] == "/login/"


def test_not_found_is_the_chats_styled_page(users, rooms):
    client = Client()
    client.force_login(users["mallory"])
    for path in ("/rooms/nowhere/", "/rooms/team-a/", "/no/such/page/"):
        response = client.get(path)
        assert response.status_code == 404
        page = response.content.decode()
        assert "404.html" in [t.name for t in response.templates]
        assert STYLESHEET in page and "Page not found" in page and "Back to the rooms" in page
        assert f"<code>{path}</code>" in page
        assert "mallory" in page  # the usual header, with the user logged in


def test_a_stale_form_gets_the_chats_styled_403():
    """A login form posted without its CSRF cookie (opened before a logout in another tab)."""
    response = Client(enforce_csrf_checks=True).post(
        "/login/", {"username": "alice", "password": "alice"}
    )
    assert response.status_code == 403
    page = response.content.decode()
    assert STYLESHEET in page and "This form has expired" in page and FAVICON in page


def test_permission_denied_is_the_chats_styled_403(users):
    request = RequestFactory().get("/rooms/general/")
    request.user = users["alice"]
    response = permission_denied(request, PermissionDenied("no"))
    assert response.status_code == 403
    page = response.content.decode()
    assert STYLESHEET in page and "Access denied" in page and "Back to the rooms" in page


def test_every_page_declares_a_favicon_that_is_served(users, rooms):
    client = Client()
    pages = [client.get("/"), client.get("/login/"), client.get("/no/such/page/")]
    client.force_login(users["alice"])
    pages.append(client.get("/rooms/general/"))
    for page in pages:
        assert FAVICON in page.content.decode()
    icon = client.get("/static/websocket_app/favicon.svg")
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)
