"""Hostile clients against the dev server: raw WebSocket clients sending mutated ``connect``
messages, answers and candidates, floods, and hostile HTTP API bodies. The server must close
each bad session with a 4xxx code and a reason (never 1011 INTERNAL-ERROR), log no
exception, never pass non-standard JSON on to other clients, and go on serving."""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from conftest import wait_until
from hostile import DEEP, mutate_message

CASES = 300
CONCURRENCY = 20


def connect_template(channel_id: str) -> dict:
    return {
        "type": "connect", "role": "sendrecv", "channel_id": channel_id,
        "client_id": "hostile", "metadata": {"k": [1, "v"]},
        "signaling_notify_metadata": {"name": "n", "n": 1},
        "audio": {"codec_type": "OPUS", "bit_rate": 64}, "video": False,
        "data_channel_signaling": True, "ignore_disconnect_websocket": False,
        "data_channels": [{"label": "#c", "direction": "sendrecv", "compress": True}],
        "sora_client": "hostile", "environment": "test",
    }


FOLLOW_UPS = [
    {"type": "answer", "sdp": "v=0\r\n"},
    {"type": "candidate", "candidate": "candidate:1 1 UDP 1 127.0.0.1 9 typ host", "sdpMid": "0"},
    {"type": "pong", "stats": [{"type": "x"}]},
    {"type": "re-answer", "sdp": "bogus"},
    {"type": "stats", "reports": {"a": 1}},
    {"type": "disconnect", "reason": "NO-ERROR"},
]


async def run_case(url: str, first: str, follow: list) -> tuple:
    """Sends ``first`` (then ``follow`` after an offer); returns (close code, reason, offer)."""
    offer = None
    try:
        async with ws_connect(url, max_size=None, ping_interval=None, open_timeout=5) as ws:
            await ws.send(first)
            try:
                while True:
                    raw = await asyncio.wait_for(ws.recv(), 3)
                    msg = json.loads(raw)
                    if msg.get("type") == "offer" and offer is None:
                        offer = msg
                        for m in follow:
                            await ws.send(m)
                        await asyncio.sleep(0.05)
                        await ws.close()
                        break
            except ConnectionClosed:
                pass
            except asyncio.TimeoutError:
                return ("timeout", "", offer)
            return (ws.close_code, ws.close_reason, offer)
    except ConnectionClosed as e:
        return (e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else "", offer)


def run_all(url: str, cases: list) -> list:
    async def main():
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(case):
            async with sem:
                return await run_case(url, *case)
        return await asyncio.gather(*(one(c) for c in cases))
    return asyncio.run(main())


def test_mutated_sessions_never_crash_the_server(ffi, server, channel_id, clients, caplog):
    """300 seeded hostile sessions (mutated connect, then mutated answers/candidates): every
    one ends with 1000 or a 4xxx close, none with 1011 or a hang, no task fails on the
    server, and a normal client in the same channel connects and messages afterwards."""
    caplog.set_level(logging.ERROR, logger="sora_ffi.devserver")
    rng = random.Random(7)
    template = connect_template(channel_id)
    cases = []
    for _ in range(CASES):
        first = mutate_message(rng, template)
        follow = [mutate_message(rng, rng.choice(FOLLOW_UPS)) for _ in range(rng.randrange(4))]
        cases.append((first, follow))
    t0 = time.monotonic()
    results = run_all(server.signaling_url, cases)
    elapsed = time.monotonic() - t0
    codes = [r[0] for r in results]
    bad = [(code, reason) for code, reason, _ in results if code not in (1000, 4400, 4401)]
    assert not bad, bad[:5]
    assert codes.count(4400) > CASES // 4  # the mutations really are hostile
    assert any(offer is not None for _, _, offer in results)  # and some still connect
    assert elapsed < 45
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors[:3]]
    # The server still serves: two normal clients connect and exchange a message.
    dcs = [{"label": "#c", "direction": "sendrecv"}]
    a = clients(ffi, server, channel_id, data_channel_signaling=True, data_channels=dcs).connect()
    b = clients(ffi, server, channel_id, data_channel_signaling=True, data_channels=dcs).connect()
    a.wait_dc("#c")
    b.wait_dc("#c")
    a.conn.send_data_channel("#c", b"still serving")
    assert b.wait_messages(1) == [("#c", b"still serving")]
    assert wait_until(lambda: server.call(lambda core: len(core.sessions)) == 2, 10)


@pytest.mark.parametrize("field,raw,word", [
    ("signaling_notify_metadata", "NaN", "NaN"),
    ("metadata", '{"x": Infinity}', "Infinity"),
    ("metadata", "1e400", "overflows"),
    ("metadata", DEEP, "nested"),
    ("channel_id", '"\\ud800"', "surrogate"),
    ("client_id", '"a\\udfffb"', "surrogate"),
    ("signaling_notify_metadata", '{"\\ud800": 1}', "surrogate"),
], ids=["nan", "infinity", "overflow", "deep", "surrogate-channel", "surrogate-client",
        "surrogate-key"])
def test_non_standard_json_rejected_and_channel_unharmed(ffi, server, channel_id, clients,
                                                          field, raw, word):
    """Regression (issue 7 §1, §4): non-standard JSON in `connect` closes that session with
    4400 and a reason; the clients already in the channel get no notify they cannot parse
    and stay connected."""
    member = clients(ffi, server, channel_id).connect()
    template = connect_template(channel_id)
    template.pop("data_channel_signaling")
    from hostile import splice
    code, reason, offer = run_all(server.signaling_url, [(splice(template, (field,), raw), [])])[0]
    assert (code, offer) == (4400, None), (code, reason)
    assert word in reason, reason
    time.sleep(0.3)
    assert member.disconnects == []
    assert member.conn.get_stats()  # still alive and answering
    code, _ = member.disconnect()
    assert code == 0


def test_flood_after_connect(server, channel_id):
    """2000 messages at once after connect (pongs, then garbage): the session ends with 4400
    at the first malformed one; the server stays responsive."""
    async def main():
        async with ws_connect(server.signaling_url, max_size=None, ping_interval=None) as ws:
            await ws.send(json.dumps(connect_template(channel_id)))
            offer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert offer["type"] == "offer"
            for i in range(1000):
                await ws.send(json.dumps({"type": "pong", "n": i}))
            for _ in range(1000):
                await ws.send("{garbage")
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed:
                pass
            return ws.close_code, ws.close_reason
    code, reason = asyncio.run(main())
    assert code == 4400, (code, reason)
    assert "malformed JSON" in reason
    # The server answers at once, and the flooding session has left its channel.
    assert server.api("Sora_20160711.PushChannel", {"channel_id": channel_id, "data": 1})[0] == 404


@pytest.mark.parametrize("body", [
    b'{"channel_id": NaN}', b'{"channel_id": "c", "data": Infinity}', DEEP.encode(),
    b'{"channel_id": "\\ud800", "data": 1}', b'{"data": 1e400, "channel_id": "c"}',
    b"\xff\xfe{}", b'{"channel_id": ' + b"1" * 5000 + b"}",
], ids=["nan", "infinity", "deep", "surrogate", "overflow", "not-utf8", "huge-int"])
def test_http_api_rejects_non_standard_json(server, body):
    """The HTTP API answers 400 with a JSON reason to every such body (not 500)."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(server.api_url, data=body, method="POST", headers={
        "Content-Type": "application/json", "x-sora-target": "Sora_20160711.PushChannel"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400
    reply = json.loads(e.value.read())
    assert reply["error_type"] == "BAD-REQUEST" and "JSON" in reply["message"], reply
