"""DataChannel messages at and past every limit (docs/limits.md): 262,144 bytes on the wire,
16 MiB after inflation on compressed labels. A message over a limit is refused at the
sender with ValueError, or dropped at the receiver (client or dev server) with a counter
in the stats and a warning on the log; nothing is inflated without a bound; the session
and the next messages are unharmed."""
from __future__ import annotations

import json
import logging
import os
import time
import tracemalloc
import zlib

import pytest

from conftest import server_call, server_session, wait_until
from sora_ffi.devserver.inflate import MAX_INFLATED, InflateError, inflate

WIRE_MAX = 262_144


def bomb(size: int) -> bytes:
    """zlib of ``size`` zero bytes, made in 1 MiB steps (no ``size`` buffer in memory)."""
    c = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    out = [c.compress(chunk) for _ in range(size >> 20)]
    out.append(c.compress(bytes(size & ((1 << 20) - 1))))
    out.append(c.flush())
    return b"".join(out)


def dc_stats(conn, label: str) -> dict:
    return next(s for s in json.loads(conn.get_stats())
                if s["type"] == "data-channel" and s["label"] == label)


@pytest.fixture
def pair(ffi, server, channel_id, clients):
    dcs = [{"label": "#p", "direction": "sendrecv"},
           {"label": "#z", "direction": "sendrecv", "compress": True}]
    a = clients(ffi, server, channel_id, data_channel_signaling=True, data_channels=dcs).connect()
    b = clients(ffi, server, channel_id, data_channel_signaling=True, data_channels=dcs).connect()
    for c in (a, b):
        c.wait_dc("#p")
        c.wait_dc("#z")
    return a, b


