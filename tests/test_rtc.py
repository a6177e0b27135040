"""sora_ffi.rtc end to end through the dev server: rooms, participants, tracks, audio in
and out through AudioSource/AudioStream, data on topics, reconnection, bad input."""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from sora_ffi import rtc
from test_e2e_loss import lossy_link  # noqa: F401  (fixture)

RATE = 48000


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def sine(freq: float, seconds: float, rate: int = RATE, amplitude: int = 8000, start: int = 0) -> np.ndarray:
    n = np.arange(start, start + int(seconds * rate))
    return (amplitude * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float64).reshape(-1)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


async def wait_for(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Recorder:
    """Every event of a room, as (name, identity-or-detail) in order."""

    NAMES = ("participant_connected", "participant_disconnected", "track_published",
             "track_unpublished", "track_subscribed", "track_unsubscribed", "data_received",
             "connection_state_changed", "reconnecting", "reconnected", "disconnected")

    def __init__(self, room: rtc.Room) -> None:
        self.log: list[tuple] = []
        for name in self.NAMES:
            room.on(name, lambda *args, name=name: self.log.append((name, *args)))

    def names(self, *wanted: str) -> list:
        out = []
        for name, *args in self.log:
            if wanted and name not in wanted:
                continue
            who = next((a.identity for a in args if isinstance(a, rtc.RemoteParticipant)), None)
            out.append((name, who))
        return out


async def join(server, channel_id, identity: str, **options) -> rtc.Room:
    room = rtc.Room()
    await room.connect(server.signaling_url, channel_id,
                       options=rtc.RoomOptions(identity=identity, **options))
    return room


async def publish_sine(room: rtc.Room, freq: float, seconds: float, *, queue_size_ms: int = 200,
                       frame_ms: int = 20) -> rtc.AudioSource:
    source = rtc.AudioSource(RATE, 1, queue_size_ms=queue_size_ms)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    samples = sine(freq, seconds)
    step = RATE * frame_ms // 1000
    for i in range(0, len(samples), step):
        chunk = samples[i:i + step]
        await source.capture_frame(rtc.AudioFrame(chunk, RATE, 1, len(chunk)))
    return source


def test_participants_join_and_leave_in_order(server, channel_id):
    async def main():
        a = await join(server, channel_id, "alice")
        rec_a = Recorder(a)
        assert a.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert a.local_participant.identity == "alice" and a.remote_participants == {}
        b = await join(server, channel_id, "bob", name="Bob", metadata='{"x":1}')
        rec_b = Recorder(b)
        # present before the join: known at once, not announced
        assert list(b.remote_participants) == ["alice"]
        await wait_for(lambda: "bob" in a.remote_participants, what="bob at alice")
        bob = a.remote_participants["bob"]
        assert (bob.name, bob.metadata, bob.sid) == ("Bob", '{"x":1}', b.local_participant.sid)
        c = await join(server, channel_id, "carol")
        await wait_for(lambda: "carol" in a.remote_participants and "carol" in b.remote_participants)
        assert sorted(c.remote_participants) == ["alice", "bob"]
        await b.disconnect()
        assert b.connection_state == rtc.ConnectionState.CONN_DISCONNECTED
        await wait_for(lambda: "bob" not in a.remote_participants and "bob" not in c.remote_participants)
        await a.disconnect()
        await wait_for(lambda: c.remote_participants == {})
        await c.disconnect()
        assert rec_a.names() == [("participant_connected", "bob"), ("participant_connected", "carol"),
                                 ("participant_disconnected", "bob"),
                                 ("connection_state_changed", None), ("disconnected", None)]
        assert rec_b.names() == [("participant_connected", "carol"),
                                 ("connection_state_changed", None), ("disconnected", None)]
        assert rec_a.log[-1][1:] == (rtc.DisconnectReason.CLIENT_INITIATED, "")
    run(main())


def test_audio_published_with_capture_frame_is_heard_through_audio_stream(server, channel_id):
    async def main():
        listener = await join(server, channel_id, "listener")
        subscribed = asyncio.get_running_loop().create_future()
        listener.on("track_subscribed", lambda track, pub, who: subscribed.done() or subscribed.set_result((track, pub, who)))
        speaker = await join(server, channel_id, "speaker")
        publisher = asyncio.ensure_future(publish_sine(speaker, 440.0, 3.0))
        track, pub, who = await asyncio.wait_for(subscribed, 10)
        assert who.identity == "speaker" and isinstance(track, rtc.RemoteAudioTrack)
        assert pub.kind == rtc.TrackKind.KIND_AUDIO and pub.subscribed and pub.track is track
        stream = rtc.AudioStream(track, sample_rate=16000, num_channels=1, frame_size_ms=20)
        frames = []
        async for event in stream:
            assert event.frame.sample_rate == 16000 and event.frame.samples_per_channel == 320
            frames.append(event.frame.to_ndarray().copy())
            if len(frames) == 75:  # 1.5 s
                break
        audio = np.concatenate(frames)[16000 // 2:]  # past the decoder's start
        assert abs(dominant_frequency(audio, 16000) - 440.0) < 5
        assert np.abs(audio).max() > 3000  # the tone, not silence
        await stream.aclose()
        await publisher
        await speaker.disconnect()
        await listener.disconnect()
    run(main())


def test_capture_frame_paces_to_real_time_and_queue_controls(server, channel_id):
    async def main():
        listener = await join(server, channel_id, "listener")
        speaker = await join(server, channel_id, "speaker")
        t0 = time.monotonic()
        source = await publish_sine(speaker, 300.0, 1.5, queue_size_ms=200, frame_ms=10)
        elapsed = time.monotonic() - t0
        # 1.5 s of audio behind a 200 ms queue: the awaits took ~1.3 s (plus the publish)
        assert 1.2 < elapsed < 4.0, elapsed
        assert 0.05 < source.queued_duration <= 0.3
        await source.wait_for_playout()
        assert source.queued_duration == 0
        await speaker.disconnect()
        await listener.disconnect()
    run(main())


def test_clear_queue_drops_what_is_not_sent_yet(server, channel_id):
    async def main():
        listener = await join(server, channel_id, "listener")
        speaker = await join(server, channel_id, "speaker")
        t0 = time.monotonic()
        source = await publish_sine(speaker, 300.0, 1.5, queue_size_ms=2000)
        assert time.monotonic() - t0 < 1.0  # it all fit in the queue: no waiting
        assert source.queued_duration > 1.0
        source.clear_queue()  # barge-in
        assert source.queued_duration < 0.05
        t0 = time.monotonic()
        await source.wait_for_playout()
        assert time.monotonic() - t0 < 0.2
        await speaker.disconnect()
        await listener.disconnect()
    run(main())


def test_data_on_topics_reliable_lossy_and_destinations(server, channel_id):
    async def main():
        topics = ("", "chat")
        a = await join(server, channel_id, "a", data_topics=topics)
        b = await join(server, channel_id, "b", data_topics=topics)
        c = await join(server, channel_id, "c", data_topics=topics)
        got = {"b": [], "c": []}
        b.on("data_received", lambda p: got["b"].append(p))
        c.on("data_received", lambda p: got["c"].append(p))
        await wait_for(lambda: len(a.remote_participants) == 2)
        await a.local_participant.publish_data(b"hello all")
        await a.local_participant.publish_data("to chat", topic="chat", reliable=False)
        await a.local_participant.publish_data(b"only c", destination_identities=["c"], topic="chat")
        await a.local_participant.publish_data(b"\x00sfd looks like an envelope")
        await wait_for(lambda: len(got["b"]) == 3 and len(got["c"]) == 4, what="packets")
        for name in ("b", "c"):
            for p in got[name]:
                assert p.participant is not None and p.participant.identity == "a"
        seen_c = [(p.data, p.topic, p.kind) for p in got["c"]]
        assert (b"hello all", "", rtc.DataPacketKind.KIND_RELIABLE) in seen_c
        assert (b"to chat", "chat", rtc.DataPacketKind.KIND_LOSSY) in seen_c
        assert (b"only c", "chat", rtc.DataPacketKind.KIND_RELIABLE) in seen_c
        assert (b"\x00sfd looks like an envelope", "", rtc.DataPacketKind.KIND_RELIABLE) in seen_c
        assert b"only c" not in [p.data for p in got["b"]]
        # bad input: clear errors, nothing sent
        with pytest.raises(ValueError, match="not declared"):
            await a.local_participant.publish_data(b"x", topic="other")
        with pytest.raises(ValueError, match="at most"):
            await a.local_participant.publish_data(b"x" * (rtc.MAX_PACKET_BYTES + 1))
        with pytest.raises(TypeError):
            await a.local_participant.publish_data(123)  # type: ignore[arg-type]
        for room in (a, b, c):
            await room.disconnect()
    run(main())


def test_reconnects_after_the_server_ends_the_session_and_streams_survive(server, channel_id):
    async def main():
        listener = await join(server, channel_id, "listener",
                              reconnect=rtc.ReconnectPolicy(max_attempts=3, initial_delay=0.2))
        rec = Recorder(listener)
        subscribed = asyncio.get_running_loop().create_future()
        listener.on("track_subscribed", lambda track, *a: subscribed.done() or subscribed.set_result(track))
        speaker = await join(server, channel_id, "speaker")
        publisher = asyncio.ensure_future(publish_sine(speaker, 500.0, 6.0))
        track = await asyncio.wait_for(subscribed, 10)
        stream = rtc.AudioStream(track, sample_rate=16000)
        await anext(stream)
        old_id = listener.connection_id
        status, _ = await asyncio.to_thread(server.api, "Sora_20151104.DisconnectConnection",
                                            {"channel_id": channel_id, "connection_id": old_id})
        assert status == 200
        await wait_for(lambda: ("reconnected", None) in rec.names(), what="reconnected")
        assert listener.connection_id != old_id
        assert listener.connection_state == rtc.ConnectionState.CONN_CONNECTED
        assert list(listener.remote_participants) == ["speaker"]
        # the same stream object hears the speaker through the new connection
        await wait_for(lambda: track.sora_track is not None and track.sora_track.stream_id
                       == speaker.connection_id and track.stream_state == rtc.StreamState.STATE_ACTIVE)
        tail = []
        async for event in stream:
            tail.append(event.frame.to_ndarray().copy())
            if len(tail) == 100:
                break
        assert abs(dominant_frequency(np.concatenate(tail)[-8000:], 16000) - 500.0) < 5
        assert rec.names("reconnecting", "reconnected", "participant_disconnected", "track_unsubscribed") == [
            ("reconnecting", None), ("reconnected", None)]
        publisher.cancel()
        await speaker.disconnect()
        await listener.disconnect()
    run(main())


def test_handlers_that_raise_are_logged_and_others_still_run(server, channel_id, caplog):
    async def main():
        a = await join(server, channel_id, "a")
        seen = []

        @a.on("participant_connected")
        def bad(p):
            raise RuntimeError("handler bug")

        a.on("participant_connected", lambda p: seen.append(p.identity))
        events = a.events()
        b = await join(server, channel_id, "b")
        await wait_for(lambda: seen == ["b"])
        first = await anext(events)
        assert isinstance(first, rtc.events.ParticipantConnected) and first.participant.identity == "b"
        await b.disconnect()
        await a.disconnect()
        rest = [e async for e in events]
        assert isinstance(rest[-1], rtc.events.Disconnected)
    with caplog.at_level(logging.ERROR, logger="sora_ffi.rtc"):
        run(main())
    assert any("handler bug" in (r.exc_text or "") or "raised" in r.message for r in caplog.records)


def test_bad_frames_and_arguments_are_refused(server, channel_id):
    async def main():
        source = rtc.AudioSource(16000, 1)
        with pytest.raises(ValueError, match="16000 Hz"):
            await source.capture_frame(rtc.AudioFrame(np.zeros(480, np.int16), 48000, 1, 480))
        with pytest.raises(ValueError, match="channel"):
            await source.capture_frame(rtc.AudioFrame(np.zeros(320, np.int16), 16000, 2, 160))
        with pytest.raises(TypeError, match="int16"):
            rtc.AudioFrame(np.zeros(160, np.float32), 16000, 1, 160)
        with pytest.raises(ValueError, match="samples"):
            rtc.AudioFrame(b"\x00" * 100, 16000, 1, 160)
        with pytest.raises(TypeError, match="AudioFrame"):
            await source.capture_frame(np.zeros(160, np.int16))  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            rtc.AudioSource(48000, 1, queue_size_ms=0)
        room = rtc.Room()
        with pytest.raises(TypeError):
            await room.connect(server.signaling_url, "")
        with pytest.raises(rtc.ConnectError) as info:
            await rtc.Room().connect(server.signaling_url.replace("/signaling", "/nowhere"), channel_id,
                                     options=rtc.RoomOptions(connect_timeout=5))
        assert info.value.reason in (rtc.DisconnectReason.JOIN_FAILURE, rtc.DisconnectReason.CONNECTION_TIMEOUT)
        a = await join(server, channel_id, "a")
        with pytest.raises(ValueError, match="publishes no"):
            rtc.AudioStream.from_participant(participant=rtc.RemoteParticipant("x", "x"))
        with pytest.raises(TypeError):
            await a.local_participant.publish_track(source)  # type: ignore[arg-type]
        await a.disconnect()
        with pytest.raises(ConnectionError):
            await a.local_participant.publish_data(b"late")
    run(main())


def test_the_livekit_quickstart_shape_runs():
    """sora_ffi/examples/rtc_quickstart.py: LiveKit's quick-start (AudioStream on every
    subscribed audio track, a sine published with AudioFrame.create + capture_frame) with
    only the import and connect arguments changed; the listener hears the frequency."""
    from sora_ffi.examples.rtc_quickstart import demo

    result = run(demo(523.0, 1.5))
    assert result["frames_sent"] == 150
    assert result["heard_hz"] is not None and abs(result["heard_hz"] - 523.0) < 5, result
    assert result["frames_heard"] >= 0.95 * 150, result


@pytest.mark.parametrize("fmt", ["RGBA", "RGB24", "I420"])
def test_video_published_with_video_source_arrives_in_the_asked_format(server, channel_id, fmt):
    async def main():
        viewer = await join(server, channel_id, "viewer")
        subscribed = asyncio.get_running_loop().create_future()
        viewer.on("track_subscribed", lambda track, *a: isinstance(track, rtc.RemoteVideoTrack)
                  and not subscribed.done() and subscribed.set_result(track))
        camera = await join(server, channel_id, "camera")
        w, h = 320, 240
        color = (200, 60, 120)  # RGB
        source = rtc.VideoSource(w, h)
        await camera.local_participant.publish_track(rtc.LocalVideoTrack.create_video_track("cam", source))
        if fmt == "I420":  # the same colour as BT.601 limited-range YUV
            r, g, b = color
            y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
            u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
            v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
            data = np.concatenate([np.full(w * h, round(y)), np.full(w * h // 4, round(u)),
                                   np.full(w * h // 4, round(v))]).astype(np.uint8)
            frame = rtc.VideoFrame(w, h, rtc.VideoBufferType.I420, data)
        else:
            px = color + ((255,) if fmt == "RGBA" else ())
            frame = rtc.VideoFrame(w, h, rtc.VideoBufferType[fmt], np.tile(np.array(px, np.uint8), w * h))

        async def push():
            while True:
                source.capture_frame(frame)
                await asyncio.sleep(1 / 30)

        pusher = asyncio.ensure_future(push())
        track = await asyncio.wait_for(subscribed, 10)
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
        got = [await anext(stream) for _ in range(5)]
        pusher.cancel()
        last = got[-1].frame
        assert (last.width, last.height, last.type) == (w, h, rtc.VideoBufferType.RGBA)
        mean = last.to_ndarray().reshape(-1, 4).mean(axis=0)
        assert np.allclose(mean[:3], color, atol=12), mean
        assert mean[3] == 255
        await stream.aclose()
        await camera.disconnect()
        await viewer.disconnect()
    run(main())


def test_tokens_carry_identity_name_and_grants_the_dev_server_enforces(make_server, channel_id):
    import datetime

    secret = "a dev server secret of 32 bytes or more"
    server = make_server(jwt_secret=secret)

    def token(identity: str, **grants) -> str:
        return (rtc.AccessToken("api-key", secret).with_identity(identity).with_name(identity.title())
                .with_metadata(f"{identity}'s metadata")
                .with_grants(rtc.VideoGrants(room_join=True, room=channel_id, **grants)).to_jwt())

    async def main():
        full = rtc.Room()
        await full.connect(server.signaling_url, channel_id, token=token("alice"))
        # the token's identity wins over the room's own (client_id override)
        assert full.local_participant.identity == "alice"
        mute = rtc.Room()
        await mute.connect(server.signaling_url, channel_id, token=token("bob", can_publish=False, can_publish_data=False))
        await wait_for(lambda: "bob" in full.remote_participants)
        bob = full.remote_participants["bob"]
        assert (bob.name, bob.metadata) == ("Bob", "bob's metadata")
        # no can_publish: publishing (a recvonly -> sendrecv connection) is refused
        source = rtc.AudioSource(RATE, 1)
        with pytest.raises(rtc.ConnectError, match="can_publish"):
            await mute.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("mic", source))
        assert mute.connection_state == rtc.ConnectionState.CONN_CONNECTED  # still in the room
        assert mute.local_participant.track_publications == {}
        # no can_publish_data: refused before sending, and the server would drop it anyway
        with pytest.raises(PermissionError, match="can_publish_data"):
            await mute.local_participant.publish_data(b"hi")
        got = []
        mute.on("data_received", got.append)
        await full.local_participant.publish_data(b"to bob")
        await wait_for(lambda: [p.data for p in got] == [b"to bob"])  # receiving still works
        # bad tokens: refused with a clear reason
        for bad, reason in (
            (rtc.AccessToken("not the secret the dev server checks with").with_grants(rtc.VideoGrants(room_join=True, room=channel_id)).to_jwt(), "(?i)signature"),
            (rtc.AccessToken(secret).with_ttl(datetime.timedelta(seconds=1)).with_grants(
                rtc.VideoGrants(room_join=True, room=channel_id)).to_jwt(), "expired"),
            (rtc.AccessToken(secret).with_grants(rtc.VideoGrants(room_join=True, room="elsewhere")).to_jwt(), "channel_id"),
            (rtc.AccessToken(secret).with_grants(rtc.VideoGrants(room_join=False, room=channel_id)).to_jwt(), "room_join"),
        ):
            if reason == "expired":
                await asyncio.sleep(2.1)
            with pytest.raises(rtc.ConnectError, match=reason) as info:
                await rtc.Room().connect(server.signaling_url, channel_id, token=bad)
            assert info.value.reason == rtc.DisconnectReason.JOIN_FAILURE
        assert rtc.TokenVerifier("api-key", secret).verify(token("carol"))["client_id"] == "carol"
        with pytest.raises(ValueError, match="room"):
            rtc.AccessToken(secret).to_jwt()
        await mute.disconnect()
        await full.disconnect()
    run(main())


def test_speaking_and_muted_are_measured_from_the_media(server, channel_id):
    """An espeak-ng speaker becomes an active speaker while it talks and stops after; a
    participant sending quiet noise never does; muting a track (digital silence) is seen by
    the others as track_muted, unmuting as track_unmuted."""
    speech_mod = pytest.importorskip("sora_ffi.examples.speech")
    if not speech_mod.espeak_available():
        pytest.skip("espeak-ng is not installed")
    pcm, rate = speech_mod.synthesize("hello there, this is a test of speaking detection")

    async def main():
        watcher = await join(server, channel_id, "watcher", monitor_interval=0.2)
        changes: list = []
        watcher.on("active_speakers_changed", lambda speakers: changes.append(
            (time.monotonic(), [p.identity for p in speakers])))
        muted: list = []
        watcher.on("track_muted", lambda p, pub: muted.append(("muted", p.identity, pub.kind)))
        watcher.on("track_unmuted", lambda p, pub: muted.append(("unmuted", p.identity, pub.kind)))
        talker = await join(server, channel_id, "talker", video=False)
        quiet = await join(server, channel_id, "quiet", video=False)
        talk_src = rtc.AudioSource(rate, 1, queue_size_ms=100)
        quiet_src = rtc.AudioSource(RATE, 1, queue_size_ms=100)
        talk_track = rtc.LocalAudioTrack.create_audio_track("voice", talk_src)
        await talker.local_participant.publish_track(talk_track)
        await quiet.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("noise", quiet_src))
        rng = np.random.default_rng(1)

        async def noise():
            while True:
                await quiet_src.capture_frame(rtc.AudioFrame(rng.normal(0, 20, 480).astype(np.int16), RATE, 1, 480))

        async def say(samples):
            for i in range(0, len(samples), rate // 50):
                chunk = samples[i:i + rate // 50]
                await talk_src.capture_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk)))

        quiet_task = asyncio.ensure_future(noise())
        # quiet, not digital zero (which is what a muted sender sends)
        silence = rng.normal(0, 20, rate).astype(np.int16)
        await say(np.concatenate([silence, pcm]))
        spoken_end = time.monotonic()
        await say(np.concatenate([silence, silence]))  # two seconds of quiet
        await wait_for(lambda: changes and changes[-1][1] == [], what=f"speaking to stop: {changes}")
        starts = [t for t, who in changes if who == ["talker"]]
        assert starts, changes
        assert all("quiet" not in who for _, who in changes)
        assert changes[-1][0] - spoken_end < 1.5  # it stopped soon after the speech
        assert watcher.remote_participants["quiet"].is_speaking is False
        # muting: the talker's track goes silent (digital zero), then comes back
        talk_track.mute()
        await say(pcm[: rate])
        await wait_for(lambda: ("muted", "talker", rtc.TrackKind.KIND_AUDIO) in muted, what="track_muted")
        pub = watcher.remote_participants["talker"].track_publications["talker/audio"]
        assert pub.muted
        talk_track.unmute()
        await say(pcm[: rate])
        await wait_for(lambda: ("unmuted", "talker", rtc.TrackKind.KIND_AUDIO) in muted, what="track_unmuted")
        assert not pub.muted
        assert muted == [("muted", "talker", rtc.TrackKind.KIND_AUDIO),
                         ("unmuted", "talker", rtc.TrackKind.KIND_AUDIO)], muted
        quiet_task.cancel()
        for room in (talker, quiet, watcher):
            await room.disconnect()
    run(main(), timeout=40)


def test_the_measurements_behind_speaking_muted_and_quality():
    """rtc._monitor on its own, with made-up counters: hysteresis, muted by digital silence
    or stopped packets, quality from loss/jitter/RTT."""
    from sora_ffi.rtc import _monitor as m

    t = m.Tracker()
    energy = duration = 0.0
    packets = 0

    def step(level: float, new_packets: int = 15):
        nonlocal energy, duration, packets
        energy += level * level * 0.3
        duration += 0.3
        packets += new_packets
        return t.interval("a", {"kind": "audio", "totalAudioEnergy": energy,
                                "totalSamplesDuration": duration, "packetsReceived": packets})

    assert step(0.0) is None  # the first report only seeds
    iv = step(0.1)
    assert iv is not None and abs(iv.level - 0.1) < 1e-9 and iv.packets == 15
    assert t.speaking("a", iv.level) is True
    assert [t.speaking("a", 0.005) for _ in range(m.SPEAKING_HOLD)] == [True] * (m.SPEAKING_HOLD - 1) + [False]
    assert t.speaking("a", 0.015) is False  # between OFF and ON: no change
    assert t.muted("a") is None
    step(0.0)  # digital silence: one interval is not enough
    assert t.muted("a") is None
    step(0.0)
    assert t.muted("a") is True
    step(0.001)  # a microphone's noise floor: unmuted at once
    assert t.muted("a") is False
    step(0.1, new_packets=0)
    step(0.1, new_packets=0)  # nothing arrives: muted (a stopped sender)
    assert t.muted("a") is True
    t.keep_only([], [])
    assert t.streams == {} and t.speakers == {}
    Q = m.ConnectionQuality
    assert m.quality_of(0.0, 0.005) == Q.QUALITY_EXCELLENT
    assert m.quality_of(0.05, 0.02) == Q.QUALITY_GOOD
    assert m.quality_of(0.0, 0.01, rtt=0.4) == Q.QUALITY_GOOD
    assert m.quality_of(0.2, 0.01) == Q.QUALITY_POOR
    assert m.loss_fraction(5, 95) == 0.05 and m.loss_fraction(0, 0) == 0.0
    assert m.local_quality([{"type": "remote-inbound-rtp", "fractionLost": 0.1, "jitter": 0.0,
                             "roundTripTime": 0.01}]) == Q.QUALITY_POOR
    assert m.local_quality([]) is None


def test_streams_text_and_a_5_mb_file_arrive_intact(server, channel_id, tmp_path):
    import hashlib
    import os

    blob = os.urandom(5 * 1024 * 1024)
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    text = "héllo wörld ☃ " * 9000  # ~150 KB, characters cut across chunks

    async def main():
        a = await join(server, channel_id, "a")
        b = await join(server, channel_id, "b")
        c = await join(server, channel_id, "c")
        await wait_for(lambda: len(a.remote_participants) == 2)
        got: dict = {"b": [], "c": []}

        def handlers(room, name):
            async def on_bytes(reader, who):
                data = await reader.read_all()
                got[name].append(("bytes", who, reader.info.name, reader.info.size, reader.info.attributes,
                                  hashlib.sha256(data).hexdigest()))

            async def on_text(reader, who):
                parts = [part async for part in reader]
                got[name].append(("text", who, reader.info.topic, "".join(parts), len(parts) > 1))
            room.register_byte_stream_handler("files", on_bytes)
            room.register_text_stream_handler("chat", on_text)
        handlers(b, "b")
        handlers(c, "c")
        t0 = time.monotonic()
        info = await a.local_participant.send_file(str(path), topic="files", attributes={"k": "v"})
        assert info.size == len(blob) and info.name == "blob.bin"
        await a.local_participant.send_text(text, topic="chat", destination_identities=["b"])
        writer = await a.local_participant.stream_text(topic="chat")
        for word in ("one ", "two ", "three"):
            await writer.write(word)
        await writer.aclose()
        await wait_for(lambda: len(got["b"]) == 3 and len(got["c"]) == 2, timeout=20, what=f"streams {got}")
        elapsed = time.monotonic() - t0
        digest = hashlib.sha256(blob).hexdigest()
        for name in ("b", "c"):
            assert ("bytes", "a", "blob.bin", len(blob), {"k": "v"}, digest) in got[name]
            assert ("text", "a", "chat", "one two three", True) in got[name]
        assert ("text", "a", "chat", text, True) in got["b"]  # only b was a destination
        print(f"\n5 MB file to two receivers in {elapsed:.2f} s")
        with pytest.raises(ValueError, match="already registered"):
            b.register_text_stream_handler("chat", lambda r, w: None)
        for room in (a, b, c):
            await room.disconnect()
    run(main(), timeout=60)


def test_streams_abandoned_duplicated_or_unhandled_fail_cleanly(server, channel_id):
    async def main():
        a = await join(server, channel_id, "a")
        b = await join(server, channel_id, "b")
        await wait_for(lambda: "a" in b.remote_participants)
        errors: list = []
        done: list = []

        async def on_bytes(reader, who):
            try:
                done.append(await reader.read_all())
            except rtc.StreamError as e:
                errors.append(str(e))
        b.register_byte_stream_handler("up", on_bytes)
        # the same id twice from one sender: the open stream fails
        sid = "0b3f7a4e-0a53-4b8e-9d2c-1a2b3c4d5e6f"
        first = await a.local_participant.stream_bytes("x", topic="up", stream_id=sid)
        await first.write(b"123")
        await a.local_participant.stream_bytes("y", topic="up", stream_id=sid)
        await wait_for(lambda: any("same id" in e for e in errors), what=f"duplicate error {errors}")
        # no handler for the topic: ignored, nothing waits
        await a.local_participant.send_text("nobody listens", topic="elsewhere")
        # the sender leaves in the middle
        half = await a.local_participant.stream_bytes("z", topic="up")
        await half.write(b"x" * 100_000)
        await a.disconnect()
        await wait_for(lambda: any("left before" in e for e in errors), what=f"abandoned error {errors}")
        assert done == []
        with pytest.raises(TypeError):
            await b.local_participant.send_text(b"bytes")  # type: ignore[arg-type]
        await b.disconnect()
    run(main())


def test_rpc_round_trip_and_every_error_code(server, channel_id):
    E = rtc.RpcError.ErrorCode

    async def main():
        caller = await join(server, channel_id, "caller")
        callee = await join(server, channel_id, "callee")
        await wait_for(lambda: "callee" in caller.remote_participants)
        lp = callee.local_participant

        @lp.register_rpc_method("greet")
        async def greet(data: rtc.RpcInvocationData) -> str:
            return f"hello {data.caller_identity}: {data.payload}"

        lp.register_rpc_method("fail", lambda d: (_ for _ in ()).throw(ValueError("boom")))
        lp.register_rpc_method("custom", lambda d: (_ for _ in ()).throw(rtc.RpcError(42, "mine", "extra")))
        lp.register_rpc_method("big", lambda d: "x" * 20000)

        async def slow(d):
            await asyncio.sleep(5)
            return "late"
        lp.register_rpc_method("slow", slow)
        call = caller.local_participant.perform_rpc
        assert await call(destination_identity="callee", method="greet", payload="hi") == "hello caller: hi"

        async def code_of(**kw):
            with pytest.raises(rtc.RpcError) as info:
                await call(**kw)
            return info.value
        assert (await code_of(destination_identity="callee", method="nope", payload="")).code == E.UNSUPPORTED_METHOD
        assert (await code_of(destination_identity="nobody", method="greet", payload="")).code == E.RECIPIENT_NOT_FOUND
        assert (await code_of(destination_identity="callee", method="greet", payload="x" * 16000)).code == E.REQUEST_PAYLOAD_TOO_LARGE
        assert (await code_of(destination_identity="callee", method="big", payload="")).code == E.RESPONSE_PAYLOAD_TOO_LARGE
        err = await code_of(destination_identity="callee", method="fail", payload="")
        assert err.code == E.APPLICATION_ERROR and "boom" in err.data
        err = await code_of(destination_identity="callee", method="custom", payload="")
        assert (err.code, err.message, err.data) == (42, "mine", "extra")
        assert (await code_of(destination_identity="callee", method="slow", payload="",
                              response_timeout=0.5)).code == E.RESPONSE_TIMEOUT
        # the callee leaves while answering
        pending = asyncio.ensure_future(call(destination_identity="callee", method="slow", payload=""))
        await asyncio.sleep(0.3)
        await callee.disconnect()
        with pytest.raises(rtc.RpcError) as info:
            await pending
        assert info.value.code == E.RECIPIENT_DISCONNECTED
        # a participant that does not speak RPC (a plain Sora connection): no acknowledgement
        import sora_ffi
        from sora_ffi import aio
        async with aio.connect(sora_ffi.Sora(), signaling_urls=[server.signaling_url], role="recvonly",
                               channel_id=channel_id, client_id="plain", audio=False, video=False,
                               data_channel_signaling=True,
                               data_channels=[{"label": "#_rtc.rpc", "direction": "sendrecv"}]):
            await wait_for(lambda: "plain" in caller.remote_participants)
            assert (await code_of(destination_identity="plain", method="greet", payload="")).code == E.CONNECTION_TIMEOUT
        await caller.disconnect()
    run(main())


def test_rooms_in_successive_event_loops_leave_nothing_behind(server, channel_id):
    """Each asyncio.run gets its own event-loop Sora; when the loop goes, so do it, its
    native queue and the queue's descriptors (no leak per loop)."""
    import gc
    import os

    async def one(i):
        room = await join(server, f"{channel_id}-{i}", "x")
        await room.local_participant.publish_data(b"x")
        await room.disconnect()

    def fds() -> int:
        gc.collect()
        time.sleep(0.3)  # native sockets of ended sessions close on their own threads
        return len(os.listdir("/proc/self/fd"))
    for i in range(2):
        run(one(i))
    before = fds()
    for i in range(2, 8):
        run(one(i))
    after = fds()
    assert after - before <= 2, (before, after)


@pytest.mark.parametrize("leave_order", ["abc", "acb", "bac", "bca", "cab", "cba"])
def test_every_leave_order_is_seen_by_those_who_stay(server, channel_id, leave_order):
    async def main():
        rooms, records = {}, {}
        for name in "abc":
            # b signals over WebSocket only: rooms work the same without DataChannels
            rooms[name] = await join(server, channel_id, name, data_channel_signaling=(name != "b"))
            records[name] = Recorder(rooms[name])
        await wait_for(lambda: all(len(r.remote_participants) == 2 for r in rooms.values()))
        with pytest.raises(ConnectionError, match="data_channel_signaling"):
            await rooms["b"].local_participant.publish_data(b"x")
        left = []
        for name in leave_order:
            await rooms[name].disconnect()
            left.append(name)
            stay = [n for n in "abc" if n not in left]
            await wait_for(lambda: all(sorted(rooms[n].remote_participants) == sorted(set(stay) - {n})
                                       for n in stay), what=f"after {left}")
        for name in "abc":
            joined_after = [n for n in "abc" if n > name]
            gone_before_me = [n for n in leave_order[:leave_order.index(name)]]
            assert records[name].names("participant_connected", "participant_disconnected") == \
                [("participant_connected", n) for n in joined_after] + \
                [("participant_disconnected", n) for n in gone_before_me], name
    run(main())


def test_unpublishing_is_seen_and_capture_frame_keeps_time_while_nothing_sends(server, channel_id):
    async def main():
        watcher = await join(server, channel_id, "watcher")
        rec = Recorder(watcher)
        speaker = await join(server, channel_id, "speaker", video=False)
        await wait_for(lambda: "speaker" in watcher.remote_participants)
        source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
        # not published: nothing sends, yet the await keeps the producer to real time
        # (and lets the loop run: a ticker keeps ticking)
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.05)
        tick_task = asyncio.ensure_future(ticker())
        t0 = time.monotonic()
        frame = rtc.AudioFrame.create(RATE, 1, 480)
        for _ in range(50):  # 0.5 s
            await source.capture_frame(frame)
        assert time.monotonic() - t0 > 0.35
        assert len(ticks) >= 5
        tick_task.cancel()
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        pub = await speaker.local_participant.publish_track(track)
        await wait_for(lambda: ("track_subscribed", "speaker") in rec.names(), what="subscribed")
        await speaker.local_participant.unpublish_track(pub.sid)
        assert speaker.local_participant.track_publications == {}
        await wait_for(lambda: ("track_unpublished", "speaker") in rec.names(), what=f"unpublished {rec.names()}")
        assert rec.names("track_published", "track_subscribed", "track_unsubscribed", "track_unpublished",
                         "participant_disconnected") == [
            ("track_published", "speaker"), ("track_subscribed", "speaker"),
            ("track_unsubscribed", "speaker"), ("track_unpublished", "speaker")]
        assert watcher.remote_participants["speaker"].track_publications == {}
        with pytest.raises(ValueError, match="no published track"):
            await speaker.local_participant.unpublish_track(pub.sid)
        await speaker.disconnect()
        await watcher.disconnect()
    run(main())


async def inbound_audio(room: rtc.Room) -> dict:
    """The room's inbound-rtp audio stats (W3C counters of its Sora connection)."""
    stats = await room.get_rtc_stats()
    assert not any(r["type"] == "inbound-rtp" for r in stats.publisher_stats)
    return next((r for r in stats.subscriber_stats if r.get("type") == "inbound-rtp" and r.get("kind") == "audio"), {})


async def wait_for_stats(room: rtc.Room, pred, what: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while not pred(stats := await inbound_audio(room)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {stats}")
        await asyncio.sleep(0.05)
    return stats


def test_auto_subscribe_off_decodes_nothing_until_set_subscribed(server, channel_id):
    async def main():
        with pytest.raises(TypeError, match="auto_subscribe"):
            await join(server, channel_id, "bad", auto_subscribe=1)
        listener = await join(server, channel_id, "listener", auto_subscribe=False, video=False)
        rec = Recorder(listener)
        speakers = []
        listener.on("active_speakers_changed", lambda who: speakers.append([p.identity for p in who]))
        speaker = await join(server, channel_id, "speaker", video=False)
        publisher = asyncio.ensure_future(publish_sine(speaker, 440.0, 8.0))
        await wait_for(lambda: ("track_published", "speaker") in rec.names(), what="published")
        pub = next(iter(listener.remote_participants["speaker"].track_publications.values()))
        # the media arrives (Sora forwards it), but nothing subscribes to it or decodes it
        await wait_for_stats(listener, lambda st: st.get("packetsReceived", 0) > 25, what="packets")
        assert (await inbound_audio(listener))["totalSamplesReceived"] == 0
        assert (pub.subscribed, pub.track) == (False, None)
        assert "track_subscribed" not in [n for n, _ in rec.names()]
        # speaking is measured from the packets' audio level extension: no decoding needed
        await wait_for(lambda: ["speaker"] in speakers, what="speaking while unsubscribed")
        assert listener.remote_participants["speaker"].is_speaking and not pub.muted
        assert (await inbound_audio(listener))["totalSamplesReceived"] == 0
        with pytest.raises(TypeError, match="bool"):
            pub.set_subscribed("yes")

        async def listen() -> tuple[rtc.RemoteAudioTrack, np.ndarray, int]:
            subscribed = asyncio.get_running_loop().create_future()
            listener.on("track_subscribed", lambda track, *a: subscribed.done() or subscribed.set_result(track))
            pub.set_subscribed(True)
            track = await asyncio.wait_for(subscribed, 5)
            assert pub.subscribed and pub.track is track
            stream = rtc.AudioStream(track, sample_rate=16000, num_channels=1, frame_size_ms=20)
            frames = []
            async for event in stream:
                frames.append(event.frame.to_ndarray().copy())
                if len(frames) == 40:  # 0.8 s
                    pub.set_subscribed(False)  # the stream ends after what it holds
            return track, np.concatenate(frames), len(frames)

        track1, audio, n = await listen()
        assert n >= 40 and pub.track is None and not pub.subscribed
        assert abs(dominant_frequency(audio[8000:], 16000) - 440.0) < 5
        decoded = (await inbound_audio(listener))["totalSamplesReceived"]
        assert decoded > 0
        # unsubscribed again: decoding stops while the packets keep coming
        packets = (await inbound_audio(listener))["packetsReceived"]
        await asyncio.sleep(0.5)
        now = await inbound_audio(listener)
        assert now["packetsReceived"] > packets + 10
        assert now["totalSamplesReceived"] - decoded < 48000 * 0.1
        track2, audio, _ = await listen()  # and back: a new track object for the same publication
        assert track2 is not track1 and track2.sid == track1.sid
        assert abs(dominant_frequency(audio[8000:], 16000) - 440.0) < 5
        assert rec.names("track_published", "track_subscribed", "track_unsubscribed") == [
            ("track_published", "speaker"), ("track_subscribed", "speaker"), ("track_unsubscribed", "speaker"),
            ("track_subscribed", "speaker"), ("track_unsubscribed", "speaker")]
        sent = (await speaker.get_rtc_stats()).publisher_stats
        assert any(r["type"] == "outbound-rtp" and r["kind"] == "audio" and r["packetsSent"] > 100 for r in sent)
        publisher.cancel()
        await speaker.disconnect()
        await listener.disconnect()
        with pytest.raises(RuntimeError, match="isn't connected"):
            await listener.get_rtc_stats()
        pub.set_subscribed(True)  # after the room is gone: nothing happens, nothing raises
        await asyncio.sleep(0.05)
        assert pub.track is None
    run(main())


def test_hostile_peers_on_the_rooms_own_labels(server, channel_id):
    """A plain Sora connection speaking garbage on `#_rtc.stream` and `#_rtc.rpc`: malformed
    messages are dropped, a text stream that is not UTF-8 fails with StreamError, and an RPC
    answer with a malformed error code still ends the call (APPLICATION_ERROR), at once."""
    import hashlib
    import json as _json
    import uuid

    import sora_ffi
    from sora_ffi import aio

    async def main():
        room = await join(server, channel_id, "room")
        errors: list = []

        async def on_text(reader, who):
            try:
                await reader.read_all()
            except rtc.StreamError as e:
                errors.append((who, str(e)))
        room.register_text_stream_handler("t", on_text)
        labels = [{"label": "#_rtc.stream", "direction": "sendrecv"},
                  {"label": "#_rtc.rpc", "direction": "sendrecv"}]
        async with aio.connect(sora_ffi.Sora(), signaling_urls=[server.signaling_url], role="recvonly",
                               channel_id=channel_id, client_id="evil", audio=False, video=False,
                               data_channel_signaling=True, data_channels=labels) as evil:
            await evil.wait_data_channel("#_rtc.stream", 5)
            await evil.wait_data_channel("#_rtc.rpc", 5)
            await wait_for(lambda: "evil" in room.remote_participants)
            for junk in (b"", b"X", b"Hnot json", b'H{"id": "nope"}', b"C" + b"\x00" * 5,
                         b"C" + uuid.uuid4().bytes + b"\x00\x00\x00\x00data", b"T{}", b"T[1]"):
                await evil.send("#_rtc.stream", junk)
            for junk in (b"", b"{", b"[]", b'{"id": 1}', b'{"t": "res", "id": "x", "to": "room"}',
                         b"[" * 20000 + b"]" * 20000):  # nested past the parser's recursion limit
                await evil.send("#_rtc.rpc", junk)
            await evil.send("#_rtc.stream", b"H" + b'{"a":' * 10000 + b"1" + b"}" * 10000)
            sid = str(uuid.uuid4())
            bad = b"\xff\xfe not utf-8"
            await evil.send("#_rtc.stream", b"H" + _json.dumps({"id": sid, "topic": "t", "kind": "text"}).encode())
            await evil.send("#_rtc.stream", b"C" + uuid.UUID(sid).bytes + (0).to_bytes(4, "big") + bad)
            await evil.send("#_rtc.stream", b"T" + _json.dumps({"id": sid, "chunks": 1, "size": len(bad),
                                                                 "sha256": hashlib.sha256(bad).hexdigest()}).encode())
            await wait_for(lambda: errors, what="the stream error")
            assert errors[0][0] == "evil" and "UTF-8" in errors[0][1]

            async def answer_badly():
                async for event in evil.events():
                    if isinstance(event, aio.Message) and event.label == "#_rtc.rpc":
                        req = _json.loads(event.data)
                        if req.get("t") == "req":
                            for reply in ({"t": "ack", "id": req["id"], "to": "room"},
                                          {"t": "res", "id": req["id"], "to": "room",
                                           "error": {"code": "abc", "message": 5, "data": {"x": 1}}}):
                                await evil.send("#_rtc.rpc", _json.dumps(reply).encode())
                            return
            responder = asyncio.ensure_future(answer_badly())
            t0 = time.monotonic()
            with pytest.raises(rtc.RpcError) as info:
                await room.local_participant.perform_rpc(destination_identity="evil", method="m", payload="p")
            assert info.value.code == rtc.RpcError.ErrorCode.APPLICATION_ERROR
            assert time.monotonic() - t0 < 2
            await responder
        # the room took all of it and still works
        assert room.connection_state == rtc.ConnectionState.CONN_CONNECTED
        await room.disconnect()
    run(main())


def test_messages_during_publish_arrive_once(server, channel_id):
    """publish_track replaces the connection while messages flow: none twice, none out of
    order (a message still on its way to the old connection at the switch may be lost)."""
    async def main():
        sender = await join(server, channel_id, "sender")
        receiver = await join(server, channel_id, "receiver", video=False)
        got: list = []
        receiver.on("data_received", lambda p: got.append(int(p.data)))
        await wait_for(lambda: "receiver" in sender.remote_participants)
        stop = asyncio.Event()

        async def send():
            i = 0
            while not stop.is_set():
                await sender.local_participant.publish_data(str(i).encode())
                i += 1
                await asyncio.sleep(0.005)
            return i
        sending = asyncio.ensure_future(send())
        await asyncio.sleep(0.3)
        for _ in range(2):  # publish, then unpublish: two switches under traffic
            source = rtc.AudioSource(RATE, 1)
            pub = await receiver.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("m", source))
            await asyncio.sleep(0.2)
            await receiver.local_participant.unpublish_track(pub.sid)
            await asyncio.sleep(0.2)
        stop.set()
        sent = await sending
        await wait_for(lambda: got and got[-1] == sent - 1, what="the last message")
        assert len(got) == len(set(got)), "a message arrived twice"
        assert got == sorted(got)
        assert len(got) >= 0.98 * sent, (len(got), sent)
        print(f"\n{len(got)} of {sent} messages across 4 switches")
        await sender.disconnect()
        await receiver.disconnect()
    run(main())


def test_a_switch_lines_the_new_connections_messages_up_by_content():
    """The boundary of a switch, without timing: what the old connection delivered (or
    still has queued) is dropped from the new one's first messages, and only that."""
    from sora_ffi.rtc._overlap import Delivered
    delivered = Delivered()
    for i in range(5):
        delivered.add("#", b"m%d" % i)
    # m5 reached the old connection (queued there) and not yet the new one, which has m3, m4
    overlap = delivered.overlap([("#", b"m5")], [("#", b"m3"), ("#", b"m4")])
    assert [overlap.is_duplicate("#", b"m%d" % i) for i in (3, 4, 5, 6, 7)] == [True, True, True, False, False]
    # the new connection has what the old one never got: all of it is delivered
    overlap = delivered.overlap([], [("#", b"m9")])
    assert not overlap.is_duplicate("#", b"m9") and not overlap.is_duplicate("#", b"m10")
    # labels are apart; on a lossy label the new copy may have lost one of the overlap
    for data in (b"a", b"b", b"c"):
        delivered.add("#~", data)
    overlap = delivered.overlap([], [])
    assert overlap.is_duplicate("#~", b"a") and overlap.is_duplicate("#~", b"c")
    assert not overlap.is_duplicate("#~", b"d") and not overlap.is_duplicate("#", b"m5")
    # a payload that repeats is placed by the new connection's queue length
    repeats = Delivered()
    for data in (b"x", b"ping", b"y", b"ping"):
        repeats.add("#", data)
    overlap = repeats.overlap([], [("#", b"ping")])
    assert overlap.is_duplicate("#", b"ping") and not overlap.is_duplicate("#", b"ping")
    overlap = repeats.overlap([], [("#", b"ping"), ("#", b"y"), ("#", b"ping")])
    assert [overlap.is_duplicate("#", d) for d in (b"ping", b"y", b"ping", b"ping")] == [True, True, True, False]


def test_frames_check_their_data_and_share_memory():
    frame = rtc.AudioFrame.create(48000, 2, 480)
    view = np.frombuffer(frame.data, dtype=np.int16)  # LiveKit's way to fill a frame
    view[:] = 7
    assert frame.to_ndarray().shape == (480, 2) and int(frame.to_ndarray()[10, 1]) == 7
    assert frame.duration == 0.01 and frame.data.format == "h" and len(frame.data) == 960
    with pytest.raises(TypeError, match="bytes-like"):
        rtc.VideoFrame(2, 2, rtc.VideoBufferType.RGBA, [0] * 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="16 bytes"):
        rtc.VideoFrame(2, 2, rtc.VideoBufferType.RGBA, b"\x00" * 15)
    with pytest.raises(ValueError, match="unknown"):
        rtc.VideoFrame(2, 2, 77, b"\x00" * 16)  # type: ignore[arg-type]
    rgba = rtc.VideoFrame(2, 2, rtc.VideoBufferType.RGBA, bytes([10, 20, 30, 255] * 4))
    assert rgba.to_bgr()[0, 0].tolist() == [30, 20, 10]
    argb = rgba.convert(rtc.VideoBufferType.ARGB)
    assert bytes(argb.data[:4]) == bytes([255, 10, 20, 30])
    nv12 = rtc.VideoFrame(2, 2, rtc.VideoBufferType.NV12, bytes([16] * 4 + [128, 128]))
    assert nv12.to_bgr().max() == 0  # video black


def test_reconnects_after_the_network_is_cut_and_comes_back(lossy_link, channel_id):  # noqa: F811
    """The dev server runs in a network namespace and both rooms reach it over a veth pair.
    For 2.5 s everything in and out of the namespace is dropped: the server's pings stop,
    the rooms take their sessions as lost (ping_timeout), retry while the network is down,
    and reconnect once it is back; the listener hears the speaker again. (Whether the
    listener sees the speaker leave and come back depends on which of the two rejoined
    first; either way its current audio track carries the tone.)"""
    from sora_ffi.devserver.process import DevServerProcess

    link = lossy_link
    opts = dict(ping_timeout=0.75, connect_timeout=2.0,
                reconnect=rtc.ReconnectPolicy(max_attempts=30, initial_delay=0.3, max_delay=0.5))
    with DevServerProcess("--host", link.ns_ip, "--bind-address", link.ns_ip, "--ping-interval", "0.25",
                          "--no-api", prefix=("ip", "netns", "exec", link.ns)) as server:
        async def main():
            listener = await join(server, channel_id, "listener", **opts)
            rec = Recorder(listener)
            speaker = await join(server, channel_id, "speaker", **opts)
            srec = Recorder(speaker)
            publisher = asyncio.ensure_future(publish_sine(speaker, 500.0, 30.0))

            def speaker_audio():
                p = listener.remote_participants.get("speaker")
                tracks = [pub.track for pub in p.track_publications.values()
                          if pub.kind == rtc.TrackKind.KIND_AUDIO and pub.track is not None] if p else []
                return next((t for t in tracks if t.sora_track is not None
                             and t.sora_track.stream_id == speaker.connection_id), None)

            async def hears_the_tone():
                await wait_for(lambda: speaker_audio() is not None, 10, "the speaker's audio track")
                stream = rtc.AudioStream(speaker_audio(), sample_rate=16000)
                tail = []
                async for event in stream:
                    tail.append(event.frame.to_ndarray().copy())
                    if len(tail) == 100:
                        break
                await stream.aclose()
                assert abs(dominant_frequency(np.concatenate(tail)[-8000:], 16000) - 500.0) < 5

            await hears_the_tone()
            await asyncio.sleep(1.0)  # a few of the server's pings: its interval is known
            ids = listener.connection_id, speaker.connection_id
            before = len(rec.log)
            cut_at = time.monotonic()
            await asyncio.to_thread(link.cut)
            for room in (rec, srec):
                await wait_for(lambda room=room: ("reconnecting", None) in room.names(), 5, "reconnecting")
            detected = time.monotonic() - cut_at
            await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - cut_at)))
            assert listener.connection_state == rtc.ConnectionState.CONN_RECONNECTING
            await asyncio.to_thread(link.restore)
            restored_at = time.monotonic()
            for room in (rec, srec):
                await wait_for(lambda room=room: ("reconnected", None) in room.names(), 15, "reconnected")
            back = time.monotonic() - restored_at
            print(f"\nsessions lost {detected:.2f} s after the cut; reconnected {back:.2f} s after the network came back")
            assert detected < 2.0  # ping_timeout, not the ~30 s of ICE consent
            assert (listener.connection_id, speaker.connection_id) != ids and None not in ids
            assert listener.connection_state == speaker.connection_state == rtc.ConnectionState.CONN_CONNECTED
            await hears_the_tone()
            for r in (rec, srec):
                assert r.names("reconnecting", "reconnected") == [("reconnecting", None), ("reconnected", None)]
            del rec.log[:before]
            seen = rec.names("participant_disconnected", "participant_connected")
            assert seen in ([], [("participant_disconnected", "speaker"), ("participant_connected", "speaker")]), seen
            publisher.cancel()
            await speaker.disconnect()
            await listener.disconnect()
        run(main(), timeout=60)
