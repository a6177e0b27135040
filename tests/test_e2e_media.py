"""Media end to end through the dev server, measured on decoded output.

Video carries its own frame index and send time (sora_ffi.testpattern); the receiver reads
them back from the decoded BGR frames and compares pixels with what was sent. Audio is a
known chirp, found again in the received signal by cross-correlation.
"""
from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Optional

import numpy as np
import pytest

from conftest import _OFFICIAL_GRAVEYARD, attach_video_sink, new_sora
from sora_ffi import testpattern


class VideoReceiver:
    """Attaches a SoraVideoSink to the first video track (of ``stream_id``'s sender, when
    given) and records what it decodes."""

    def __init__(self, sdk, client, sent_width: int, psnr_every: int = 4,
                 stream_id: Optional[str] = None):
        self.sdk, self.client, self.sent_width = sdk, client, sent_width
        self.lock = threading.Lock()
        self.indices: list = []
        self.psnrs: list = []
        self.latencies: list = []
        self.sizes: set = set()
        self.unreadable = 0
        self.psnr_every = psnr_every
        self.sink = attach_video_sink(sdk, client, self._on_frame, stream_id)

    def _on_frame(self, frame):
        img = frame.data()
        code = testpattern.read_code(img, self.sent_width)
        now_ms = int(time.time() * 1000)
        with self.lock:
            self.sizes.add(img.shape)
            if code is None:
                self.unreadable += 1
                return
            index, sent_ms = code
            self.indices.append(index)
            self.latencies.append((now_ms - sent_ms) & 0xFFFFFFFF)
            if img.shape[1] == self.sent_width and index % self.psnr_every == 0:
                ref = testpattern.scene(index, img.shape[1], img.shape[0])
                self.psnrs.append(testpattern.psnr(img, ref))


def push_video(source, frames: int, width: int, height: int, fps: int = 30, start: int = 0):
    """Sends ``frames`` coded frames (indices from ``start``) at ``fps`` in real time."""
    scenes = [testpattern.scene(i, width, height) for i in range(testpattern.PERIOD)]
    t0 = time.perf_counter()
    for i in range(start, start + frames):
        delay = t0 + (i - start) / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        img = scenes[i % testpattern.PERIOD].copy()
        source.on_captured(testpattern.stamp(img, i, int(time.time() * 1000)))


def in_order_fraction(indices: list, sent: int) -> float:
    """Share of the sent frames that arrived, counting only those in increasing order."""
    seen, last = set(), -1
    for i in indices:
        if i > last:
            seen.add(i)
            last = i
    return len(seen) / sent


