"""Audio streaming: what it costs the dev server, and how soon a result comes back.

* ``cpu``: N sendonly speakers (sora_ffi, in this process) send Opus to a dev server in a
  child process, first with streaming off, then on, to a gateway in another child whose
  recognizer (``OncePerSecond`` below, a plug-in) says one thing a second per stream, as a
  recognizer does about an utterance; one recvonly listener is subscribed to the results.
  The dev server's CPU (from /proc) with streaming on minus off, per streamed connection,
  is the cost of streaming (goal: ≤ 1 % of a core per connection at 100 connections). The
  gateway's CPU (it decodes every packet) is reported apart.
* ``delay``: espeak-ng says a sentence into a speaker, PocketSphinx recognizes it; the time
  from the last sample of speech handed to the audio source to the final result's push at a
  listener, over several runs.

    .ci/python benchmarks/audio_streaming.py cpu [--n 100] [--seconds 10]
    .ci/python benchmarks/audio_streaming.py delay [--runs 5]

The official sora_sdk has no counterpart (it is a client; streaming is the server's), so
nothing is compared side by side here; the speakers are sora_ffi's.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from scale import cpu_s, raise_fd_limit  # this folder's helpers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RATE = 48000


class OncePerSecond:
    """A recognizer plug-in (``--recognizer audio_streaming:OncePerSecond``): one final
    result per second of audio."""

    def __init__(self, language_code: str) -> None:
        self.samples = 0

    def feed(self, pcm) -> list:
        before = self.samples // 16000
        self.samples += len(pcm)
        if self.samples // 16000 > before:
            return [{"type": "bench", "message": f"{self.samples // 16000} s", "is_final": True}]
        return []

    def finish(self) -> list:
        return []


def spawn(args: list) -> tuple:
    """A child printing one JSON line when ready: (process, that line)."""
    p = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, HERE])})
    return p, json.loads(p.stdout.readline())


def measure(pid: int, seconds: float) -> float:
    """CPU seconds per second of `pid` over `seconds`."""
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_s(pid) - c0) / (time.monotonic() - t0)


def api(url: str, target: str, body: dict) -> tuple:
    sys.path.insert(0, ROOT)
    from sora_ffi.devserver import api as devapi
    return devapi.api_request(url, target, body)


def bench_cpu(args) -> dict:
    import sora_ffi

    raise_fd_limit()
    gw, gw_info = spawn(["sora_ffi.gateway", "--port", "0", "--recognizer", "audio_streaming:OncePerSecond"])
    ds, ds_info = spawn(["sora_ffi.devserver", "--port", "0", "--ping-interval", "0",
                         "--no-default-audio-streaming-result-push",
                         "--audio-streaming-url", gw_info["url"] + "/speech"])
    sora = sora_ffi.Sora()
    speakers, sources = [], []
    results: list = []
    listener = None
    try:
        listener = sora.create_connection(signaling_urls=[ds_info["signaling_url"]], role="recvonly",
                                          channel_id="bench", audio=False, video=False)
        listener.on_push = results.append
        listener.connect()
        listener.wait_connected(20)
        assert api(ds_info["api_url"], "Sora_20221221.SubscribeAudioStreamingResultPush",
                   {"channel_id": "bench", "connection_id": listener.connection_id})[0] == 200
        for i in range(args.n):
            src = sora.create_audio_source(1, RATE)
            c = sora.create_connection(signaling_urls=[ds_info["signaling_url"]], role="sendonly",
                                       channel_id="bench", audio=True, video=False, audio_source=src,
                                       audio_streaming_language_code="en-US")
            c.connect()
            speakers.append(c)
            sources.append(src)
        for c in speakers:
            if not c.wait_connected(30):
                raise RuntimeError("a speaker did not connect")
        print(f"{args.n} speakers connected", file=sys.stderr)
        stop = threading.Event()

        def pump() -> None:  # 10 ms of noise to every source, in real time
            rng = np.random.default_rng(1)
            frame = (rng.standard_normal((480, 1)) * 3000).astype(np.int16)
            n, start = 0, time.monotonic()
            while not stop.is_set():
                for s in sources:
                    s.on_data(frame)
                n += 1
                time.sleep(max(0.0, start + n / 100 - time.monotonic()))

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        time.sleep(2)
        off = measure(ds.pid, args.seconds)
        status, body = api(ds_info["api_url"], "Sora_20221221.StartAudioStreaming", {"channel_id": "bench"})
        assert status == 200, body
        time.sleep(2)
        g0, r0 = cpu_s(gw.pid), len(results)
        on = measure(ds.pid, args.seconds)
        gateway = (cpu_s(gw.pid) - g0) / args.seconds
        pushed = (len(results) - r0) / args.seconds
        stop.set()
        t.join()
        return {"connections": args.n, "devserver_cpu_off": round(off, 3), "devserver_cpu_on": round(on, 3),
                "per_streamed_connection_percent_of_a_core": round((on - off) / args.n * 100, 3),
                "gateway_cpu": round(gateway, 3), "results_pushed_per_second": round(pushed, 1)}
    finally:
        for c in speakers + ([listener] if listener is not None else []):
            c.disconnect()
        for p in (ds, gw):
            p.terminate()
            p.wait(10)


def bench_delay(args) -> dict:
    sys.path.insert(0, ROOT)
    from sora_ffi.examples import transcribe as tr

    delays, accuracies = [], []
    for _ in range(args.runs):
        marks: dict = {}
        speak = tr.speak

        async def timed_speak(source, pcm, rate, silence=1.5):
            await speak(source, pcm, rate, silence=0.0)
            marks["speech_end"] = time.monotonic()
            await speak(source, np.zeros(0, np.int16), rate, silence=silence)

        class Out:
            def write(self, s: str) -> None:
                if '"is_final": true' in s and "speech_end" in marks and "final" not in marks:
                    marks["final"] = time.monotonic()

            def flush(self) -> None:
                pass

        tr.speak = timed_speak
        try:
            summary = asyncio.run(tr.transcribe(args.text, out=Out()))
        finally:
            tr.speak = speak
        if "final" in marks:
            delays.append(marks["final"] - marks["speech_end"])
        accuracies.append(summary["word_accuracy"])
    return {"runs": args.runs, "delay_ms_median": round(statistics.median(delays) * 1000) if delays else None,
            "delay_ms_all": [round(d * 1000) for d in delays], "word_accuracy": accuracies}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cpu")
    c.add_argument("--n", type=int, default=100)
    c.add_argument("--seconds", type=float, default=10.0)
    d = sub.add_parser("delay")
    d.add_argument("--runs", type=int, default=5)
    d.add_argument("--text", default="please call me back tomorrow, we will meet at the station at noon")
    args = p.parse_args()
    print(json.dumps(bench_cpu(args) if args.what == "cpu" else bench_delay(args)))


if __name__ == "__main__":
    main()
