"""The validators of the conformance test catch what does not match Discord's description."""

from __future__ import annotations

import copy

import pytest

from tests.discord_spec.gateway import frame_errors
from tests.discord_spec.validate import ref, request_errors, response_errors, schema_errors
from tests.fakediscord import FakeDiscord


@pytest.fixture
def message() -> dict:
    """A member's message with an image, as the test server stores it (REST form)."""
    server = FakeDiscord()
    guild = server.add_guild("G")
    alice = server.add_user("alice")
    server.add_member(guild, alice)
    channel = server.add_channel(guild, "general")
    att = server.store_attachment(channel, "a.png", b"\x89PNG\r\n", "image/png")
    return server.build_message(channel, alice, "hi", attachments=[att])


def test_a_message_as_the_server_stores_it_matches(message: dict) -> None:
    assert schema_errors(message, ref("MessageResponse")) == []
    frame = {"op": 0, "s": 3, "t": "MESSAGE_CREATE", "d": dict(message, guild_id="1")}
    assert frame_errors(frame) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m["attachments"][0].pop("proxy_url"), "'proxy_url' is a required property"),
        (lambda m: m.update(id=int(m["id"])), "is not of type 'string'"),
        (lambda m: m.update(timestamp="yesterday"), "is not a 'date-time'"),
        (lambda m: m["author"].update(clan=None), "$.author.clan: not in the spec's schema"),
        (lambda m: m["attachments"][0].update(spoiler=True), "attachments[0].spoiler: not in"),
        (lambda m: m.update(flags=2**40), "flags"),
    ],
    ids=["missing-field", "wrong-type", "bad-timestamp", "invented-field", "nested", "int32"],
)
def test_a_message_that_differs_fails(message: dict, change: object, expected: str) -> None:
    broken = copy.deepcopy(message)
    change(broken)  # type: ignore[operator]
    errors = schema_errors(broken, ref("MessageResponse"))
    assert any(expected in e for e in errors), errors


def test_rest_responses_are_checked_against_their_operation() -> None:
    headers = {
        "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "1.0",
        "X-RateLimit-Reset-After": "1.0", "X-RateLimit-Bucket": "abc",
    }  # fmt: skip
    body = {"message": "You are being rate limited.", "retry_after": 0.5, "global": False}
    path = "/channels/1/messages"
    assert any("'code' is a required property" in e
               for e in response_errors("POST", path, 429, headers, body))  # fmt: skip
    assert response_errors("POST", path, 429, headers, dict(body, code=0)) == []
    unknown = {"message": "Unknown User", "code": 10013}
    errors = response_errors("GET", "/users/@me", 404, {}, unknown)
    assert "GET /users/@me -> 404: header X-RateLimit-Bucket missing" in errors
    assert response_errors("GET", "/nope/1", 200, headers, {}) == [
        "GET /nope/1 -> 200: no such operation in the spec"
    ]
    assert response_errors("DELETE", "/channels/1/messages/2", 204, headers, None) == []


def test_rest_requests_are_checked_against_their_operation() -> None:
    """As discord.py sends them: snowflakes as integers, which Discord takes."""
    reply = {"content": "hi", "message_reference": {"message_id": 1 << 60, "channel_id": 1 << 59}}
    assert request_errors("POST", "/channels/1/messages", reply, multipart=True) == []
    too_long = {"content": "x" * 4001}
    assert any("['content']" in e for e in request_errors("POST", "/channels/1/messages", too_long))
    command = {"type": 1, "name": "find", "description": "d" * 101}
    errors = request_errors("PUT", "/applications/1/commands", [command])
    assert any("[0]['description']" in e for e in errors), errors
    assert request_errors("GET", "/users/@me", {"x": 1}) == [
        "GET /users/@me (request): a JSON body where the spec takes none for /users/@me"
    ]


def test_gateway_frames_are_checked_against_the_documented_tables() -> None:
    assert frame_errors({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}) == []
    traced = {"op": 10, "d": {"heartbeat_interval": 1, "_trace": []}, "s": None, "t": None}
    assert frame_errors(traced)  # a field the Hello table does not name
    assert frame_errors({"op": 11, "d": None, "s": 4, "t": None})  # s is null unless op 0
    assert frame_errors({"op": 0, "d": {}, "s": 1, "t": "MADE_UP"})
    deleted = {"id": "1", "channel_id": "2", "guild_id": "3"}
    assert frame_errors({"op": 0, "d": deleted, "s": 1, "t": "MESSAGE_DELETE"}) == []
    assert frame_errors({"op": 0, "d": {"id": "1"}, "s": 1, "t": "MESSAGE_DELETE"})