@pytest.mark.parametrize("codec", ["VP8", "VP9", "H264", "AV1"])
def test_video_quality_720p(ffi, server, channel_id, clients, codec):
    h264 = codec == "H264"
    receiver = clients(ffi, server, channel_id, "recvonly", sora=new_sora(ffi, h264), video=True)
    receiver.connect()
    sora = new_sora(ffi, h264)
    source = sora.create_video_source()
    # Quality at full size is measured here, not CPU adaptation (test_e2e_cpu_adaptation):
    # on a loaded 2-core machine MAINTAIN_FRAMERATE would rightly scale VP9 down.
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True,
                     video_codec_type=codec, video_bit_rate=2500, video_source=source,
                     degradation_preference=ffi.SoraDegradationPreference.DISABLED)
    sender.connect()
    rx = VideoReceiver(ffi, receiver, 1280)
    frames = 120  # 4 s at 30 fps
    push_video(source, frames, 1280, 720)
    receiver.wait_for(lambda: rx.indices and rx.indices[-1] >= frames - 3, 5, "last frames")
    with rx.lock:
        fraction = in_order_fraction(rx.indices, frames)
        psnr = statistics.median(rx.psnrs)
        lat = sorted(rx.latencies)
    print(f"\n{codec} 1280x720 2.5 Mbps: {fraction:.1%} of {frames} frames in order, "
          f"median PSNR {psnr:.1f} dB (min {min(rx.psnrs):.1f}), latency median "
          f"{lat[len(lat) // 2]} ms p95 {lat[int(0.95 * (len(lat) - 1))]} ms")
    missing = sorted(set(range(frames)) - set(rx.indices))
    misordered = [b for a, b in zip(rx.indices, rx.indices[1:]) if b <= a]
    sent_stats = {x["type"]: x for x in json.loads(sender.conn.get_stats())}
    out, captured = sent_stats["outbound-rtp"], sent_stats["media-source"]["frames"]
    encoded = out["framesEncoded"]
    encode_ms = 1000 * out["totalEncodeTime"] / max(1, encoded)
    print(f"missing {missing}, out of order {misordered}, captured {captured}, encoded {encoded} "
          f"({encode_ms:.1f} ms per frame)")
    assert rx.sizes == {(720, 1280, 3)}
    assert psnr >= 30.0
    assert not misordered
    engine = {"H264": "OpenH264", "AV1": "libaom"}.get(codec, "libvpx")
    assert out["encoderImplementation"] == engine
    inbound = next(x for x in json.loads(receiver.conn.get_stats())
                   if x["type"] == "inbound-rtp" and x["kind"] == "video")
    assert inbound["decoderImplementation"] == {"AV1": "dav1d"}.get(codec, engine)
    decode_ms = 1000 * inbound["totalDecodeTime"] / max(1, inbound["framesDecoded"])
    # libaom's realtime encoder (AV1) leaves a few 32x32 blocks of the previous picture in
    # place where most of a 64x64 block did not change: 2-4 cells of the code's CRC row in
    # 0-10 % of the frames here, so those codes do not read (libwebrtc's AV1 sender in the
    # official SDK, on the same pattern: 40-50 %; docs/codecs.md). Such frames were decoded;
    # they are counted apart, and bounded.
    damaged_codes = rx.unreadable if codec == "AV1" else 0
    print(f"decoded but unreadable codes: {rx.unreadable}")
    assert damaged_codes <= 0.15 * encoded
    if encode_ms + decode_ms > 1000 / 30 and round(fraction * frames) + damaged_codes < encoded - 4:
        # Sender and receiver share this process: when encoding and decoding one frame take
        # longer than a frame interval, the receiver's sink keeps the newest frames only.
        pytest.xfail(f"{codec} 1280x720: encode {encode_ms:.1f} + decode {decode_ms:.1f} ms per frame "
                     "exceed 33 ms on this host's CPU; the frames decoded were in order at "
                     f"{psnr:.1f} dB")
    # Every frame that was encoded arrives, decoded and in order (the last few may still be
    # on their way when the wait ends).
    assert round(fraction * frames) + damaged_codes >= encoded - 4
    if fraction + damaged_codes / frames < 0.95:
        # The frames missing were never encoded: the source replaces a frame the encoder has
        # no time for (real-time behaviour). Reported, not hidden: on a host where this
        # process cannot encode and decode 720p30 at once, it shows as an expected failure.
        pytest.xfail(f"{codec} 1280x720: {encoded} of {captured} frames encoded at {encode_ms:.1f} ms "
                     "per frame; this host's CPU cannot keep up (the encoded ones arrived)")


