"""Spotlight through the dev server (sora_ffi/devserver/spotlight.py): senders' voice, read
from the `ssrc-audio-level` header extension their audio carries, moves focus; spotlight
receivers get the focused sender's video at the focus layer and the others' at the
unfocus layer, and hear about it in `spotlight.focused` / `spotlight.unfocused` notifies.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from browser import browser_peer, chromium  # noqa: F401  (fixtures)
from conftest import _OFFICIAL_GRAVEYARD, new_sora, server_call, server_session
from sora_ffi.devserver import spotlight

WIDTH, HEIGHT = 640, 360
#: decoded width of each rid of a 640x360 source (scaleResolutionDownBy 4, 2, 1)
SIZES = {"r0": 160, "r1": 320, "r2": 640}
#: the top layer both SDKs send of 640x360: libwebrtc sends two layers of a picture that
#: size (r0, r1), and so do we; a receiver asking for r2 gets the highest layer flowing
TOP = SIZES["r1"]
TONE = (8000 * np.sin(2 * np.pi * 440 * np.arange(480) / 48000)).astype(np.int16).reshape(-1, 1)
SILENCE = np.zeros((480, 1), np.int16)


# ---------------------------------------------------------------- the policy alone
def feed(spot, now, counters, voiced_ids):
    """One 100 ms reading: 5 packets per sender, all voiced for ``voiced_ids``."""
    for cid in counters:
        p, v = counters[cid]
        counters[cid] = (p + 5, v + (5 if cid in voiced_ids else 0))
    return spot.tick(now, dict(counters))


def run(spot, counters, t0, seconds, voiced_ids):
    changes = []
    t = t0
    while t < t0 + seconds - 1e-9:
        t = round(t + 0.1, 3)
        changes += [(t, *c) for c in feed(spot, t, counters, voiced_ids)]
    return t, changes


def test_focus_follows_speech_with_hysteresis():
    spot = spotlight.Spotlight(1)
    counters = {}
    first = []
    for cid in "ABCD":
        counters[cid] = (0, 0)
        first += spot.add(cid, 0.0)
    assert first == [("focused", "A", 0)] and spot.focused == ["A"]  # join order before speech
    t, ch = run(spot, counters, 0.0, 2.0, {"B"})
    # B's speech is seen within the onset window; A has held focus for the minimum time
    assert [c[1:] for c in ch] == [("unfocused", "A", 0), ("focused", "B", 0)]
    assert ch[0][0] <= 1.05
    # C speaks while B still does: C waits (B is speaking), then takes focus once B is quiet
    t, ch = run(spot, counters, t, 0.5, {"B", "C"})
    assert ch == [] and spot.focused == ["B"]
    t, ch = run(spot, counters, t, 2.0, {"C"})
    assert [c[1:] for c in ch] == [("unfocused", "B", 0), ("focused", "C", 0)]
    assert ch[0][0] - (t - 2.0) <= 1.1  # B released after 1 s of silence
    # silence everywhere: focus stays where it is
    t, ch = run(spot, counters, t, 3.0, set())
    assert ch == [] and spot.focused == ["C"]


def test_short_noises_do_not_take_focus():
    spot = spotlight.Spotlight(1)
    counters = {"A": (0, 0), "B": (0, 0)}
    spot.add("A", 0.0)
    spot.add("B", 0.0)
    t, ch = run(spot, counters, 0.0, 2.0, set())
    # one voiced reading in every third: under half of the onset window
    for _ in range(10):
        t, c1 = run(spot, counters, t, 0.1, {"B"})
        t, c2 = run(spot, counters, t, 0.2, set())
        ch += c1 + c2
    assert ch == [] and spot.focused == ["A"]


def test_several_slots_fixed_focus_and_number_changes():
    spot = spotlight.Spotlight(2)
    counters = {c: (0, 0) for c in "ABCD"}
    for cid in "ABCD":
        spot.add(cid, 0.0)
    assert spot.focused == ["A", "B"]
    assert spot.focus("D", 0.0, fixed=True) == [("unfocused", "A", 0), ("focused", "D", 0)]
    t, ch = run(spot, counters, 0.0, 2.0, {"C"})
    # C takes B's slot: D is fixed
    assert [c[1:] for c in ch] == [("unfocused", "B", 1), ("focused", "C", 1)]
    assert spot.set_number(1, t) == [("unfocused", "C", 1)] and spot.focused == ["D"]
    # more slots: the latest speaker first, then join order
    assert spot.set_number(3, t) == [("focused", "C", 1), ("focused", "A", 2)]
    assert spot.unfocus("D", t) == [("unfocused", "D", 0), ("focused", "B", 0)]
    with pytest.raises(ValueError):
        spot.set_number(9, t)
    with pytest.raises(KeyError):
        spot.focus("nobody", t)
    assert spot.remove("C", t) == [("unfocused", "C", 1), ("focused", "D", 1)]


def test_meter_restarts_and_garbage_readings_are_harmless():
    spot = spotlight.Spotlight(1)
    spot.add("A", 0.0)
    spot.add("B", 0.0)
    # counters that go backwards (a replaced meter), absent senders, unknown ids
    assert spot.tick(0.1, {"B": (100, 100), "X": (5, 5)}) == []
    assert spot.tick(0.2, {"B": (10, 0)}) == []
    assert spot.tick(0.3, {}) == []
    assert spot.focused == ["A"]


# ---------------------------------------------------------------------- end to end
class Media(threading.Thread):
    """Pushes 640x360 video at 15 fps and 10 ms of audio every 10 ms to each sender's
    sources; ``speaker`` (an index, or None) sends a tone, the others silence."""

    def __init__(self, sources):
        super().__init__(daemon=True)
        self.sources = sources
        self.speaker = None
        self.stop_event = threading.Event()
        self.frames = [np.full((HEIGHT, WIDTH, 3), 40 + 50 * i, np.uint8) for i in range(len(sources))]

    def run(self):
        t0 = time.perf_counter()
        n = 0
        while not self.stop_event.is_set():
            delay = t0 + n * 0.01 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            for i, (video, audio) in enumerate(self.sources):
                audio.on_data(TONE if i == self.speaker else SILENCE)
                if n % 7 == 0:
                    video.on_captured(self.frames[i])
            n += 1

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(5)

    def __enter__(self):
        self.start()
        return self


class Widths:
    """The width of the last frame decoded on each video track, by sender."""

    def __init__(self, sdk, client):
        self.lock = threading.Lock()
        self.last: dict = {}
        self.sinks = []
        self.client = client
        self.sdk = sdk
        self.attached: set = set()

    def attach_all(self):
        for track in list(self.client.tracks):
            if track.kind != "video" or track.stream_id in self.attached:
                continue
            self.attached.add(track.stream_id)
            sink = self.sdk.SoraVideoSink(track)
            sink.on_frame = lambda frame, sid=track.stream_id: self._on_frame(sid, frame)
            self.sinks.append(sink)
            if self.sdk.__name__ == "sora_sdk":
                _OFFICIAL_GRAVEYARD.append(sink)

    def _on_frame(self, sid, frame):
        with self.lock:
            self.last[sid] = frame.data().shape[1]

    def of(self, sid):
        with self.lock:
            return self.last.get(sid)


def spotlight_sender(sdk, server, channel_id, clients, **kw):
    sora = new_sora(sdk)
    video, audio = sora.create_video_source(), sora.create_audio_source(1, 48000)
    if sdk.__name__ == "sora_sdk":
        _OFFICIAL_GRAVEYARD.extend([video, audio])
    c = clients(sdk, server, channel_id, "sendonly", sora=sora, audio=True, video=True,
                spotlight=True, video_codec_type="VP8", video_bit_rate=1000,
                video_source=video, audio_source=audio, **kw)
    c.connect()
    return c, (video, audio)


def focus_events(client, since: int = 0) -> list:
    return [(m["event_type"], m["connection_id"]) for m in client.notifies[since:]
            if m.get("event_type") in ("spotlight.focused", "spotlight.unfocused")]


@pytest.mark.parametrize("speaker_sdk", ["sora_ffi", "sora_sdk"])
def test_focus_follows_the_speaker(sdk, speaker_sdk, official, ffi, server, channel_id, clients):
    """Four senders (the second speaker of `speaker_sdk`: libwebrtc writes the audio level
    itself), two speaking in turn: the receiver's focus notifies and the focused sender's
    video layer follow each speaker within 2 s."""
    speaker_mod = official if speaker_sdk == "sora_sdk" else ffi
    made = [spotlight_sender(speaker_mod if i == 1 else ffi, server, channel_id, clients) for i in range(4)]
    senders = [c for c, _ in made]
    ids = [c.connection_id for c in senders]
    receiver = clients(sdk, server, channel_id, "recvonly", audio=True, video=True,
                       spotlight=True, spotlight_number=1, spotlight_unfocus_rid="r0",
                       spotlight_focus_rid="r2")
    receiver.connect()
    # a newcomer hears who is focused now
    receiver.wait_notify("spotlight.focused", connection_id=ids[0])
    receiver.wait_for(lambda: sum(t.kind == "video" for t in receiver.tracks) == 4, what="4 video tracks")
    widths = Widths(sdk, receiver)
    widths.attach_all()
    with Media([s for _, s in made]) as media:
        # before anyone speaks the first sender is focused; everyone's video flows
        receiver.wait_for(lambda: all(widths.of(i) for i in ids), 10, "video of every sender")
        assert receiver.wait_for(lambda: widths.of(ids[0]) == TOP, 5, "first sender at its top layer")
        timeline = []
        for speaker in (2, 1, 2):
            mark = len(receiver.notifies)
            media.speaker = speaker
            t0 = time.monotonic()
            previous = ids[0] if not timeline else ids[3 - speaker]
            receiver.wait_for(lambda: ("spotlight.focused", ids[speaker]) in focus_events(receiver, mark), 2.0,
                              f"sender {speaker} focused")
            timeline.append(round(time.monotonic() - t0, 2))
            assert focus_events(receiver, mark) == [("spotlight.unfocused", previous),
                                                    ("spotlight.focused", ids[speaker])]
            receiver.wait_for(lambda: widths.of(ids[speaker]) == TOP, 2.0, f"sender {speaker} at its top layer")
            receiver.wait_for(lambda: all(widths.of(c) == SIZES["r0"] for k, c in enumerate(ids) if k != speaker),
                              2.0, "the others at r0")
            timeline.append(round(time.monotonic() - t0, 2))
            time.sleep(1.5)  # speaks on; then silence gives the next speaker the floor
            media.speaker = None
            time.sleep(1.2)
        print(f"\nfocus notify / layers switched after (s): {timeline}")
    # the notifies say what Sora's do
    m = next(m for m in receiver.notifies if m.get("event_type") == "spotlight.focused")
    assert set(m) >= {"client_id", "connection_id", "audio", "video", "fixed"}
    assert m["audio"] is True and m["video"] is True and m["fixed"] is False
    # the senders' own audio level counters saw the tone (voice) and the silence
    for c in senders[1:3]:
        packets, voiced = server_call(server, server_session(server, c.connection_id).voice_activity)
        assert packets > 200 and 50 < voiced < packets


SECRET = "spotlight-secret-long-enough-for-hs256"
RPC_METHODS = ["2025.2.0/RequestSpotlightRid", "2025.2.0/ResetSpotlightRid"]


def token(channel_id: str, **claims) -> dict:
    import jwt
    claims = {"channel_id": channel_id, "exp": int(time.time() + 60), **claims}
    return {"access_token": jwt.encode(claims, SECRET, algorithm="HS256")}


def test_focus_by_api_and_layers_by_api_and_rpc(ffi, make_server, channel_id, clients):
    """FocusSpotlightFixed holds focus against a speaker, UnfocusSpotlight and
    ChangeSpotlightNumber move it, RequestSpotlightRid (API) and 2025.2.0/RequestSpotlightRid
    (RPC) change the layers one receiver gets, ResetSpotlightRid goes back."""
    server = make_server(jwt_secret=SECRET)
    made = [spotlight_sender(ffi, server, channel_id, clients, metadata=token(channel_id)) for _ in range(2)]
    a, b = (c.connection_id for c, _ in made)
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True, video=True, spotlight=True,
                       data_channel_signaling=True, metadata=token(channel_id, rpc_methods=RPC_METHODS))
    receiver.connect()
    receiver.wait_dc("rpc")
    receiver.wait_for(lambda: sum(t.kind == "video" for t in receiver.tracks) == 2, what="2 video tracks")
    widths = Widths(ffi, receiver)
    widths.attach_all()

    def layers(wa, wb, what):
        receiver.wait_for(lambda: (widths.of(a), widths.of(b)) == (wa, wb), 3, what)

    with Media([s for _, s in made]) as media:
        layers(TOP, 160, "a focused (joined first; default focus r2, unfocus r0)")
        st, reply = server.api("Sora_20200807.FocusSpotlightFixed", {"channel_id": channel_id, "connection_id": b})
        assert st == 200, reply
        receiver.wait_notify("spotlight.focused", connection_id=b, fixed=True)
        layers(160, TOP, "b fixed")
        media.speaker = 0  # a speaks: b is fixed and keeps the floor
        time.sleep(1.5)
        assert widths.of(b) == TOP and ("spotlight.focused", a) not in focus_events(receiver)[1:]
        st, _ = server.api("Sora_20200807.UnfocusSpotlight", {"channel_id": channel_id, "connection_id": b})
        assert st == 200
        layers(TOP, 160, "b unfocused: a, speaking, gets the floor")
        media.speaker = None
        st, _ = server.api("Sora_20200807.ChangeSpotlightNumber", {"channel_id": channel_id, "spotlight_number": 2})
        assert st == 200
        layers(TOP, TOP, "two focused")
        # one receiver asks for r0 of focused senders (API), then r1 for b only (RPC)
        st, reply = server.api("Sora_20211215.RequestSpotlightRid", {
            "channel_id": channel_id, "recv_connection_id": receiver.connection_id,
            "spotlight_focus_rid": "r0", "spotlight_unfocus_rid": "none"})
        assert st == 200 and reply["spotlight_focus_rid"] == "r0", reply
        layers(160, 160, "focus rid r0")
        assert receiver.conn.send_rpc(1, RPC_METHODS[0], {"send_connection_id": b, "spotlight_focus_rid": "r1",
                                                          "spotlight_unfocus_rid": "r0"})
        layers(160, TOP, "b at r1 by RPC")
        assert receiver.conn.send_rpc(2, RPC_METHODS[1], {})
        layers(TOP, TOP, "reset: the connect's rids")
    replies = [__import__("json").loads(r) for r in receiver.rpcs]
    assert replies[0]["result"] == {"channel_id": channel_id, "recv_connection_id": receiver.connection_id,
                                    "spotlight_focus_rid": "r1", "spotlight_unfocus_rid": "r0",
                                    "send_connection_id": b}
    assert replies[1]["result"] == {"channel_id": channel_id, "recv_connection_id": receiver.connection_id}


def test_bad_spotlight_requests_are_refused(ffi, make_server, channel_id, clients):
    server = make_server(jwt_secret=SECRET)
    sender = clients(ffi, server, channel_id, "sendonly", audio=True, spotlight=True,
                     metadata=token(channel_id)).connect()
    plain = clients(ffi, server, channel_id + "-plain", "sendonly", audio=True,
                    metadata=token(channel_id + "-plain")).connect()
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True, spotlight=True,
                       data_channel_signaling=True, metadata=token(channel_id, rpc_methods=RPC_METHODS)).connect()
    receiver.wait_dc("rpc")
    ch = {"channel_id": channel_id}
    for target, body, status in [
        ("Sora_20200807.FocusSpotlight", {**ch, "connection_id": "NOPE"}, 404),
        ("Sora_20200807.FocusSpotlight", {**ch, "connection_id": receiver.connection_id}, 404),  # not a sender
        ("Sora_20200807.FocusSpotlight", {**ch}, 400),
        ("Sora_20200807.FocusSpotlight", {"channel_id": plain.channel_id, "connection_id": plain.connection_id}, 400),
        ("Sora_20200807.ChangeSpotlightNumber", {**ch, "spotlight_number": 9}, 400),
        ("Sora_20200807.ChangeSpotlightNumber", {**ch, "spotlight_number": "2"}, 400),
        ("Sora_20211215.RequestSpotlightRid", {**ch, "recv_connection_id": receiver.connection_id,
                                               "spotlight_focus_rid": "r3", "spotlight_unfocus_rid": "r0"}, 400),
        ("Sora_20211215.RequestSpotlightRid", {**ch, "recv_connection_id": "NOPE",
                                               "spotlight_focus_rid": "r1", "spotlight_unfocus_rid": "r0"}, 404),
        ("Sora_20211215.ResetSpotlightRid", {**ch, "recv_connection_id": receiver.connection_id,
                                             "send_connection_id": "NOPE"}, 404),
    ]:
        st, reply = server.api(target, body)
        assert st == status, (target, body, st, reply)
    calls = [(RPC_METHODS[0], {"spotlight_focus_rid": "r1"}),
             (RPC_METHODS[0], {"spotlight_focus_rid": "r1", "spotlight_unfocus_rid": "high"}),
             (RPC_METHODS[1], {"send_connection_id": 7}),
             ("2025.2.0/FocusSpotlight", {})]
    for n, (method, params) in enumerate(calls, 1):
        assert receiver.conn.send_rpc(n, method, params)
    receiver.wait_for(lambda: len(receiver.rpcs) >= len(calls), 5, "rpc replies")
    codes = {r["id"]: r["error"]["code"] for r in map(__import__("json").loads, receiver.rpcs)}
    assert codes == {1: -32602, 2: -32602, 3: -32602, 4: -32601}
    assert not receiver.disconnected.is_set() and not sender.disconnected.is_set()


@pytest.mark.parametrize("bad", [{"spotlight_number": 0}, {"spotlight_number": 9},
                                 {"spotlight_focus_rid": "r9"}, {"spotlight_unfocus_rid": 2}])
def test_bad_spotlight_connect_parameters(bad):
    """What the official clients check before sending, the server checks again (a raw
    WebSocket client can send anything): INVALID-PARAMETER."""
    from sora_ffi.devserver.params import ProtocolError, parse_connect
    msg = {"type": "connect", "role": "recvonly", "channel_id": "c", "spotlight": True, **bad}
    with pytest.raises(ProtocolError, match="INVALID-PARAMETER"):
        parse_connect(msg)
    assert parse_connect({"type": "connect", "role": "sendonly", "channel_id": "c", "spotlight": True}).simulcast


# ------------------------------------------------------------------------- Chromium
def test_chromium_spotlight_sender_takes_focus_by_its_voice(ffi, server, channel_id, clients, browser_peer):
    """sora-js-sdk in Chromium as a spotlight sender (its page plays a steady 440 Hz tone;
    libwebrtc writes the audio level): it takes focus from a silent sora_ffi sender that
    joined first, and a sora_ffi receiver gets its video at its top layer (Chromium sends
    r0 and r1 of 640x360) and the other at r0."""
    silent, sources = spotlight_sender(ffi, server, channel_id, clients)
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True, video=True, spotlight=True)
    receiver.connect()
    receiver.wait_notify("spotlight.focused", connection_id=silent.connection_id)
    with Media([sources]):
        peer = browser_peer()
        chromium_id = peer.connect(server.signaling_url, channel_id, "sendonly", spotlight=True, simulcast=True,
                                   spotlightNumber=1, videoCodecType="VP8")
        t0 = time.monotonic()
        receiver.wait_notify("spotlight.focused", timeout=5, connection_id=chromium_id)
        took = time.monotonic() - t0
        receiver.wait_for(lambda: sum(t.kind == "video" for t in receiver.tracks) == 2, what="2 video tracks")
        widths = Widths(ffi, receiver)
        widths.attach_all()
        receiver.wait_for(lambda: widths.of(chromium_id) == TOP
                          and widths.of(silent.connection_id) == SIZES["r0"], 5, "the layers of the focus")
    print(f"\nChromium focused {took:.2f} s after its connect returned")
    events = focus_events(receiver)
    assert events[-2:] == [("spotlight.unfocused", silent.connection_id), ("spotlight.focused", chromium_id)]


def test_chromium_spotlight_receiver_follows_focus(ffi, server, channel_id, clients, browser_peer):
    """sora-js-sdk in Chromium as a spotlight receiver of two sora_ffi senders: when the
    second speaks, Chromium decodes it at its top layer (r1, 320 wide) and the first at r0,
    across the layer switch the dev server makes (picture IDs renumbered)."""
    made = [spotlight_sender(ffi, server, channel_id, clients) for _ in range(2)]
    (a, _), (b, _) = made
    peer = browser_peer()
    peer.connect(server.signaling_url, channel_id, "recvonly", spotlight=True, spotlightNumber=1,
                 spotlightFocusRid="r2", spotlightUnfocusRid="r0", simulcast=True)
    ssrc = {c.connection_id: server_session(server, c.connection_id).out_ssrc["video"] for c in (a, b)}

    def widths():
        return {s.get("ssrc"): s.get("frameWidth") for s in peer.stats("inbound-rtp", "video")}

    def wait(wa, wb, what):
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            w = widths()
            if (w.get(ssrc[a.connection_id]), w.get(ssrc[b.connection_id])) == (wa, wb):
                return
            time.sleep(0.1)
        raise AssertionError(f"{what}: {w}")

    with Media([s for _, s in made]) as media:
        wait(TOP, 160, "the first sender focused")
        media.speaker = 1
        wait(160, TOP, "the second sender focused once it speaks")
