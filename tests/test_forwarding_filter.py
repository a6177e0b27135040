"""Forwarding filters in the dev server (sora-protocol.md §2.1, issue 11 §4): a receiver's
filters decide which senders' audio and video it gets; filters from the auth result
replace those of its connect.
"""
from __future__ import annotations

import time

import jwt
import numpy as np
import pytest

from conftest import _OFFICIAL_GRAVEYARD
from sora_ffi import testpattern
from test_e2e_media import VideoReceiver

SECRET = "forwarding-filter-secret-long-enough-for-hs256"


def sender(ffi, server, channel_id, clients, client_id: str, **kw):
    sora = ffi.Sora()
    vsrc = sora.create_video_source()
    asrc = sora.create_audio_source(1, 48000)
    c = clients(ffi, server, channel_id, "sendonly", sora=sora, client_id=client_id, audio=True,
                video=True, video_codec_type="VP8", video_source=vsrc, audio_source=asrc, **kw)
    return c.connect(), vsrc, asrc


def received(client) -> set:
    """(sender client_id, kind) of the receiver's tracks, by the notifies naming the senders."""
    by_connection = {}
    for n in client.notifies:
        if n.get("event_type") == "connection.created":
            for entry in [n, *(n.get("data") or [])]:
                if entry.get("connection_id"):
                    by_connection[entry["connection_id"]] = entry.get("client_id")
    return {(by_connection.get(t.stream_id, t.stream_id), t.kind) for t in client.tracks}


def test_a_block_filter_withholds_what_its_rules_match(sdk, ffi, server, channel_id, clients):
    """alice's video is blocked (client_id AND kind), her audio and bob's video are not;
    bob's video is decoded, alice's audio heard."""
    rules = [[{"field": "client_id", "operator": "is_in", "values": ["alice"]},
              {"field": "kind", "operator": "is_in", "values": ["video"]}]]
    receiver = clients(sdk, server, channel_id, "recvonly", audio=True, video=True,
                       forwarding_filters=[{"action": "block", "rules": rules}]).connect()
    alice, _, alice_audio = sender(ffi, server, channel_id, clients, "alice")
    bob, bob_video, _ = sender(ffi, server, channel_id, clients, "bob")
    receiver.wait_for(lambda: len(receiver.tracks) >= 3, 5, "three tracks")
    time.sleep(0.3)  # a fourth would have come with the same re-offer
    assert received(receiver) == {("alice", "audio"), ("bob", "audio"), ("bob", "video")}
    video = next(t for t in receiver.tracks if t.kind == "video")
    assert video.stream_id == bob.connection_id
    audio = next(t for t in receiver.tracks if t.kind == "audio" and t.stream_id == alice.connection_id)
    sink = sdk.SoraAudioSink(audio, 48000, 1)
    if sdk.__name__ == "sora_sdk":
        _OFFICIAL_GRAVEYARD.append(sink)
    rx = VideoReceiver(sdk, receiver, 640)
    with testpattern.PatternFeeder(bob_video), testpattern.ToneFeeder(alice_audio):
        receiver.wait_for(lambda: len(rx.indices) >= 20, 5, "bob's frames")
        sink.read(0, 0)
        ok, pcm = sink.read(4800, 2.0)
    assert ok and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > 1000


def test_the_auth_results_allow_filter_replaces_the_connects(ffi, make_server, channel_id, clients):
    """An allow filter lets through only what it matches: bob's tracks (is_not_in: every
    sender but alice); the connect's own filter (blocking bob) is replaced."""
    server = make_server(jwt_secret=SECRET)
    allow = {"action": "allow", "priority": 1,
             "rules": [[{"field": "client_id", "operator": "is_not_in", "values": ["alice"]}]]}
    claims = {"channel_id": channel_id, "exp": int(time.time() + 60), "forwarding_filters": [allow]}
    block_bob = {"rules": [[{"field": "client_id", "operator": "is_in", "values": ["bob"]}]]}
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True, video=True,
                       metadata={"access_token": jwt.encode(claims, SECRET, algorithm="HS256")},
                       forwarding_filter=block_bob).connect()
    token = {"access_token": jwt.encode({"channel_id": channel_id, "exp": int(time.time() + 60)},
                                        SECRET, algorithm="HS256")}
    sender(ffi, server, channel_id, clients, "alice", metadata=token)
    sender(ffi, server, channel_id, clients, "bob", metadata=token)
    receiver.wait_for(lambda: len(receiver.tracks) >= 2, 5, "bob's tracks")
    time.sleep(0.3)
    assert received(receiver) == {("bob", "audio"), ("bob", "video")}