@pytest.mark.parametrize("codec", ["VP8", "VP9", "H264", "AV1"])
@pytest.mark.parametrize("direction", ["ffi-to-official", "official-to-ffi", "official-to-official"])
def test_media_interop(ffi, official, server, channel_id, clients, codec, direction):
    """The receiver is in the channel first, so the sender's media reaches it through a
    re-offer. official-to-official regressed there: libwebrtc demultiplexes by the MID
    header extension, and the dev server forwarded the sender's own mid (now rewritten)."""
    send_sdk, recv_sdk = {"ffi-to-official": (ffi, official), "official-to-ffi": (official, ffi),
                          "official-to-official": (official, official)}[direction]
    h264 = codec == "H264"  # both sides with the same OpenH264 library
    receiver = clients(recv_sdk, server, channel_id, "recvonly", sora=new_sora(recv_sdk, h264),
                       video=True, audio=True)
    receiver.connect()
    sora = new_sora(send_sdk, h264)
    vsrc = sora.create_video_source()
    asrc = sora.create_audio_source(1, 48000)
    if send_sdk.__name__ == "sora_sdk":
        _OFFICIAL_GRAVEYARD.extend([vsrc, asrc])
    sender = clients(send_sdk, server, channel_id, "sendonly", sora=sora, video=True, audio=True,
                     video_codec_type=codec, video_bit_rate=1000, video_source=vsrc, audio_source=asrc)
    sender.connect()
    rx = VideoReceiver(recv_sdk, receiver, 640)
    audio_track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "audio"), None),
                                    what="audio track")
    asink = recv_sdk.SoraAudioSink(audio_track, 48000, 1)
    if recv_sdk.__name__ == "sora_sdk":
        _OFFICIAL_GRAVEYARD.append(asink)
    with testpattern.ToneFeeder(asrc):
        push_video(vsrc, 90, 640, 360)
        receiver.wait_for(lambda: len(rx.indices) >= 30, 5,
                          f"decoded frames (so far {len(rx.indices)} read, {rx.unreadable} unreadable, sizes {rx.sizes})")
        # Read while the tone still goes out: read after the feeder stopped, the 100 ms
        # could be partly the silence after it (rms 417 once, when connects got faster).
        asink.read(0, 0)  # from now on
        ok, pcm = asink.read(4800, 2.0)
    assert ok and pcm.shape == (4800, 1)
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    print(f"\n{direction} {codec}: {len(rx.indices)} frames decoded, sizes {rx.sizes}, audio rms {rms:.0f}")
    misordered = [b for a, b in zip(rx.indices, rx.indices[1:]) if b <= a]
    print(f"out of order: {misordered}")
    assert len(rx.indices) >= 30  # of 90 sent: the official sender starts small and adapts
    # The dev server counts the RTP it received and forwarded (GetStatsConnection).
    # Receiver first: the forwarder counts a packet in before it counts it out, so media
    # still flowing between the two reads can only raise the upstream count.
    stats = {}
    for c in (receiver, sender):
        st, report = server.api("Sora_20170529.GetStatsConnection",
                                {"channel_id": channel_id, "connection_id": c.connection_id})
        assert st == 200
        stats[c is sender] = {(x["type"], x["kind"]): x for x in report if "kind" in x}
    up, down = stats[True][("inbound-rtp", "video")], stats[False][("outbound-rtp", "video")]
    assert up["packetsReceived"] > 50 and up["bytesReceived"] > 20_000
    assert 0.9 * up["packetsReceived"] <= down["packetsSent"] <= up["packetsReceived"] + 5
    assert stats[False][("outbound-rtp", "audio")]["packetsSent"] > 20
    # in order apart from rare single swaps (seen with VP9 into the official receiver)
    assert len(misordered) <= len(rx.indices) // 20
    assert rms > 1000  # the 440 Hz tone (rms 5657 when sent) is there


def _outbound_video(conn) -> dict:
    return next(s for s in json.loads(conn.get_stats())
                if s.get("type") == "outbound-rtp" and s.get("kind") == "video")


def test_official_sender_bandwidth_estimate(ffi, official, server, channel_id, clients):
    """The dev server sends REMB (goog-remb) to upstream video senders with the connection's
    video bit rate, as Sora gives senders BWE feedback: an official (libwebrtc) sender then
    leaves its ~300 kbps start value within a second or two instead of encoding 720p at a
    handful of frames per second.

    Degradation is disabled (as in benchmarks/media.py) so that 1280x720 is encoded from the
    first frame: with the default preference libwebrtc scales its first frames down, decided
    at its start bitrate before any RTP could bring a REMB, and its quality scaler restores
    1280x720 only after ~20 s (the frame rate stays, and the bit rate rises all the same)."""
    receiver = clients(ffi, server, channel_id, "recvonly", video=True)
    receiver.connect()
    sora = new_sora(official)
    vsrc = sora.create_video_source()
    _OFFICIAL_GRAVEYARD.append(vsrc)
    sender = clients(official, server, channel_id, "sendonly", sora=sora, video=True,
                     video_codec_type="VP8", video_bit_rate=2500, video_source=vsrc,
                     degradation_preference=official.SoraDegradationPreference.DISABLED)
    sender.connect()
    answer = next(m for _, _, m in sender.signaling
                  if isinstance(m, dict) and m.get("type") == "answer")
    assert "goog-remb" in answer["sdp"]  # negotiated from the server's offer
    # ... and transport-cc: the server reports arrivals, libwebrtc's own estimator (send
    # side) runs on them, the REMB a ceiling. Without valid reports it would stay near its
    # 300 kbps start value.
    assert "a=rtcp-fb:96 transport-cc" in answer["sdp"] and "transport-wide-cc" in answer["sdp"]
    rx = VideoReceiver(ffi, receiver, 1280)
    warmup, measured = 60, 90  # 2 s to settle, then 3 s measured
    push_video(vsrc, warmup, 1280, 720)
    before = _outbound_video(sender.conn)
    t0 = time.perf_counter()
    push_video(vsrc, measured, 1280, 720, start=warmup)
    receiver.wait_for(lambda: rx.indices and rx.indices[-1] >= warmup + measured - 3, 5,
                      f"last frames (got {len(rx.indices)}, last {rx.indices[-1:]}, "
                      f"{rx.unreadable} unreadable, sizes {rx.sizes})")
    after = _outbound_video(sender.conn)
    sent_bps = (after["bytesSent"] - before["bytesSent"]) * 8 / (time.perf_counter() - t0)
    with rx.lock:
        got = len({i for i in rx.indices if i >= warmup})
        sizes = set(rx.sizes)
    fps = got / (measured / 30)
    print(f"\nofficial VP8 sender at video_bit_rate=2500: targetBitrate "
          f"{before.get('targetBitrate')} -> {after.get('targetBitrate')} bps, sent "
          f"{sent_bps / 1e6:.2f} Mbps, {fps:.1f} fps received, sizes {sizes} "
          f"(quality limitation: {after.get('qualityLimitationReason')})")
    assert sizes == {(720, 1280, 3)}
    assert after.get("targetBitrate", 0) >= 1_500_000
    assert sent_bps >= 1_000_000  # ~300 kbps without the server's REMB
    assert fps >= 25


