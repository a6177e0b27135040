"""Guarantees of sora_ffi's Python layer beyond the official API, against the dev server:
callbacks on the dispatcher thread, exceptions in callbacks, disconnect from callbacks,
garbage collection, interpreter exit, native logs in `logging`, and the asyncio API."""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

import sora_ffi
from sora_ffi import aio

CHAT = [{"label": "#chat", "direction": "sendrecv"}]
NO_MEDIA = {"audio": False, "video": False}


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def dispatcher_threads():
    return [t for t in threading.enumerate() if t.name == "sora_ffi-dispatch"]


def test_callbacks_run_on_the_dispatcher_thread(server, channel_id):
    sora = sora_ffi.Sora()
    conn = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA)
    threads = set()
    ended = threading.Event()
    conn.on_set_offer = lambda _: threads.add(threading.current_thread().name)
    conn.on_notify = lambda _: threads.add(threading.current_thread().name)
    conn.on_disconnect = lambda code, msg: (threads.add(threading.current_thread().name), ended.set())
    conn.connect()
    assert conn.wait_connected(10)
    assert conn.connection_id and len(conn.connection_id) == 26
    assert conn.connected
    conn.disconnect()
    assert ended.wait(10)
    assert threads == {"sora_ffi-dispatch"}
    assert not conn.connected


def test_exception_in_callback_is_logged_and_later_events_still_arrive(server, channel_id, caplog):
    sora = sora_ffi.Sora()
    conn = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA)
    ended = threading.Event()

    def boom(_):
        raise RuntimeError("boom from a callback")

    conn.on_set_offer = boom
    conn.on_disconnect = lambda code, msg: ended.set()
    with caplog.at_level(logging.ERROR, logger="sora_ffi"):
        conn.connect()
        assert conn.wait_connected(10)
        conn.disconnect()
        assert ended.wait(10)
    assert any("boom from a callback" in r.exc_text or "" for r in caplog.records if r.exc_text)


def test_disconnect_from_inside_a_callback(server, channel_id):
    sora = sora_ffi.Sora()
    conn = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA)
    result = []
    ended = threading.Event()
    conn.on_notify = lambda _: conn.disconnect()
    conn.on_disconnect = lambda code, msg: (result.append((code, msg)), ended.set())
    conn.connect()
    assert ended.wait(10)
    assert result[0][0] == sora_ffi.SoraSignalingErrorCode.CLOSE_SUCCEEDED
    assert isinstance(result[0][0], sora_ffi.SoraSignalingErrorCode)


def test_disconnect_is_safe_before_connect_after_and_twice(server, channel_id):
    sora = sora_ffi.Sora()
    conn = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA)
    conn.disconnect()
    conn.disconnect()
    ends = []
    conn.on_disconnect = lambda code, msg: ends.append(code)
    conn.connect()
    conn.disconnect()  # right after connect
    conn.disconnect()
    assert wait_until(lambda: ends)
    conn.disconnect()  # after the end
    time.sleep(0.2)
    assert len(ends) == 1  # SORA_EVENT_DISCONNECT is the last event, once
    with pytest.raises(sora_ffi.ShimError):
        conn.connect()  # a connection is used once


def test_connect_failure_reports_handshake_failed():
    sora = sora_ffi.Sora()
    conn = sora.create_connection(["ws://127.0.0.1:9/signaling"], "sendonly", "c", **NO_MEDIA)
    got = []
    conn.on_disconnect = lambda code, msg: got.append((code, msg))
    conn.connect()
    assert conn.wait_connected(10) is False
    assert wait_until(lambda: got)
    assert got[0][0] == sora_ffi.SoraSignalingErrorCode.WEBSOCKET_HANDSHAKE_FAILED


def test_context_manager_waits_for_on_disconnect(server, channel_id):
    sora = sora_ffi.Sora()
    ends = []
    with sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA) as conn:
        conn.on_disconnect = lambda code, msg: ends.append(code)
        conn.connect()
        assert conn.wait_connected(10)
    assert ends == [sora_ffi.SoraSignalingErrorCode.CLOSE_SUCCEEDED]


def test_messaging_between_two_connections(server, channel_id):
    sora = sora_ffi.Sora()
    kw = dict(data_channel_signaling=True, data_channels=CHAT, **NO_MEDIA)
    a = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **kw)
    b = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **kw)
    got = []
    b.on_message = lambda label, data: got.append((label, data))
    opened = threading.Event()
    a.on_data_channel = lambda label: opened.set() if label == "#chat" else None
    with a, b:
        a.connect()
        b.connect()
        assert a.wait_connected(10) and b.wait_connected(10) and opened.wait(10)
        assert wait_until(lambda: a.send_data_channel("#chat", b"hello"))
        assert a.send_data_channel("#nope", b"x") is False
        assert wait_until(lambda: got)
        assert got[0] == ("#chat", b"hello")
        assert isinstance(got[0][1], bytes)
        stats = json.loads(a.get_stats())
        assert isinstance(stats, list)


def test_collected_connection_is_destroyed_and_not_kept_alive(server, channel_id):
    sora = sora_ffi.Sora()
    conn = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA)
    conn.on_notify = lambda _: None
    conn.connect()
    assert conn.wait_connected(10)
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None  # neither the dispatcher nor the native side keeps it


def test_dispatcher_thread_stops_when_sora_and_connections_are_collected(server, channel_id):
    gc.collect()  # earlier tests' objects (PyPy collects late)
    before = set(dispatcher_threads())
    sora = sora_ffi.Sora()
    conn = sora.create_connection([server.signaling_url], "sendrecv", channel_id, **NO_MEDIA)
    (ours,) = set(dispatcher_threads()) - before  # started with the first connection
    del sora
    gc.collect()
    assert ours.is_alive()  # the connection still uses it
    del conn
    gc.collect()
    ours.join(5)
    assert not ours.is_alive()


