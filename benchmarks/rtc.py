"""sora_ffi.rtc (LiveKit's model) against the callback API underneath it, and the official
sora_sdk's callback API, in the same run: N subscribers in one process each reading one
publisher's audio.

* ``subscribers``: N rooms joined at once (time until all are connected), each reading the
  publisher's audio with ``AudioStream`` (frame_size_ms 10, 20, 50), versus N connections
  with a ``SoraAudioStreamSink`` callback (sora_ffi, sora_sdk). Per child: CPU s/s, RSS,
  the share of real-time audio each subscriber got (median, minimum), and for AudioStream
  the event-loop wake-ups per frame. The per-frame cost of the asyncio layer is the CPU
  difference to sora_ffi's callbacks divided by the frames delivered.
* ``publish``: N publishers pushing 10 ms frames: ``await AudioSource.capture_frame`` versus
  ``SoraAudioSource.on_data`` from a paced thread; the difference per frame.

The dev server runs in a process of its own; the publisher of ``subscribers`` in this one.

    .ci/python benchmarks/rtc.py subscribers [--n 100] [--seconds 10] [--rounds 3]
    .ci/python benchmarks/rtc.py publish [--n 20] [--seconds 10]
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import subprocess
import sys
import threading
import time

from scale import by_variant, connect_receivers, cpu_s, median, raise_fd_limit, rss_mib  # this folder's helpers

RATE = 48000


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)
    os._exit(0)  # teardown is not measured, and sora_sdk's is not reliable (tests/conftest.py)


# ------------------------------------------------------------------ subscriber children
async def join_listening_room(url: str, channel: str) -> tuple:
    """A sora_ffi.rtc room joined to receive audio: (room, future of its first remote audio
    track)."""
    from sora_ffi import rtc
    room = rtc.Room()
    subscribed = asyncio.get_running_loop().create_future()
    room.on("track_subscribed", lambda track, *a: isinstance(track, rtc.RemoteAudioTrack)
            and not subscribed.done() and subscribed.set_result(track))
    await room.connect(url, channel, options=rtc.RoomOptions(video=False, data_topics=()))
    return room, subscribed


def callback_child(args) -> None:
    sdk = importlib.import_module(args.sdk)
    sora = sdk.Sora()
    conns, join_s = connect_receivers(sora, args.url, args.channel, args.n, args.n, video=False, timeout=60)
    counts = [0] * len(conns)
    sinks = []
    for i, (_, tracks) in enumerate(conns):
        if not tracks:
            continue
        sink = sdk.SoraAudioStreamSink(tracks[0], RATE, 1)
        if args.frame_ms != 10:
            sink.frame_size_ms = args.frame_ms  # sora_ffi only: the official sink has 10 ms

        def on_frame(frame, i=i):
            counts[i] += frame.samples_per_channel
        sink.on_frame = on_frame
        sinks.append(sink)
    time.sleep(1.0)
    counts[:] = [0] * len(counts)
    c0, w0 = cpu_s(), time.monotonic()
    time.sleep(args.seconds)
    c1, w1 = cpu_s(), time.monotonic()
    got = list(counts)
    shares = sorted(c / (RATE * (w1 - w0)) for c in got)
    report(variant=f"{args.sdk} callback {args.frame_ms} ms", n=args.n, connected=len(sinks), join_s=round(join_s, 2),
           cpu_per_s=round((c1 - c0) / (w1 - w0), 3), rss_mib=round(rss_mib(), 1),
           frames_per_s=round(sum(got) / (w1 - w0) / (RATE // 100)),
           median=shares[len(shares) // 2] if shares else 0, min=shares[0] if shares else 0, wakeups=None)


def rtc_child(args) -> None:
    from sora_ffi import rtc
    from sora_ffi.rtc import _handoff

    wakes = [0]
    original = _handoff._Pump._run

    def counting_run(self):  # benchmark-only: how often the event loop is woken
        wakes[0] += 1
        original(self)
    _handoff._Pump._run = counting_run

    async def main():
        counts = [0] * args.n
        streams: list = []

        async def read(i, stream):
            async for event in stream:
                counts[i] += event.frame.samples_per_channel

        t0 = time.monotonic()
        joined = await asyncio.gather(*(join_listening_room(args.url, args.channel) for _ in range(args.n)))
        join_s = time.monotonic() - t0
        tasks = []
        for i, (room, subscribed) in enumerate(joined):
            track = await asyncio.wait_for(subscribed, 30)
            if args.frame_ms == 0:  # rooms only: what the rooms cost without reading media
                continue
            stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=args.frame_ms)
            streams.append(stream)
            tasks.append(asyncio.ensure_future(read(i, stream)))
        await asyncio.sleep(1.0)
        counts[:] = [0] * len(counts)
        wakes[0] = 0
        c0, w0 = cpu_s(), time.monotonic()
        await asyncio.sleep(args.seconds)
        c1, w1 = cpu_s(), time.monotonic()
        got, woke = list(counts), wakes[0]
        frames = sum(got) / (RATE * max(args.frame_ms, 10) // 1000)
        shares = sorted(c / (RATE * (w1 - w0)) for c in got)
        name = f"rtc AudioStream {args.frame_ms} ms" if args.frame_ms else "rtc rooms, no stream read"
        report(variant=name, n=args.n, connected=len(joined),
               join_s=round(join_s, 2), cpu_per_s=round((c1 - c0) / (w1 - w0), 3), rss_mib=round(rss_mib(), 1),
               frames_per_s=round(sum(got) / (w1 - w0) / (RATE // 100)),
               median=shares[len(shares) // 2], min=shares[0],
               wakeups=round(woke / frames, 3) if frames else None)
    asyncio.run(main())


# ------------------------------------------------------------------ publisher children
def publish_child(args) -> None:
    import numpy as np

    block = RATE // 100
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.int16)
    if args.variant == "on_data":
        import sora_ffi
        sora = sora_ffi.Sora()
        sources = [sora.create_audio_source(1, RATE) for _ in range(args.n)]
        conns = [sora.create_connection(signaling_urls=[args.url], role="sendonly", channel_id=f"{args.channel}-{i}",
                                        audio=True, video=False, audio_source=s) for i, s in enumerate(sources)]
        for c in conns:
            c.connect()
        for c in conns:
            c.wait_connected(30)
        frames = [0]

        def push():
            start = time.monotonic()
            k = 0
            while not stop.is_set():
                at = (k * block) % (RATE - block)
                for s in sources:
                    s.on_data(tone[at:at + block].reshape(-1, 1))
                frames[0] += len(sources)
                k += 1
                time.sleep(max(0.0, start + k * 0.01 - time.monotonic()))
        stop = threading.Event()
        threading.Thread(target=push, daemon=True).start()
        time.sleep(1.0)
        f0, c0, w0 = frames[0], cpu_s(), time.monotonic()
        time.sleep(args.seconds)
        f1, c1, w1 = frames[0], cpu_s(), time.monotonic()
        stop.set()
        report(variant="plain connections, SoraAudioSource.on_data (thread)", n=args.n, cpu_per_s=round((c1 - c0) / (w1 - w0), 3),
               frames_per_s=round((f1 - f0) / (w1 - w0)), rss_mib=round(rss_mib(), 1))

    from sora_ffi import rtc

    async def main():
        frames = [0]

        sources: list = []

        async def publisher(i):
            room = rtc.Room()
            await room.connect(args.url, f"{args.channel}-{i}", options=rtc.RoomOptions(video=False, data_topics=()))
            source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
            await room.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("tone", source))
            sources.append(source)
            if args.variant == "rooms_on_data":
                return room  # pushed from the thread below: the rooms without the asyncio API
            k = 0
            while True:
                at = (k * block) % (RATE - block)
                await source.capture_frame(rtc.AudioFrame(tone[at:at + block], RATE, 1, block))
                frames[0] += 1
                k += 1

        from sora_ffi.rtc import _audio
        sleeps = [0]
        real_sleep = asyncio.sleep

        async def counting_sleep(delay, *a):  # benchmark-only: how often capture_frame waits
            sleeps[0] += 1
            return await real_sleep(delay, *a)
        _audio.asyncio.sleep = counting_sleep  # (the module's asyncio is the global one)
        tasks = [asyncio.ensure_future(publisher(i)) for i in range(args.n)]
        stop = threading.Event()
        if args.variant == "rooms_on_data":
            await asyncio.gather(*tasks)

            def push():
                start, k = time.monotonic(), 0
                while not stop.is_set():
                    at = (k * block) % (RATE - block)
                    for src in sources:
                        src.sora_source.on_data(tone[at:at + block].reshape(-1, 1))
                    frames[0] += len(sources)
                    k += 1
                    time.sleep(max(0.0, start + k * 0.01 - time.monotonic()))
            threading.Thread(target=push, daemon=True).start()
        await real_sleep(3.0)
        f0, c0, w0, s0 = frames[0], cpu_s(), time.monotonic(), sleeps[0]
        await real_sleep(args.seconds)
        f1, c1, w1, s1 = frames[0], cpu_s(), time.monotonic(), sleeps[0]
        stop.set()
        name = ("rtc rooms, SoraAudioSource.on_data (thread)" if args.variant == "rooms_on_data"
                else "rtc rooms, await AudioSource.capture_frame")
        report(variant=name, n=args.n, cpu_per_s=round((c1 - c0) / (w1 - w0), 3),
               frames_per_s=round((f1 - f0) / (w1 - w0)), rss_mib=round(rss_mib(), 1),
               waits_per_frame=round((s1 - s0) / max(f1 - f0, 1), 3))
        del tasks
    asyncio.run(main())


# ------------------------------------------------------------------ parent
def run_child(args, extra: list) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), args.mode, "--child", *extra, "--url", args.url,
           "--channel", args.channel, "--seconds", str(args.seconds), "--n", str(args.n)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"variant": " ".join(extra), "error": (p.stderr or "")[-300:]}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("subscribers", "publish"))
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--kind", default="rtc")
    ap.add_argument("--sdk", default="sora_ffi")
    ap.add_argument("--frame-ms", type=int, default=10)
    ap.add_argument("--variant", default="rtc")
    ap.add_argument("--url")
    ap.add_argument("--channel", default="bench-rtc")
    args = ap.parse_args()
    raise_fd_limit()
    if args.child:
        if args.mode == "publish":
            publish_child(args)
        elif args.kind == "rtc":
            rtc_child(args)
        else:
            callback_child(args)
        return
    import sora_ffi
    from sora_ffi import testpattern
    from sora_ffi.devserver.process import DevServerProcess

    with DevServerProcess() as server:
        args.url = server.signaling_url
        results = []
        if args.mode == "subscribers":
            args.n = args.n or 100
            sora = sora_ffi.Sora()
            source = sora.create_audio_source(1, RATE)
            sender = sora.create_connection(signaling_urls=[args.url], role="sendonly", channel_id=args.channel,
                                            audio=True, video=False, audio_source=source)
            sender.connect()
            assert sender.wait_connected(10)
            variants = [["--kind", "callback", "--sdk", "sora_sdk", "--frame-ms", "10"],
                        ["--kind", "rtc", "--frame-ms", "0"]]
            for ms in ("10", "20", "50"):
                variants += [["--kind", "callback", "--sdk", "sora_ffi", "--frame-ms", ms],
                             ["--kind", "rtc", "--frame-ms", ms]]
            with testpattern.ToneFeeder(source, RATE):
                for _ in range(args.rounds):  # interleaved rounds: the machine's drift hits all
                    for extra in variants:
                        results.append(run_child(args, extra))
                        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                        time.sleep(2)
            sender.disconnect()
            rows = by_variant(results)
            print(f"| variant (N={args.n}, median of {args.rounds}) | joined in | CPU s/s | RSS MiB | "
                  "audio median (min) | wake-ups/frame | µs/frame over callbacks |")
            print("|---|---|---|---|---|---|---|")
            for name, (ok, error) in rows.items():
                if not ok:
                    print(f"| {name} | failed: {error[-80:]!r} | | | | | |")
                    continue
                med = lambda key: median(ok, key)  # noqa: E731
                extra_us = ""
                if name.startswith("rtc AudioStream"):
                    ms = int(name.split()[2])
                    base = rows.get(f"sora_ffi callback {ms} ms", ([], None))[0]
                    if base:
                        base_cpu = median(base, "cpu_per_s")
                        frames = med("frames_per_s") * 10 / ms
                        extra_us = f"{(med('cpu_per_s') - base_cpu) / frames * 1e6:.1f}"
                wake = med("wakeups") if ok[0]["wakeups"] is not None else "–"
                print(f"| {name} | {med('join_s')} s | {med('cpu_per_s')} | {med('rss_mib')} | "
                      f"{med('median'):.1%} ({min(r['min'] for r in ok):.1%}) | {wake} | {extra_us} |")
        else:
            args.n = args.n or 20
            for _ in range(args.rounds):  # interleaved rounds, as above
                for variant in ("on_data", "rooms_on_data", "rtc"):
                    results.append(run_child(args, ["--variant", variant]))
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
                    time.sleep(2)
            by: dict = {}
            for r in results:
                if "error" not in r:
                    by.setdefault(r["variant"], []).append(r)
            print(f"| variant (N={args.n}, median of {args.rounds}) | CPU s/s | frames/s | RSS MiB |")
            print("|---|---|---|---|")
            med = {}
            for name, rs in by.items():
                cpu = sorted(r["cpu_per_s"] for r in rs)[len(rs) // 2]
                fps = sorted(r["frames_per_s"] for r in rs)[len(rs) // 2]
                med[name] = (cpu, fps)
                print(f"| {name} | {cpu} | {fps} | {max(r['rss_mib'] for r in rs)} |")
            rooms = [v for k, v in med.items() if k.startswith("rtc rooms, SoraAudioSource")]
            capture = [v for k, v in med.items() if k.startswith("rtc rooms, await")]
            if rooms and capture:
                (a_cpu, _), (b_cpu, b_fps) = rooms[0], capture[0]
                print(f"\ncapture_frame over on_data, the same rooms: {(b_cpu - a_cpu) / max(b_fps, 1) * 1e6:.1f} µs/frame")


if __name__ == "__main__":
    main()
