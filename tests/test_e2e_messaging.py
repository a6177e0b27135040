"""DataChannel messaging between every pair of SDKs (official ↔ sora_ffi, ffi ↔ ffi,
official ↔ official): exact bytes both ways, the sender_connection_id header, compression,
direction enforcement and send_data_channel's return value (scenario 2)."""
from __future__ import annotations

import os
import time

import pytest

PAYLOADS = [
    b"hello",
    "はむ — UTF-8".encode(),
    bytes(range(256)),  # every byte value, NUL included
    b"",  # empty message
    os.urandom(64 * 1024),
]


def _messaging(sdk, server, channel_id, clients, *, label="#chat", direction="sendrecv",
               mode_kw=None, **entry):
    dc = {"label": label, "direction": direction, **entry}
    return clients(sdk, server, channel_id, "sendrecv", data_channel_signaling=True,
                   data_channels=[dc], **(mode_kw or {}))


@pytest.mark.parametrize("dconly", [False, True], ids=["hybrid", "dconly"])
def test_messages_both_ways(sdk, sdk2, server, channel_id, clients, dconly):
    mode_kw = {"ignore_disconnect_websocket": True} if dconly else {}
    a = _messaging(sdk, server, channel_id, clients, mode_kw=mode_kw).connect()
    b = _messaging(sdk2, server, channel_id, clients, mode_kw=mode_kw).connect()
    a.wait_dc("#chat")
    b.wait_dc("#chat")
    for p in PAYLOADS:
        assert a.conn.send_data_channel("#chat", p) is True
    for p in PAYLOADS:
        assert b.conn.send_data_channel("#chat", p) is True
    got_b = b.wait_messages(len(PAYLOADS))
    got_a = a.wait_messages(len(PAYLOADS))
    # ordered reliable channel: exact bytes, in order, nothing echoed to the sender
    assert got_b == [("#chat", p) for p in PAYLOADS]
    assert got_a == [("#chat", p) for p in PAYLOADS]
    assert all(type(d) is bytes for _, d in got_a + got_b)


def test_sender_connection_id_header(sdk, sdk2, server, channel_id, clients):
    """A receiving entry with header sender_connection_id gets the sender's 26-byte
    connection id in front of each message; one without it gets the bare payload."""
    hdr = [{"type": "sender_connection_id"}]
    sender = _messaging(sdk, server, channel_id, clients, label="#h", direction="sendonly").connect()
    with_hdr = _messaging(sdk2, server, channel_id, clients, label="#h", header=hdr).connect()
    plain = _messaging(sdk2, server, channel_id, clients, label="#h", direction="recvonly").connect()
    assert with_hdr.offer["data_channels"][-1] == {
        "label": "#h", "direction": "sendrecv", "compress": False, "header": hdr}
    for c in (sender, with_hdr, plain):
        c.wait_dc("#h")
    assert sender.conn.send_data_channel("#h", b"one") is True
    assert with_hdr.conn.send_data_channel("#h", b"two") is True
    got = with_hdr.wait_messages(1)
    assert got == [("#h", sender.connection_id.encode() + b"one")]
    label, data = got[0]
    assert len(sender.connection_id) == 26 and data[:26].decode() == sender.connection_id
    got_plain = plain.wait_messages(2)
    assert sorted(got_plain) == sorted([("#h", b"one"), ("#h", b"two")])
    assert sender.messages == []  # sendonly label: never receives


@pytest.mark.parametrize("compress", [(True, True), (True, False), (False, True)],
                         ids=["both", "sender", "receiver"])
def test_compress(sdk, sdk2, server, channel_id, clients, compress):
    """compress:true (zlib on the wire) is transparent to the application, also when only
    one side compresses; with a header, the header is inside the compressed payload."""
    hdr = [{"type": "sender_connection_id"}]
    a = _messaging(sdk, server, channel_id, clients, label="#z", compress=compress[0]).connect()
    b = _messaging(sdk2, server, channel_id, clients, label="#z", compress=compress[1],
                   header=hdr).connect()
    assert a.offer["data_channels"][-1]["compress"] is compress[0]
    assert b.offer["data_channels"][-1]["compress"] is compress[1]
    a.wait_dc("#z")
    b.wait_dc("#z")
    text = b"compressible " * 2000
    blob = os.urandom(10000)
    for p in (text, blob):
        assert a.conn.send_data_channel("#z", p) is True
    assert b.conn.send_data_channel("#z", b"reply") is True
    assert b.wait_messages(2) == [("#z", a.connection_id.encode() + text),
                                  ("#z", a.connection_id.encode() + blob)]
    assert a.wait_messages(1) == [("#z", b"reply")]


