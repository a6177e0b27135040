"""Scale: the process's thread count does not grow with connections (issue 9). Receive
pipelines, send loops and audio encoding are tasks on the shared media runtime, so 10 and
150 recvonly audio connections (each reading its audio) run on the same threads."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from sora_ffi import testpattern

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_threads_flat_from_10_to_150_connections(ffi, server, channel_id):
    sora = ffi.Sora()
    source = sora.create_audio_source(1, 48000)
    sender = sora.create_connection(signaling_urls=[server.signaling_url], role="sendonly",
                                    channel_id=channel_id, audio=True, audio_source=source)
    feeder = testpattern.ToneFeeder(source)
    receivers: list = []  # (connection, tracks)
    sinks: list = []

    def grow_to(n: int) -> None:
        batch = []
        while len(receivers) + len(batch) < n:
            conn = sora.create_connection(signaling_urls=[server.signaling_url], role="recvonly",
                                          channel_id=channel_id, audio=True)
            tracks: list = []
            conn.on_track = tracks.append
            conn.connect()
            batch.append((conn, tracks))
        for conn, tracks in batch:
            assert conn.wait_connected(20)
        receivers.extend(batch)
        deadline = time.monotonic() + 10
        while any(not t for _, t in receivers) and time.monotonic() < deadline:
            time.sleep(0.02)
        for _, tracks in receivers[len(sinks):]:
            sinks.append(ffi.SoraAudioSink(tracks[0], 48000, 1))

    try:
        sender.connect()
        assert sender.wait_connected(10)
        feeder.start()
        grow_to(10)
        time.sleep(0.5)
        small = _threads()
        grow_to(150)
        time.sleep(0.5)
        large = _threads()
        # every receiver gets the tone
        heard = 0
        for sink in sinks:
            ok, pcm = sink.read(960, 1.0)
            heard += ok and float(np.abs(pcm).max()) > 1000
        print(f"\nthreads: {small} at 10 connections, {large} at 150; {heard} of 150 hear the tone")
        assert heard == 150
        assert large <= small + 2
    finally:
        feeder.stop()
        for conn, _ in receivers:
            conn.disconnect()
        sender.disconnect()