@pytest.mark.parametrize("bad", [
    {"forwarding_filter": {"rules": [[{"field": "ip", "operator": "is_in", "values": ["x"]}]]}},
    {"forwarding_filter": {"action": "drop", "rules": [[{"field": "kind", "operator": "is_in", "values": ["audio"]}]]}},
    {"forwarding_filters": [{"rules": [[{"field": "kind", "operator": "is_in", "values": ["data"]}]]}]},
    {"forwarding_filters": [{"rules": []}]},
])
def test_a_bad_filter_is_refused(ffi, server, channel_id, clients, bad):
    c = clients(ffi, server, channel_id, "recvonly", audio=True, **bad)
    c.connect(wait=False)
    c.wait_disconnected()
    assert c.ws_closes and c.ws_closes[0][0] == 4400 and "INVALID-PARAMETER" in c.ws_closes[0][1]


def _frames_from(sdk, track) -> list:
    """Indices of the test-pattern frames decoded from ``track``."""
    got: list = []

    def on_frame(frame):
        code = testpattern.read_code(frame.data(), 640)
        if code is not None:
            got.append(code[0])

    sink = sdk.SoraVideoSink(track)
    sink.on_frame = on_frame
    got.append(sink)  # kept alive with the list; never a frame index
    if sdk.__name__ == "sora_sdk":
        _OFFICIAL_GRAVEYARD.append(sink)
    return got


def _count(frames: list) -> int:
    return sum(1 for x in frames if isinstance(x, int))


def _reoffers(client) -> int:
    return sum(1 for _, _, m in client.signaling if isinstance(m, dict) and m.get("type") == "re-offer")


def test_the_channel_filter_api_changes_what_receivers_get_at_once(sdk, ffi, server, channel_id, clients):
    """CreateChannelForwardingFilter blocks alice's video for every receiver without a filter
    of its own (re-offered without it: its frames stop), ListForwardingFilters says so, and
    DeleteChannelForwardingFilter brings it back as a new track that decodes. A receiver
    with its own filter goes by that one."""
    alice, alice_video, _ = sender(ffi, server, channel_id, clients, "alice")
    plain = clients(sdk, server, channel_id, "recvonly", audio=False, video=True).connect()
    own = clients(ffi, server, channel_id, "recvonly", audio=False, video=True, forwarding_filters=[
        {"rules": [[{"field": "client_id", "operator": "is_in", "values": ["nobody"]}]]}]).connect()
    ch = {"channel_id": channel_id}
    block_alice = {"action": "block", "name": "no-alice-video", "metadata": {"why": "test"},
                   "rules": [[{"field": "client_id", "operator": "is_in", "values": ["alice"]},
                              {"field": "kind", "operator": "is_in", "values": ["video"]}]]}
    with testpattern.PatternFeeder(alice_video):
        for c in (plain, own):
            c.wait_for(lambda c=c: c.tracks, 5, "alice's video")
        frames = _frames_from(sdk, plain.tracks[0])
        plain.wait_for(lambda: _count(frames) >= 10, 5, "frames before the filter")
        offers = _reoffers(plain), _reoffers(own)
        status, body = server.api("Sora_20230628.CreateChannelForwardingFilter", {**ch, **block_alice})
        assert status == 200 and body["forwarding_filter"] == block_alice
        plain.wait_for(lambda: _reoffers(plain) > offers[0], 5, "a re-offer without alice's video")
        time.sleep(0.3)  # what was in flight
        stopped = _count(frames)
        time.sleep(0.5)
        assert _count(frames) == stopped  # nothing more of alice's video
        assert _reoffers(own) == offers[1]  # its own filter lets alice through: unchanged
        status, body = server.api("Sora_20230628.ListForwardingFilters", {**ch, "blocked": True})
        assert status == 200 and body["channel_forwarding_filter"] == block_alice
        assert body["blocked"] == [{"destination_connection_id": plain.connection_id,
                                    "source_connection_id": alice.connection_id, "kind": "video"}]
        assert [e["connection_id"] for e in body["connection_forwarding_filters"]] == [own.connection_id]
        # a second create is refused; delete brings the video back, on a new track
        assert server.api("Sora_20230628.CreateChannelForwardingFilter", {**ch, **block_alice})[0] == 400
        assert server.api("Sora_20230628.DeleteChannelForwardingFilter", ch) == (200, ch)
        plain.wait_for(lambda: len(plain.tracks) == 2, 5, "alice's video again")
        again = _frames_from(sdk, plain.tracks[1])
        plain.wait_for(lambda: _count(again) >= 10, 5, "frames after the filter went")
    assert server.api("Sora_20230628.UpdateChannelForwardingFilter", {**ch, **block_alice})[0] == 400
    assert server.api("Sora_20230628.DeleteChannelForwardingFilter", ch)[0] == 400