def best_fractional_shift(ref: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """`ref` delayed by the fraction of a sample (-1..1, 0.05 steps) that matches `seg` best."""
    spectrum = np.fft.rfft(ref)
    freqs = np.fft.rfftfreq(len(ref))
    best, best_corr = ref, float(np.dot(seg, ref))
    for d in np.arange(-1.0, 1.0001, 0.05):
        shifted = np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * d), len(ref))
        corr = float(np.dot(seg, shifted))
        if corr > best_corr:
            best, best_corr = shifted, corr
    return best


def audio_pair(ffi, server, channel_id, clients, rate: int) -> tuple:
    """A recvonly receiver and a sender of a `rate` Hz mono source: (receiver, source, the
    received audio track)."""
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True)
    receiver.connect()
    sora = ffi.Sora()
    source = sora.create_audio_source(1, rate)
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, audio=True, audio_source=source)
    sender.connect()
    track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "audio"), None),
                              what="audio track")
    return receiver, source, track


def test_audio_chirp_roundtrip(ffi, server, channel_id, clients):
    _, source, track = audio_pair(ffi, server, channel_id, clients, 16000)
    sink = ffi.SoraAudioSink(track, 16000, 1)
    rate = 16000
    t = np.arange(2 * rate) / rate
    chirp = (10000 * np.sin(2 * np.pi * (200 * t + (1800 / 4) * t ** 2))).astype(np.int16)
    silence = np.zeros(rate // 2, np.int16)
    signal = np.concatenate([silence, chirp, silence])
    started = time.time()
    # pushed in one go: the source paces it in real time
    source.on_data(signal.reshape(-1, 1))
    got = []
    deadline = time.time() + 6
    while sum(len(g) for g in got) < len(signal) and time.time() < deadline:
        ok, pcm = sink.read(1600, 1.0)
        if ok:
            got.append(pcm[:, 0])
    received = np.concatenate(got).astype(np.float64)
    ref = chirp.astype(np.float64)
    corr = np.correlate(received, ref, mode="valid")
    lag = int(np.argmax(corr))
    seg = received[lag:lag + len(ref)]
    ref = best_fractional_shift(ref, seg)  # a decoder may put the signal between samples
    scale = float(np.dot(seg, ref) / np.dot(ref, ref))
    noise = seg - scale * ref
    snr = 10 * np.log10(np.sum((scale * ref) ** 2) / max(np.sum(noise ** 2), 1e-9))
    ncc = float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref)))
    delay_ms = (lag - len(silence)) / rate * 1000
    print(f"\nchirp 200-2000 Hz via Opus: correlation {ncc:.3f}, SNR {snr:.1f} dB, "
          f"delay in stream {delay_ms:.0f} ms, wall {time.time() - started:.1f} s")
    assert ncc > 0.9
    assert snr > 10