def test_interpreter_exit_with_live_objects_is_quiet(server, channel_id):
    code = textwrap.dedent(f"""
        import sora_ffi
        sora = sora_ffi.Sora()
        conn = sora.create_connection([{server.signaling_url!r}], "sendrecv", {channel_id!r},
                                      audio=False, video=False)
        conn.on_notify = lambda m: conn.get_stats()
        conn.connect()
        assert conn.wait_connected(10)
        other = sora.create_connection([{server.signaling_url!r}], "recvonly", "x", audio=False)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr


def test_a_collection_while_the_dispatcher_registers_does_not_deadlock():
    """Connections dropped in reference cycles are finalized by whichever collection comes
    next; one that comes while the dispatcher holds its lock (registering the next
    connection) unregisters them on that same thread. In a child process: a regression
    hangs (it did, while an rtc room reconnected)."""
    code = textwrap.dedent("""
        import gc, random, sora_ffi
        sora = sora_ffi.Sora()
        gc.set_threshold(50)  # frequent collections, landing at varying points
        for i in range(2000):
            c = sora.create_connection(["ws://127.0.0.1:9/signaling"], "recvonly", "c")
            c.cycle = c  # only the collector frees it
            junk = [[] for _ in range(random.randrange(50))]
            del c, junk
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_native_log_reaches_python_logging(caplog):
    with caplog.at_level(logging.DEBUG, logger="sora_ffi"):
        sora_ffi.enable_libwebrtc_log(sora_ffi.SoraLoggingSeverity.INFO)
        try:
            sora_ffi.rtc_log(sora_ffi.SoraLoggingSeverity.WARNING, "hello from rtc_log")
            assert wait_until(lambda: any(r.getMessage() == "hello from rtc_log" for r in caplog.records), 5)
        finally:
            sora_ffi.enable_libwebrtc_log(sora_ffi.SoraLoggingSeverity.WARNING)
    record = next(r for r in caplog.records if r.getMessage() == "hello from rtc_log")
    assert record.levelno == logging.WARNING
    assert record.name == "sora_ffi"


# -- asyncio ---------------------------------------------------------------------------------

def test_aio_connect_message_and_disconnect(server, channel_id):
    async def main():
        sora = sora_ffi.Sora()
        kw = dict(signaling_urls=[server.signaling_url], role="sendrecv", channel_id=channel_id,
                  data_channel_signaling=True, data_channels=CHAT, **NO_MEDIA)
        async with aio.connect(sora, timeout=10, **kw) as a, aio.connect(sora, timeout=10, **kw) as b:
            assert a.connection_id and a.connection_id != b.connection_id
            await a.wait_data_channel("#chat", timeout=10)
            await b.wait_data_channel("#chat", timeout=10)
            assert await a.send("#chat", b"hi")

            async def first_message():
                async for event in b.events():
                    if isinstance(event, aio.Message):
                        return event
            assert await asyncio.wait_for(first_message(), 10) == aio.Message("#chat", b"hi")
            code, message = await a.disconnect()
            assert code == sora_ffi.SoraSignalingErrorCode.CLOSE_SUCCEEDED
            events = [e async for e in a.events()]
            assert isinstance(events[-1], aio.Disconnect)
            assert a.connection.on_disconnect is None  # the official callbacks stay the user's
        assert b.connection._finished

    asyncio.run(main())


def test_aio_connect_failure_raises_with_the_error_code():
    async def main():
        sora = sora_ffi.Sora()
        with pytest.raises(aio.SoraConnectionError) as info:
            async with aio.connect(sora, signaling_urls=["ws://127.0.0.1:9/signaling"],
                                   role="sendonly", channel_id="c", timeout=10):
                pass
        assert info.value.code == sora_ffi.SoraSignalingErrorCode.WEBSOCKET_HANDSHAKE_FAILED

    asyncio.run(main())


def test_aio_validation_errors_are_raised_at_once():
    sora = sora_ffi.Sora()
    with pytest.raises(ValueError):
        aio.connect(sora, signaling_urls=["http://x"], role="sendonly", channel_id="c")


def test_event_loop_sora_delivers_on_the_loop_without_a_thread(server, channel_id):
    """aio.event_loop_sora: events and sink frames reach the loop's own thread through the
    queue's descriptor; no dispatcher thread is started; the session works as usual."""
    import threading

    async def main():
        before = {t.name for t in threading.enumerate()}
        sora = aio.event_loop_sora()
        loop_thread = threading.get_ident()
        seen_threads = set()
        kw = dict(signaling_urls=[server.signaling_url], channel_id=channel_id, role="sendrecv",
                  audio=False, video=False, data_channel_signaling=True,
                  data_channels=[{"label": "#chat", "direction": "sendrecv"}])
        async with aio.connect(sora, timeout=10, **kw) as a, aio.connect(sora, timeout=10, **kw) as b:
            a.connection.on_notify = lambda _: seen_threads.add(threading.get_ident())
            await a.wait_data_channel("#chat", 5)
            await b.wait_data_channel("#chat", 5)
            await b.send("#chat", b"hi")
            async for event in a.events():
                if isinstance(event, aio.Message):
                    assert event == aio.Message("#chat", b"hi")
                    break
            assert {t.name for t in threading.enumerate()} - before == set()  # no dispatcher
            # a blocking call on the loop must not deadlock: disconnect() only starts there
            b.connection.disconnect()
        assert seen_threads <= {loop_thread}
    asyncio.run(asyncio.wait_for(main(), 20))