def test_the_connection_filter_api_replaces_the_connects(ffi, server, channel_id, clients):
    """UpdateConnectionForwardingFilter replaces the filter a receiver connected with (bob
    blocked → alice blocked), DeleteConnectionForwardingFilter lifts it; each change is a
    re-offer with the tracks the filter now allows."""
    alice, _, _ = sender(ffi, server, channel_id, clients, "alice")
    bob, _, _ = sender(ffi, server, channel_id, clients, "bob")
    blocks = lambda who: {"rules": [[{"field": "client_id", "operator": "is_in", "values": [who]}]]}  # noqa: E731
    rx = clients(ffi, server, channel_id, "recvonly", audio=True, video=True,
                 forwarding_filter=blocks("bob")).connect()
    rx.wait_for(lambda: len(rx.tracks) >= 2, 5, "alice's tracks")
    assert received(rx) == {("alice", "audio"), ("alice", "video")}
    target = {"channel_id": channel_id, "connection_id": rx.connection_id}
    assert server.api("Sora_20230628.CreateConnectionForwardingFilter", {**target, **blocks("x")})[0] == 400
    status, body = server.api("Sora_20230628.UpdateConnectionForwardingFilter", {**target, **blocks("alice")})
    assert status == 200 and body == {**target, "forwarding_filter": blocks("alice")}
    rx.wait_for(lambda: len(rx.tracks) >= 4, 5, "bob's tracks")
    time.sleep(0.3)
    listed = server.api("Sora_20230628.ListForwardingFilters", {"channel_id": channel_id, "blocked": True})[1]
    assert {(b["source_connection_id"], b["kind"]) for b in listed["blocked"]} == {
        (alice.connection_id, "audio"), (alice.connection_id, "video")}
    assert server.api("Sora_20230628.DeleteConnectionForwardingFilter", target) == (200, target)
    rx.wait_for(lambda: len(rx.tracks) >= 6, 5, "alice's tracks again")
    assert server.api("Sora_20230628.ListForwardingFilters", {"channel_id": channel_id, "blocked": True})[1][
        "blocked"] == []


@pytest.mark.parametrize("target,params,status,words", [
    ("CreateChannelForwardingFilter", {"rules": [[{"field": "ip", "operator": "is_in", "values": ["x"]}]]}, 400,
     "rule field"),
    ("CreateChannelForwardingFilter", {"rules": [[{"field": "kind", "operator": "is_in", "values": ["audio"]}]],
                                       "colour": "red"}, 400, "unknown forwarding filter fields"),
    ("CreateChannelForwardingFilter", {"rules": [[{"field": "kind", "operator": "is_in", "values": ["audio"],
                                                   "extra": 1}]]}, 400, "unknown rule fields"),
    ("CreateChannelForwardingFilter", {"action": "drop", "rules": [[]]}, 400, "action"),
    ("CreateChannelForwardingFilter", {"channel_id": "no-such-channel", "rules": [[]]}, 404, "not found"),
    ("UpdateConnectionForwardingFilter", {"connection_id": "NOSUCHCONNECTION", "rules": [[]]}, 404, "not found"),
    ("ListForwardingFilters", {"blocked": "yes"}, 400, "blocked"),
])
def test_bad_filter_api_requests_are_clear_errors(ffi, server, channel_id, clients, target, params, status, words):
    member = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    got = server.api(f"Sora_20230628.{target}", {"channel_id": channel_id, **params})
    assert got[0] == status and words in got[1]["message"], got
    assert member.conn is not None and not member.disconnected.is_set()  # nothing else happened


def test_a_connection_whose_grants_deny_subscribing_keeps_its_block(ffi, make_server, channel_id, clients):
    """can_subscribe=false is a filter the API cannot lift: Update/Delete are refused and the
    receiver still gets no track."""
    server = make_server(jwt_secret=SECRET)
    claims = {"channel_id": channel_id, "exp": int(time.time() + 60), "grants": {"can_subscribe": False}}
    rx = clients(ffi, server, channel_id, "recvonly", audio=True, video=True,
                 metadata={"access_token": jwt.encode(claims, SECRET, algorithm="HS256")}).connect()
    token = {"access_token": jwt.encode({"channel_id": channel_id, "exp": int(time.time() + 60)},
                                        SECRET, algorithm="HS256")}
    alice, _, _ = sender(ffi, server, channel_id, clients, "alice", metadata=token)
    target = {"channel_id": channel_id, "connection_id": rx.connection_id}
    for api in ("UpdateConnectionForwardingFilter", "DeleteConnectionForwardingFilter"):
        allow_all = {"action": "allow", "rules": [[{"field": "kind", "operator": "is_in", "values": ["audio", "video"]}]]}
        status, body = server.api(f"Sora_20230628.{api}", {**target, **allow_all} if "Update" in api else target)
        assert status == 400 and "grants" in body["message"]
    time.sleep(0.5)
    assert rx.tracks == []
    blocked = server.api("Sora_20230628.ListForwardingFilters", {"channel_id": channel_id, "blocked": True})[1]["blocked"]
    assert {(b["source_connection_id"], b["kind"]) for b in blocked} == {
        (alice.connection_id, "audio"), (alice.connection_id, "video")}
