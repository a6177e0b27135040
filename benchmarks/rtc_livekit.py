"""sora_ffi.rtc against LiveKit's own Python SDK on its own server, side by side in one run
(issue 13): N subscribers in one process, joined at once, each reading one publisher's
tone with an ``AudioStream`` (10 ms frames, or each of ``--frames-ms``). Per child: time
until all N rooms are joined, CPU s/s of the subscribers' process and of the server, RSS,
and the share of real-time audio each subscriber got (median, minimum, how many got at
least half). With ``--publishers N``: N publishers instead, each in a room of its own,
pushing 10 ms frames with ``await AudioSource.capture_frame`` (CPU s/s, frames/s).

sora_ffi.rtc runs against the dev server (a process of its own), LiveKit's SDK (`livekit`
1.2 from PyPI, in a virtual environment of its own) against livekit-server (v1.13.3 built
from its public source with ``go build ./cmd/server``, on free loopback ports); both publishers
send a 440 Hz tone from this process's children. Nothing here is installed by CI:

    go mod download github.com/livekit/livekit-server@v1.13.3   # then, in a copy of it:
    go build -o ~/.cache/livekit/livekit-server ./cmd/server
    python3.13 -m venv ~/.cache/livekit/venv && ~/.cache/livekit/venv/bin/pip install 'livekit==1.2.*' numpy pyjwt
    PYTHONPATH=. .ci/python benchmarks/rtc_livekit.py [--n 100] [--seconds 8] [--rounds 3] [--frames-ms 10,20,50]
    PYTHONPATH=. .ci/python benchmarks/rtc_livekit.py --publishers 20 [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from rtc import join_listening_room, report  # this folder's helpers (stdlib only at import)
from scale import by_variant, cpu_s, median, raise_fd_limit, rss_mib

RATE = 48000
FRAME_MS = 10
HOME = os.path.expanduser("~/.cache/livekit")
#: the server's key pair (livekit-server wants a secret of at least 32 characters)
LK_KEY, LK_SECRET = "benchkey", "benchmark-secret-of-at-least-32-characters"


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tone_frames():
    import numpy as np
    block = RATE * FRAME_MS // 1000
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.int16)
    k = 0
    while True:
        at = (k * block) % (RATE - block)
        yield tone[at:at + block]
        k += 1


# ------------------------------------------------------------------ LiveKit children
def lk_token(identity: str, room: str) -> str:
    import jwt
    now = int(time.time())
    claims = {"iss": LK_KEY, "sub": identity, "name": identity, "nbf": now - 10, "exp": now + 3600,
              "video": {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True}}
    return jwt.encode(claims, LK_SECRET, algorithm="HS256")


async def lk_publish(url: str, room_name: str, ready_path: str) -> None:
    from livekit import rtc
    room = rtc.Room()
    await room.connect(url, lk_token("publisher", room_name))
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    open(ready_path, "w").close()
    block = RATE * FRAME_MS // 1000
    for samples in tone_frames():  # capture_frame paces the loop at real time
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, block))


async def subscribe(args, join, audio_stream, name: str) -> None:
    """N rooms joined at once (``join(i)`` -> (room, future of its audio track)), each
    track read through the SDK's ``audio_stream`` class (the same arguments in both); then
    measured."""
    counts = [0] * args.n

    async def read(i, stream):
        async for event in stream:
            counts[i] += event.frame.samples_per_channel

    t0 = time.monotonic()
    joined = await asyncio.gather(*(join(i) for i in range(args.n)), return_exceptions=True)
    join_s = time.monotonic() - t0
    ok = [j for j in joined if not isinstance(j, BaseException)]
    tasks = []
    for i, (room, subscribed) in enumerate(ok):
        try:
            track = await asyncio.wait_for(subscribed, 30)
        except asyncio.TimeoutError:
            continue
        stream = audio_stream(track, sample_rate=RATE, num_channels=1, frame_size_ms=args.frame_ms)
        tasks.append(asyncio.ensure_future(read(i, stream)))
    await measure(args, counts, join_s, len(ok), name)


async def lk_subscribers(args) -> None:
    from livekit import rtc

    async def join(i):
        room = rtc.Room()
        subscribed = asyncio.get_running_loop().create_future()

        def on_track(track, *_):
            if isinstance(track, rtc.RemoteAudioTrack) and not subscribed.done():
                subscribed.set_result(track)
        room.on("track_subscribed", on_track)
        await room.connect(args.url, lk_token(f"sub-{i}", args.channel))
        return room, subscribed

    await subscribe(args, join, rtc.AudioStream, f"livekit AudioStream {args.frame_ms} ms (livekit-server)")


async def lk_publishers(args) -> None:
    """N publishers, each in a room of its own, pushing 10 ms frames with capture_frame."""
    from livekit import rtc
    frames = [0]
    block = RATE * FRAME_MS // 1000

    async def publish(i):
        room = rtc.Room()
        await room.connect(args.url, lk_token(f"pub-{i}", f"{args.channel}-{i}"))
        source = rtc.AudioSource(RATE, 1)  # the default queue (1000 ms in both)
        await room.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("tone", source))
        for samples in tone_frames():
            await source.capture_frame(rtc.AudioFrame(samples.tobytes(), RATE, 1, block))
            frames[0] += 1
    await measure_publishers(args, frames, [asyncio.ensure_future(publish(i)) for i in range(args.n)],
                             "livekit AudioSource.capture_frame (livekit-server)")


async def measure_publishers(args, frames: list, tasks: list, name: str) -> None:
    await asyncio.sleep(3.0)
    failed = [t for t in tasks if t.done() and t.exception() is not None]
    f0, c0, s0, w0 = frames[0], cpu_s(), cpu_s(args.server_pid), time.monotonic()
    await asyncio.sleep(args.seconds)
    f1, c1, s1, w1 = frames[0], cpu_s(), cpu_s(args.server_pid), time.monotonic()
    report(variant=name, n=args.n, failed=len(failed), cpu_per_s=round((c1 - c0) / (w1 - w0), 3),
           server_cpu_per_s=round((s1 - s0) / (w1 - w0), 3), frames_per_s=round((f1 - f0) / (w1 - w0)),
           rss_mib=round(rss_mib(), 1))


# ------------------------------------------------------------------ sora_ffi children
async def sora_publishers(args) -> None:
    from sora_ffi import rtc
    frames = [0]
    block = RATE * FRAME_MS // 1000

    async def publish(i):
        room = rtc.Room()
        await room.connect(args.url, f"{args.channel}-{i}", options=rtc.RoomOptions(video=False, data_topics=()))
        source = rtc.AudioSource(RATE, 1)  # the default queue (1000 ms in both)
        await room.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("tone", source))
        for samples in tone_frames():
            await source.capture_frame(rtc.AudioFrame(samples, RATE, 1, block))
            frames[0] += 1
    await measure_publishers(args, frames, [asyncio.ensure_future(publish(i)) for i in range(args.n)],
                             "sora_ffi.rtc AudioSource.capture_frame (dev server)")


async def sora_subscribers(args) -> None:
    from sora_ffi import rtc

    await subscribe(args, lambda i: join_listening_room(args.url, args.channel), rtc.AudioStream,
                    f"sora_ffi.rtc AudioStream {args.frame_ms} ms (dev server)")


async def measure(args, counts: list, join_s: float, joined: int, name: str) -> None:
    await asyncio.sleep(1.0)
    counts[:] = [0] * len(counts)
    c0, s0, w0 = cpu_s(), cpu_s(args.server_pid), time.monotonic()
    await asyncio.sleep(args.seconds)
    c1, s1, w1 = cpu_s(), cpu_s(args.server_pid), time.monotonic()
    shares = sorted(c / (RATE * (w1 - w0)) for c in counts)
    report(variant=name, n=args.n, joined=joined, join_s=round(join_s, 2),
           cpu_per_s=round((c1 - c0) / (w1 - w0), 3), server_cpu_per_s=round((s1 - s0) / (w1 - w0), 3),
           rss_mib=round(rss_mib(), 1),
           median=shares[len(shares) // 2], min=shares[0], most=sum(s >= 0.5 for s in shares))


# ------------------------------------------------------------------ servers and publishers
class LiveKitServer:
    """livekit-server --dev on free ports of 127.0.0.1."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        rtc_tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
        config = (f"port: {self.port}\nbind_addresses: [127.0.0.1]\n"
                  f"rtc:\n  tcp_port: {rtc_tcp}\n  udp_port: {udp}\n  node_ip: 127.0.0.1\n"
                  f"  use_external_ip: false\nkeys:\n  {LK_KEY}: {LK_SECRET}\nlogging:\n  level: warn\n")
        self.proc = subprocess.Popen([binary, "--config-body", config], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(HOME, "server.log"), "w"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("livekit-server did not start (see ~/.cache/livekit/server.log)")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()  # it drains its rooms first: do not wait long for that
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_child(args, python: str, kind: str, url: str, server_pid: int, frame_ms: int) -> dict:
    cmd = [python, os.path.abspath(__file__), "--child", kind, "--url", url, "--channel", args.channel,
           "--seconds", str(args.seconds), "--n", str(args.n), "--server-pid", str(server_pid),
           "--frame-ms", str(frame_ms)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"variant": kind, "error": (p.stderr or "")[-400:]}
    return json.loads(lines[-1])


def publishers_main(args) -> None:
    from sora_ffi.devserver.process import DevServerProcess

    args.n = args.publishers
    lk = LiveKitServer(args.livekit_server)
    results = []
    try:
        with DevServerProcess() as server:
            for _ in range(args.rounds):
                for python, kind, url, pid in ((sys.executable, "sora-publishers", server.signaling_url, server.pid),
                                               (args.livekit_python, "livekit-publishers", lk.url, lk.proc.pid)):
                    results.append(run_child(args, python, kind, url, pid, FRAME_MS))
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                    time.sleep(3)
    finally:
        lk.stop()
    print(f"| SDK (N={args.n} publishers, 10 ms frames) | CPU s/s | server CPU s/s | frames/s | RSS MiB | µs/frame |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['variant']} | failed: {r['error'][-100:]!r} | | | | |")
            continue
        us = r["cpu_per_s"] / max(r["frames_per_s"], 1) * 1e6
        print(f"| {r['variant']} | {r['cpu_per_s']} | {r['server_cpu_per_s']} | {r['frames_per_s']} | "
              f"{r['rss_mib']} | {us:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--livekit-server", default=os.path.join(HOME, "livekit-server"))
    ap.add_argument("--livekit-python", default=os.path.join(HOME, "venv", "bin", "python"))
    ap.add_argument("--child", choices=("sora", "livekit", "livekit-publisher", "sora-publishers",
                                        "livekit-publishers"))
    ap.add_argument("--publishers", type=int, default=0,
                    help="instead of subscribers: this many publishers pushing 10 ms frames with capture_frame")
    ap.add_argument("--url")
    ap.add_argument("--channel", default="bench-livekit")
    ap.add_argument("--ready")
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--frame-ms", type=int, default=FRAME_MS)
    ap.add_argument("--frames-ms", default="10", help="frame sizes to compare, e.g. 10,20,50")
    args = ap.parse_args()
    raise_fd_limit()
    if args.child == "sora":
        return asyncio.run(sora_subscribers(args))
    if args.child == "livekit":
        return asyncio.run(lk_subscribers(args))
    if args.child == "livekit-publisher":
        return asyncio.run(lk_publish(args.url, args.channel, args.ready))
    if args.child == "sora-publishers":
        return asyncio.run(sora_publishers(args))
    if args.child == "livekit-publishers":
        return asyncio.run(lk_publishers(args))
    if args.publishers:
        return publishers_main(args)

    import sora_ffi
    from sora_ffi import testpattern
    from sora_ffi.devserver.process import DevServerProcess

    lk = LiveKitServer(args.livekit_server)
    ready = os.path.join(HOME, "publisher.ready")
    if os.path.exists(ready):
        os.remove(ready)
    lk_pub = subprocess.Popen([args.livekit_python, os.path.abspath(__file__), "--child", "livekit-publisher",
                               "--url", lk.url, "--channel", args.channel, "--ready", ready])
    try:
        with DevServerProcess() as server:
            sora = sora_ffi.Sora()
            source = sora.create_audio_source(1, RATE)
            sender = sora.create_connection(signaling_urls=[server.signaling_url], role="sendonly",
                                            channel_id=args.channel, audio=True, video=False, audio_source=source)
            sender.connect()
            assert sender.wait_connected(10)
            deadline = time.monotonic() + 30
            while not os.path.exists(ready):
                if time.monotonic() > deadline or lk_pub.poll() is not None:
                    raise RuntimeError("the LiveKit publisher did not start")
                time.sleep(0.1)
            results = []
            with testpattern.ToneFeeder(source, RATE):
                for _ in range(args.rounds):  # interleaved: the machine's drift hits both
                    for ms in map(int, args.frames_ms.split(",")):
                        for python, kind, url, pid in ((sys.executable, "sora", server.signaling_url, server.pid),
                                                       (args.livekit_python, "livekit", lk.url, lk.proc.pid)):
                            results.append(run_child(args, python, kind, url, pid, ms))
                            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                            time.sleep(3)
            sender.disconnect()
    finally:
        lk_pub.kill()
        lk.stop()
    print(f"| SDK (N={args.n}, median of {args.rounds}) | joined | all joined in | CPU s/s | server CPU s/s | "
          "RSS MiB | audio median (min) | subscribers with ≥ 50 % |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (ok, error) in by_variant(results).items():
        if not ok:
            print(f"| {name} | failed: {error[-100:]!r} | | | | | | |")
            continue
        med = lambda key: median(ok, key)  # noqa: E731
        print(f"| {name} | {med('joined')} | {med('join_s')} s | {med('cpu_per_s')} | {med('server_cpu_per_s')} | "
              f"{med('rss_mib')} | "
              f"{med('median'):.1%} ({min(r['min'] for r in ok):.1%}) | {med('most')} |")


if __name__ == "__main__":
    main()