def test_audio_sink_takes_buffered_audio_exactly_or_not_at_all(ffi, server, channel_id, clients):
    """SoraAudioSink.read's fast path: the C ABI's sora_audio_sink_buffered and _read_into on a
    sink receiving a tone. Refused takes (other channels, more than is buffered, bad
    arguments) leave the audio where it was; an exact take gets the tone. Then read() on
    both paths (what is buffered, and a wait for more) still returns real time's worth."""
    from sora_ffi._native import ffi as cffi, lib
    _, source, track = audio_pair(ffi, server, channel_id, clients, 48000)
    sink = ffi.SoraAudioSink(track, 48000, 1)
    with testpattern.ToneFeeder(source, 48000, hz=440.0):
        assert sink.read(4800, 5.0)[0], "no audio arrived"
        time.sleep(0.1)
        ptr = sink._enter()
        try:
            count, fmt = cffi.new("size_t *"), cffi.new("int32_t[2]")
            assert lib.sora_audio_sink_buffered(ptr, count, fmt, fmt + 1) == 0
            n = int(count[0])
            assert n >= 960 and (fmt[0], fmt[1]) == (48000, 1)
            dst = np.zeros(2 * (n + 48000), np.int16)
            buf = cffi.from_buffer("int16_t[]", dst, True)
            assert lib.sora_audio_sink_read_into(ptr, 2, n // 2, buf) == 0  # other channels
            assert lib.sora_audio_sink_read_into(ptr, 1, n + 48000, buf) == 0  # more than buffered
            for channels, frames, out in ((0, 1, buf), (9, 1, buf), (1, 0, buf), (1, 1, cffi.NULL), (2, 2**63, buf)):
                assert lib.sora_audio_sink_read_into(ptr, channels, frames, out) < 0
            assert not dst.any()
            assert lib.sora_audio_sink_buffered(ptr, count, fmt, fmt + 1) == 0 and count[0] >= n, "nothing taken"
            assert lib.sora_audio_sink_read_into(ptr, 1, n, buf) == 1
            assert np.abs(dst[:n]).max() > 4000, "the tone"
        finally:
            sink._leave()
        got, start = 0, time.monotonic()
        while time.monotonic() - start < 1.0:
            time.sleep(0.05)
            for frames in (0, 960):  # what is there; then a wait for the next 20 ms
                ok, pcm = sink.read(frames, 0.5)
                assert ok and pcm.shape[1] == 1 and (frames == 0 or len(pcm) == frames)
                got += len(pcm)
        elapsed = time.monotonic() - start
        assert 0.85 * 48000 * elapsed < got < 1.15 * 48000 * elapsed + 4800, (got, elapsed)


def test_audio_is_decoded_at_the_rate_the_sinks_need(ffi, server, channel_id, clients):
    """Opus is decoded straight to the highest rate the track's sinks convert to (16 kHz
    alone; 48 kHz once a 48 kHz sink joins; 16 kHz again when it goes): every sink keeps
    getting real-time audio of the tone, and the stats count 48 kHz samples throughout."""
    receiver, source, track = audio_pair(ffi, server, channel_id, clients, 48000)

    def samples_received() -> int:
        reports = json.loads(receiver.conn.get_stats())
        return next(r["totalSamplesReceived"] for r in reports if r.get("type") == "inbound-rtp" and r.get("kind") == "audio")

    def listen(sinks: list, seconds: float = 1.0) -> list:
        for sink, _ in sinks:
            sink.read(0, 0.5)  # from now on
        got = [[] for _ in sinks]
        deadline = time.time() + seconds
        while time.time() < deadline:
            time.sleep(0.05)
            for (sink, _), out in zip(sinks, got):
                ok, pcm = sink.read(0, 0)
                if ok:
                    out.append(pcm[:, 0])
        return [np.concatenate(g) for g in got]

    def tone_of(pcm, rate: int) -> float:
        x = pcm.astype(np.float64)
        return float(np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x))))) * rate / len(x))

    with testpattern.ToneFeeder(source, 48000, hz=440.0):
        low = ffi.SoraAudioSink(track, 16000, 1)
        counted = samples_received()
        t0 = time.time()
        (a,) = listen([(low, 16000)])
        per_second = (samples_received() - counted) / (time.time() - t0)
        assert 0.85 * 16000 < len(a) < 1.15 * 16000 and abs(tone_of(a, 16000) - 440) < 5
        assert 0.8 * 48000 < per_second < 1.2 * 48000, per_second  # 48 kHz samples, as before
        high = ffi.SoraAudioSink(track, 48000, 1)
        a, b = listen([(low, 16000), (high, 48000)])
        assert 0.85 * 16000 < len(a) < 1.15 * 16000 and abs(tone_of(a, 16000) - 440) < 5
        assert 0.85 * 48000 < len(b) < 1.15 * 48000 and abs(tone_of(b, 48000) - 440) < 5
        assert np.abs(b).max() > 4000  # the tone at full scale, not a resampled shadow
        del high
        (a,) = listen([(low, 16000)])
        assert 0.85 * 16000 < len(a) < 1.15 * 16000 and abs(tone_of(a, 16000) - 440) < 5


