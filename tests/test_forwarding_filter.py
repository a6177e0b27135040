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