def test_sizes_at_and_past_the_limits(pair):
    a, b = pair
    at_wire = bytes(range(256)) * (WIRE_MAX // 256)
    assert a.conn.send_data_channel("#p", at_wire) is True
    with pytest.raises(ValueError, match="262144"):
        a.conn.send_data_channel("#p", at_wire + b"x")
    at_inflated = bytes(MAX_INFLATED)
    assert a.conn.send_data_channel("#z", at_inflated) is True
    with pytest.raises(ValueError, match="compressed data channel"):
        a.conn.send_data_channel("#z", at_inflated + b"x")
    with pytest.raises(ValueError, match="compressed data channel"):
        a.conn.send_data_channel("#z", bytes(200 << 20))  # the 200 MiB bomb
    a.conn.send_data_channel("#p", b"after")
    got = b.wait_messages(3, timeout=20)
    assert [(label, len(data)) for label, data in got] == [
        ("#p", WIRE_MAX), ("#z", MAX_INFLATED), ("#p", 5)]
    assert got[1][1] == at_inflated
    assert dc_stats(b.conn, "#z")["messagesDropped"] == 0


def test_client_drops_a_bomb_from_the_server(pair, server, caplog):
    """The server (here poked directly) sends a compressed message inflating past 16 MiB:
    the client drops it, counts it in get_stats() and warns on the `sora_ffi` logger with no
    logging set up by the test beyond capture (native warnings are on by default)."""
    a, b = pair
    caplog.set_level(logging.WARNING, logger="sora_ffi")
    sess = server_session(server, b.connection_id)
    assert server_call(server, lambda: sess.send_dc("#z", bomb(MAX_INFLATED + 1), True))
    assert server_call(server, lambda: sess.send_dc("#z", b"not zlib at all", True))
    a.conn.send_data_channel("#z", b"next")
    assert b.wait_messages(1) == [("#z", b"next")]
    assert wait_until(lambda: dc_stats(b.conn, "#z")["messagesDropped"] == 2, 5)
    assert wait_until(lambda: len([r for r in caplog.records
                                   if "dropping a message" in r.getMessage()]) == 2, 5)
    warned = [r for r in caplog.records if "dropping a message" in r.getMessage()]
    assert all(r.levelno == logging.WARNING and r.name == "sora_ffi" for r in warned)
    assert "exceeds" in warned[0].getMessage() and "#z" in warned[0].getMessage()


def test_dev_server_drops_a_bomb_from_a_client(official, ffi, server, channel_id, clients,
                                               caplog):
    """The official SDK sends whatever it is given (no size check): a 20 MiB message on a
    compressed label reaches the dev server as ~20 KB of zlib. The server inflates at most
    16 MiB, drops it, counts it (GetStatsConnection messagesDropped) and warns; the receiver
    gets nothing; the sender's next message is relayed."""
    caplog.set_level(logging.WARNING, logger="sora_ffi.devserver")
    dcs = [{"label": "#z", "direction": "sendrecv", "compress": True}]
    sender = clients(official, server, channel_id, data_channel_signaling=True,
                     data_channels=dcs).connect()
    receiver = clients(ffi, server, channel_id, data_channel_signaling=True,
                       data_channels=dcs).connect()
    sender.wait_dc("#z")
    receiver.wait_dc("#z")
    sender.conn.send_data_channel("#z", bytes(20 << 20))
    sender.conn.send_data_channel("#z", b"small")
    assert receiver.wait_messages(1) == [("#z", b"small")]
    status, stats = server.api("Sora_20170529.GetStatsConnection",
                               {"channel_id": channel_id, "connection_id": sender.connection_id})
    assert status == 200
    dc = next(s for s in stats if s.get("type") == "data-channel" and s["label"] == "#z")
    assert dc["messagesDropped"] == 1 and dc["messagesReceived"] == 2
    assert any("inflates past" in r.getMessage() for r in caplog.records)
    time.sleep(0.2)
    assert receiver.messages == [("#z", b"small")]


def test_inflate_is_bounded_in_memory():
    """A 200 MiB bomb (~200 KB) is refused after at most MAX_INFLATED + 1 bytes: the peak
    allocation stays near 16 MiB, not 200 MiB (it was 393 MB resident before the fix)."""
    data = bomb(200 << 20)
    assert len(data) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(InflateError, match="inflates past"):
            inflate(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MAX_INFLATED + (1 << 20), peak
    assert inflate(zlib.compress(b"ok")) == b"ok"
    for bad in (b"", b"\x78\x9c", zlib.compress(b"x" * 100)[:-3], b"garbage"):
        with pytest.raises(InflateError):
            inflate(bad)


def test_native_warning_reaches_logging_without_any_call(tmp_path):
    """Regression (issue 7 §5): in a fresh interpreter where nothing but
    logging.basicConfig(WARNING) is set up (no enable_libwebrtc_log), the client's native
    'dropping a message' warning reaches the `sora_ffi` logger."""
    import subprocess
    import sys
    import textwrap
    script = tmp_path / "warn.py"
    script.write_text(textwrap.dedent("""
        import logging, sys, time, zlib
        sys.path.insert(0, %r)
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                            format="%%(levelname)s %%(name)s %%(message)s")
        import sora_ffi
        from conftest import server_call, server_session
        from sora_ffi.devserver import DevServer
        with DevServer() as server:
            sora = sora_ffi.Sora()
            conn = sora.create_connection(
                signaling_urls=[server.signaling_url], role="recvonly", channel_id="w",
                data_channel_signaling=True,
                data_channels=[{"label": "#z", "direction": "sendrecv", "compress": True}])
            opened = []
            conn.on_data_channel = opened.append
            conn.connect()
            assert conn.wait_connected(10)
            while "#z" not in opened:
                time.sleep(0.01)
            sess = server_session(server, conn.connection_id)
            server_call(server, lambda: sess.send_dc("#z", b"junk", True))
            time.sleep(0.5)
            conn.disconnect()
            time.sleep(0.2)
    """) % os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'WARNING sora_ffi dropping a message on data channel "#z"' in out.stdout, out.stdout