def test_set_enabled_on_sources_and_received_tracks(ffi, server, channel_id, clients):
    """Disabled sources send black frames and silence (the tracks stay); a disabled received
    track delivers nothing to its sinks. Enabling again restores both."""
    receiver = clients(ffi, server, channel_id, "recvonly", video=True, audio=True)
    receiver.connect()
    sora = ffi.Sora()
    vsrc = sora.create_video_source()
    asrc = sora.create_audio_source(1, 48000)
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True, audio=True,
                     video_bit_rate=1000, video_source=vsrc, audio_source=asrc)
    sender.connect()
    tracks = receiver.wait_for(lambda: len(receiver.tracks) == 2 and list(receiver.tracks), what="tracks")
    vtrack = next(t for t in tracks if t.kind == "video")
    atrack = next(t for t in tracks if t.kind == "audio")
    lock = threading.Lock()
    seen: list = []  # (monotonic time, "code" | "black" | "other")

    def on_frame(frame):
        img = frame.data()
        # (black is told apart first: the CRC already makes it unreadable as a code)
        kind = "black" if img.mean() < 20 else "code" if testpattern.read_code(img) else "other"
        with lock:
            seen.append((time.monotonic(), kind))

    vsink = ffi.SoraVideoSink(vtrack)
    vsink.on_frame = on_frame
    asink = ffi.SoraAudioSink(atrack, 48000, 1)
    stop = threading.Event()

    def feed():
        n, t0 = 0, time.perf_counter()
        scenes = [testpattern.scene(i, 640, 360) for i in range(testpattern.PERIOD)]
        while not stop.is_set():
            t = (np.arange(480) + n * 480) / 48000
            asrc.on_data((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(-1, 1))
            if n % 3 == 0:  # video at 1/3 of the 100 Hz audio rate
                vsrc.on_captured(testpattern.stamp(scenes[n // 3 % testpattern.PERIOD].copy(), n // 3, 0))
            n += 1
            time.sleep(max(0.0, t0 + n / 100 - time.perf_counter()))

    def tone_level(seconds: float) -> float:
        asink.read(0, 0.1)  # drop what is buffered from before
        ok, pcm = asink.read(int(48000 * seconds), seconds + 1)
        return float(np.abs(pcm).mean()) if ok else -1.0

    def video_for(seconds: float) -> list:
        time.sleep(0.3)  # settle: frames in flight, keyframe after a change
        start = time.monotonic()
        time.sleep(seconds)
        with lock:
            return [k for t, k in seen if start <= t < start + seconds]

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        on = video_for(0.5), tone_level(0.3)
        assert vsrc.set_enabled(False) and asrc.set_enabled(False)
        assert not vsrc.enabled and not asrc.enabled
        off = video_for(0.5), tone_level(0.3)
        assert vsrc.set_enabled(True) and asrc.set_enabled(True)
        back = video_for(0.5), tone_level(0.3)
        assert vtrack.set_enabled(False) and atrack.set_enabled(False)
        assert not vtrack.enabled
        muted = video_for(0.5), asink.read(4800, 0.5)
        assert vtrack.set_enabled(True) and atrack.set_enabled(True)
        unmuted = video_for(0.5), tone_level(0.3)
    finally:
        stop.set()
        feeder.join()
    print(f"\nenabled: {len(on[0])} frames, tone {on[1]:.0f}; source disabled: "
          f"{off[0].count('black')}/{len(off[0])} black, level {off[1]:.0f}; re-enabled: "
          f"{back[0].count('code')}/{len(back[0])} coded, tone {back[1]:.0f}; track disabled: "
          f"{len(muted[0])} frames, audio read {muted[1][0]}; track re-enabled: "
          f"{len(unmuted[0])} frames, tone {unmuted[1]:.0f}")
    # Sending side: black frames keep flowing at the input rate, silence replaces the tone.
    assert len(on[0]) >= 10 and set(on[0]) == {"code"} and on[1] > 3000
    assert len(off[0]) >= 10 and set(off[0]) == {"black"} and 0 <= off[1] < 50
    assert len(back[0]) >= 10 and set(back[0]) == {"code"} and back[1] > 3000
    # Receiving side: nothing reaches the sinks while the track is disabled.
    assert muted[0] == [] and muted[1][0] is False
    assert len(unmuted[0]) >= 10 and set(unmuted[0]) == {"code"} and unmuted[1] > 3000
