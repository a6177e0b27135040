"""JWT authentication (DevServer jwt_secret; the token goes in metadata.access_token):
a valid token connects, rejections end with WEBSOCKET_ONCLOSE carrying the 4401 close,
and the connection_lifetime claim ends the session with LIFETIME-EXPIRED (scenario 5)."""
from __future__ import annotations

import time

import pytest

from conftest import SERVER_DISCONNECT_PREFIX, mode_kwargs

jwt = pytest.importorskip("jwt")

SECRET = "e2e-test-secret-0123456789abcdef0123456789abcdef"
WS, DC = 0, 1
SENT, RECEIVED = 0, 1


@pytest.fixture
def auth_server(make_server):
    return make_server(jwt_secret=SECRET)


def token(channel_id, secret=SECRET, exp_in=60.0, **claims):
    body = {"channel_id": channel_id, "exp": int(time.time() + exp_in), **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def test_valid_token(sdk, auth_server, channel_id, clients):
    c = clients(sdk, auth_server, channel_id,
                metadata={"access_token": token(channel_id, client_id="from-token",
                                                metadata={"granted": True})}).connect()
    assert c.offer["client_id"] == "from-token"  # claims are auth overrides
    assert c.offer["metadata"] == {"granted": True}
    connect_msg = c.signaling[0][2]
    assert connect_msg["type"] == "connect"
    assert connect_msg["metadata"]["access_token"].count(".") == 2
    code, _ = c.disconnect()
    assert code == int(sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED)


REJECTIONS = {
    "expired": (lambda ch: {"access_token": token(ch, exp_in=-60)},
                "AUTH-ERROR: access_token expired"),
    "wrong_channel": (lambda ch: {"access_token": token(ch + "-other")},
                      "AUTH-ERROR: access_token channel_id mismatch"),
    "bad_signature": (lambda ch: {"access_token": token(ch, secret="x" * 48)},
                      "AUTH-ERROR: invalid access_token (Signature verification failed)"),
    "missing": (lambda ch: None, "AUTH-ERROR: metadata.access_token is missing"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_rejected_token(sdk, auth_server, channel_id, clients, case):
    make_md, reason = REJECTIONS[case]
    c = clients(sdk, auth_server, channel_id, metadata=make_md(channel_id))
    t0 = time.monotonic()
    c.connect(wait=False)
    code, message = c.wait_disconnected(5)
    assert time.monotonic() - t0 < 3
    assert code == int(sdk.SoraSignalingErrorCode.WEBSOCKET_ONCLOSE)
    assert "wscode=4401" in message and f"wsreason={reason}" in message, message
    assert c.ws_closes == [(4401, reason)]
    assert c.offer is None and not c.connected.is_set()
    assert c.signaling_types() == [(WS, SENT, "connect")]
    assert auth_server.connections(channel_id) == []


@pytest.mark.parametrize("mode", ["ws", "dconly"])
def test_connection_lifetime(sdk, auth_server, channel_id, clients, mode):
    c = clients(sdk, auth_server, channel_id, **mode_kwargs(mode),
                metadata={"access_token": token(channel_id, connection_lifetime=1)})
    t0 = time.monotonic()
    c.connect()
    code, message = c.wait_disconnected(6)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4, elapsed
    assert code == int(sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED)
    assert "LIFETIME-EXPIRED" in message, message
    assert message.startswith(SERVER_DISCONNECT_PREFIX[mode]), message
    if mode == "ws":
        assert c.ws_closes == [(1000, "LIFETIME-EXPIRED")]
    else:
        assert c.ws_closes == [(1000, "SELF-CLOSED")]
        closes = [(t, d, m) for t, d, m in c.signaling if m.get("type") == "close"]
        assert closes == [(DC, RECEIVED, {"type": "close", "code": 1000,
                                          "reason": "LIFETIME-EXPIRED"})]