def test_direction_enforcement(sdk, server, channel_id, clients):
    """A sendonly entry never receives, a recvonly entry never gets its sends delivered.
    send_data_channel on a recvonly entry returns True in the official SDK (the server
    drops the message); sora_ffi must behave the same."""
    kw = dict(data_channel_signaling=True)
    a = clients(sdk, server, channel_id, data_channels=[
        {"label": "#s", "direction": "sendonly"},
        {"label": "#r", "direction": "recvonly"},
        {"label": "#m", "direction": "sendrecv"}], **kw).connect()
    b = clients(sdk, server, channel_id, data_channels=[
        {"label": "#s", "direction": "sendrecv"},
        {"label": "#r", "direction": "sendrecv"},
        {"label": "#m", "direction": "sendrecv"}], **kw).connect()
    for c in (a, b):
        for label in ("#s", "#r", "#m"):
            c.wait_dc(label)
    assert b.conn.send_data_channel("#s", b"to a's sendonly") is True
    assert a.conn.send_data_channel("#r", b"from a's recvonly") is True  # as sora_sdk
    assert a.conn.send_data_channel("#s", b"from a's sendonly") is True
    assert b.conn.send_data_channel("#r", b"to a's recvonly") is True
    # markers after the blocked ones, on an unrestricted label, both ways
    assert b.conn.send_data_channel("#m", b"marker-b") is True
    assert a.conn.send_data_channel("#m", b"marker-a") is True
    a.wait_for(lambda: ("#m", b"marker-b") in a.messages, what="marker at a")
    b.wait_for(lambda: ("#m", b"marker-a") in b.messages, what="marker at b")
    time.sleep(0.2)
    assert sorted(a.messages) == [("#m", b"marker-b"), ("#r", b"to a's recvonly")]
    assert sorted(b.messages) == [("#m", b"marker-a"), ("#s", b"from a's sendonly")]


def test_send_before_open_and_after_end(sdk, server, channel_id, clients):
    a = _messaging(sdk, server, channel_id, clients)
    assert a.conn.send_data_channel("#chat", b"too early") is False  # before connect()
    a.connect(wait=False)
    b = _messaging(sdk, server, channel_id, clients).connect()
    a.wait_connected()
    a.wait_dc("#chat")
    b.wait_dc("#chat")
    assert a.conn.send_data_channel("#chat", b"now") is True
    assert b.wait_messages(1) == [("#chat", b"now")]
    a.disconnect()
    if sdk.__name__ == "sora_ffi":
        # sora_sdk 2025.4.0 segfaults on send_data_channel after disconnect: not called
        assert a.conn.send_data_channel("#chat", b"too late") is False  # after the end
    time.sleep(0.1)
    assert b.messages == [("#chat", b"now")]


def test_send_unknown_label_ffi(ffi, server, channel_id, clients):
    """sora_ffi returns False for a label that was not negotiated (and for ws-only sessions).
    (The official SDK returns True there and sends nothing.)"""
    a = _messaging(ffi, server, channel_id, clients).connect()
    b = _messaging(ffi, server, channel_id, clients).connect()
    a.wait_dc("#chat")
    b.wait_dc("#chat")
    assert a.conn.send_data_channel("#other", b"x") is False
    assert a.conn.send_data_channel("#chat", b"y") is True
    assert b.wait_messages(1) == [("#chat", b"y")]
    ws_only = clients(ffi, server, channel_id).connect()
    assert ws_only.conn.send_data_channel("#chat", b"z") is False
    with pytest.raises(TypeError):
        a.conn.send_data_channel("#chat", "str is not bytes")
    with pytest.raises(TypeError):
        a.conn.send_data_channel(b"#chat", b"label must be str")
    assert a.conn.send_data_channel("#chat", bytearray(b"ba")) is True
    assert a.conn.send_data_channel("#chat", memoryview(b"mv")) is True
    assert b.wait_messages(3)[1:] == [("#chat", b"ba"), ("#chat", b"mv")]


def test_max_message_size(sdk, server, channel_id, clients):
    """262144 bytes (the offer's a=max-message-size) are delivered intact."""
    a = _messaging(sdk, server, channel_id, clients).connect()
    b = _messaging(sdk, server, channel_id, clients).connect()
    a.wait_dc("#chat")
    b.wait_dc("#chat")
    big = os.urandom(262144)
    assert a.conn.send_data_channel("#chat", big) is True
    assert b.wait_messages(1) == [("#chat", big)]


def test_as_many_labels_as_the_sctp_streams_allow(sdk, sdk2, server, channel_id, clients):
    """The dev server opens every DataChannel on the 256 SCTP streams libdatachannel
    negotiates (each side's ids of one parity: 128 channels). With the most messaging labels
    that leaves room for (rpc included), every label opens on both SDKs, also against
    libwebrtc's 1024 streams, and the highest stream carries messages both ways."""
    from sora_ffi.devserver.params import MAX_MESSAGING_LABELS
    dcs = [{"label": f"#l{n}", "direction": "sendrecv"} for n in range(MAX_MESSAGING_LABELS)]
    a = clients(sdk, server, channel_id, "sendrecv", data_channel_signaling=True, data_channels=dcs).connect()
    b = clients(sdk2, server, channel_id, "sendrecv", data_channel_signaling=True, data_channels=dcs).connect()
    last = dcs[-1]["label"]
    for c in (a, b):
        c.wait_for(lambda c=c: all(d["label"] in c.data_channels for d in dcs), 10, "every label open")
    assert a.conn.send_data_channel(last, b"from a") is True
    assert b.conn.send_data_channel(last, b"from b") is True
    assert b.wait_messages(1) == [(last, b"from a")]
    assert a.wait_messages(1) == [(last, b"from b")]


def test_more_labels_than_streams_are_refused(sdk, server, channel_id, clients):
    """One messaging label more than the streams leave room for: a clear 4400 at connect
    (it once left the client waiting for DataChannels that could never open)."""
    from sora_ffi.devserver.params import MAX_MESSAGING_LABELS
    dcs = [{"label": f"#l{n}", "direction": "sendrecv"} for n in range(MAX_MESSAGING_LABELS + 1)]
    c = clients(sdk, server, channel_id, "sendrecv", data_channel_signaling=True, data_channels=dcs)
    c.connect(wait=False)
    code, message = c.wait_disconnected()
    assert "4400" in message and f"at most {MAX_MESSAGING_LABELS}" in message, message
