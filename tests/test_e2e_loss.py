"""Media under 5 % packet loss: video keeps decoding (NACK/retransmission and PLI at work)
and audio continues.

One peer runs inside a network namespace joined to the host by a veth pair; once both peers
are connected, iptables in the namespace drops 5 % of UDP packets at random in each direction (this kernel has no
sch_netem, so `tc netem` cannot be used; the statistic match drops packets the same way).
Signaling is TCP and unaffected. Each peer is its own process (tests/media_peer.py); the
dev server runs here, on the host side of the veth.

Needs root, `ip` and `iptables` (CI installs them and sets SORA_FFI_REQUIRE_NETNS=1, which
turns a missing prerequisite into a failure instead of a skip).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import openh264_path
from sora_ffi.devserver import DevServer

PEER = str(Path(__file__).with_name("media_peer.py"))
ROOT = str(Path(__file__).resolve().parents[1])
LOSS = 0.05
FRAMES = 150  # 5 s at 30 fps


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


class LossyLink:
    """A namespace `ns` linked to the host: host side `host_ip`, namespace side `ns_ip`.
    `start_loss()` drops `loss` of UDP at random both ways inside the namespace."""

    def __init__(self, loss: float):
        self.loss = loss
        tag = f"{os.getpid() % 10000}{random.randrange(1000)}"
        self.ns = f"sffi{tag}"
        host_if, ns_if = f"sfh{tag}", f"sfn{tag}"
        self.ns_if = ns_if
        a, b = random.randrange(1, 255), random.randrange(0, 64) * 4
        self.host_ip, self.ns_ip = f"10.{a}.{b}.1", f"10.{a}.{b}.2"
        _run("ip", "netns", "add", self.ns)
        try:
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", self.ns)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            ns = ("ip", "netns", "exec", self.ns)
            _run(*ns, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", ns_if)
            _run(*ns, "ip", "link", "set", ns_if, "up")
            _run(*ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def start_loss(self) -> None:
        for chain in ("INPUT", "OUTPUT"):
            _run("ip", "netns", "exec", self.ns, "iptables", "-A", chain, "-p", "udp", "-m", "statistic",
                 "--mode", "random", "--probability", str(self.loss), "-j", "DROP")

    def shape(self, rate: str, queue_ms: int = 500) -> None:
        """Limits what leaves the namespace to `rate` (tc tbf, e.g. "1mbit"): a bottleneck
        with a queue of `queue_ms`, whose overflow is dropped."""
        _run("ip", "netns", "exec", self.ns, "tc", "qdisc", "replace", "dev", self.ns_if, "root",
             "tbf", "rate", rate, "burst", "16kb", "latency", f"{queue_ms}ms")

    #: every packet of any protocol, both ways: the namespace drops off the network
    _CUT = (("INPUT", "-j", "DROP"), ("OUTPUT", "-j", "DROP"))

    def cut(self) -> None:
        """Everything in and out of the namespace is dropped (TCP too) until restore()."""
        for rule in self._CUT:
            _run("ip", "netns", "exec", self.ns, "iptables", "-I", *rule)

    def restore(self) -> None:
        for rule in self._CUT:
            _run("ip", "netns", "exec", self.ns, "iptables", "-D", *rule)

    def close(self) -> None:
        # deleting the namespace deletes its end of the veth, and with it the host end
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)


@pytest.fixture
def lossy_link():
    why = _missing_prerequisite()
    if why:
        if os.environ.get("SORA_FFI_REQUIRE_NETNS"):
            pytest.fail(why)
        pytest.skip(why)
    link = LossyLink(LOSS)
    try:
        yield link
    finally:
        link.close()


def _peer(role: str, url: str, channel: str, netns: str | None, codec: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, PEER, role, "--url", url, "--channel", channel,
           "--frames", str(FRAMES), "--codec", codec, *extra]
    if codec == "H264":
        cmd += ["--openh264", openh264_path()]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    # the peer imports sora_ffi from this checkout, as the tests do
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise AssertionError(f"{role} peer did not connect:\n{proc.communicate()[1][-3000:]}")
    return proc


def _report(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"peer failed ({proc.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("codec", ["VP8", "VP9", "H264", "AV1"])
@pytest.mark.parametrize("lossy", ["receiver", "sender"])
def test_media_survives_5_percent_loss(lossy_link, channel_id, lossy, codec):
    _check_media_under_loss(lossy_link, channel_id, lossy, codec, "sora_ffi")


def test_official_receiver_repaired_by_the_sfu(lossy_link, channel_id):
    """A libwebrtc receiver (the official SDK) behind the lossy link is repaired from the
    SFU's packet cache, as a sora_ffi receiver is: its NACKs are answered (nothing stays
    lost) and the pictures and the tone come through."""
    pytest.importorskip("sora_sdk")
    _check_media_under_loss(lossy_link, channel_id, "receiver", "VP8", "sora_sdk")


def _run_peers(lossy_link, channel_id, lossy: str, codec: str, recv_args: tuple = (),
               send_args: tuple = (), loss_after: float = 0.0, loss: bool = True) -> tuple[dict, dict]:
    """A dev server on the host side, a receiving and a sending media_peer (the `lossy` one in
    the namespace), the loss switched on once both are connected (and `loss_after` seconds
    into the media; never without `loss`): (receiver's, sender's) report."""
    with DevServer(host=lossy_link.host_ip, bind_address=lossy_link.host_ip, ping_interval=5.0) as server:
        url = server.signaling_url
        procs = []
        try:
            recv = _peer("recv", url, channel_id, lossy_link.ns if lossy == "receiver" else None, codec,
                         *recv_args)
            procs.append(recv)
            send = _peer("send", url, channel_id, lossy_link.ns if lossy == "sender" else None, codec,
                         *send_args)
            procs.append(send)
            if "--units" in recv_args:  # media_peer's encoded receiver says when it has the track
                assert recv.stdout.readline().strip() == "subscribed"
            # Media under loss is measured here; set-up under loss only tests DTLS back-off
            # (OpenSSL's 1 s, 2 s, 4 s... in libdatachannel), which can take many seconds.
            if loss and not loss_after:
                lossy_link.start_loss()
            send.stdin.write("go\n")
            send.stdin.flush()
            if loss and loss_after:
                time.sleep(loss_after)
                lossy_link.start_loss()
            return _report(recv, FRAMES / 30 + 30), _report(send, 30)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def _check_media_under_loss(lossy_link, channel_id, lossy: str, codec: str, receiver_sdk: str) -> None:
    got, sent = _run_peers(lossy_link, channel_id, lossy, codec, ("--sdk", receiver_sdk))
    iv, ia, ov = got["video"], got["audio"], sent["video"]
    print(f"\n{codec}, 5 % loss at the {lossy}: {got['distinct']}/{FRAMES} frames decoded "
          f"({got['in_order']} in order, {got['unreadable']} unreadable), {got['fps']:.1f} fps, "
          f"longest gap {got['longest_gap_ms']:.0f} ms, PSNR median {got['psnr_median']:.1f} "
          f"min {got['psnr_min']:.1f} dB; video packets lost {iv.get('packetsLost')} "
          f"of {iv.get('packetsReceived')} received, NACKs sent {iv.get('nackCount')}, "
          f"retransmitted {ov.get('retransmittedPacketsSent')}, PLIs sent {iv.get('pliCount')} "
          f"(sender saw {ov.get('pliCount')}, keyframes {ov.get('keyFramesEncoded')}); "
          f"audio {got['audio_seconds']:.1f} s received, tone in {got['tone_presence']:.0%} "
          f"of 20 ms windows, packets lost {ia.get('packetsLost')}; damaged pictures "
          f"{got['damaged']}, missing frames {got['missing']}")
    encoded = ov.get("framesEncoded", 0)
    encode_ms = 1000 * ov.get("totalEncodeTime", 0) / max(1, encoded)
    print(f"sender: {encode_ms:.1f} ms per encoded frame ({encoded} encoded until its report)")
    # Video keeps decoding: pictures are intact, no long freeze (frame counts below). A
    # damaged picture reads far below these floors.
    assert got["psnr_min"] >= 25 and got["psnr_median"] >= 30
    assert got["longest_gap_ms"] < 1000
    # Loss really happened and was repaired by retransmission: from the SFU's cache when
    # the loss is between SFU and receiver, from the sender when it is before the SFU.
    assert iv["nackCount"] > 0
    assert iv["packetsLost"] <= 0.01 * iv["packetsReceived"]
    if lossy == "sender":
        assert ov["retransmittedPacketsSent"] > 0
    # Audio continues (Opus concealment fills the lost packets).
    assert got["audio_seconds"] >= 0.8 * FRAMES / 30
    assert got["tone_presence"] >= 0.9
    # ...and nearly every frame pushed arrives, at full rate, unless the sender's encoder had
    # no CPU time for them: when a frame takes longer to encode than the next one takes to
    # come, the source replaces the waiting frame. That is this host's limit, not loss (the
    # packet counts above hold): when no more frames are missing than the encoder skipped,
    # it is reported as an expected failure with the encode time (docs/design.md, "Tests
    # tell CPU limits from loss"). Frames missing beyond those are lost, and fail.
    # AV1: libaom's realtime encoder leaves parts of some frame codes stale (test_e2e_media,
    # docs/codecs.md); those frames were decoded and count, up to a bound.
    damaged_codes = got["unreadable"] if codec == "AV1" else 0
    assert damaged_codes <= 0.15 * FRAMES
    distinct, in_order = got["distinct"] + damaged_codes, got["in_order"] + damaged_codes
    full = distinct >= 0.9 * FRAMES and in_order >= 0.9 * FRAMES and got["fps"] >= 25
    skipped = sent["frames_pushed"] - encoded
    if not full:
        # A busy encoder also answers a keyframe request late: when the receiver had to ask
        # for one beyond its first (a packet lost twice: once, and in its retransmission),
        # the frames until that keyframe arrives are missing too (seen: 7 at 26 ms per VP9
        # frame).
        recovery = 10 if iv.get("pliCount", 0) > 1 else 0
        assert FRAMES - distinct <= skipped + 5 + recovery, (
            f"{FRAMES - distinct} frames missing, more than the {skipped} the encoder skipped")
        pytest.xfail(f"{codec}: {got['distinct']} of {FRAMES} frames; the sender's encoder skipped "
                     f"{skipped} of {sent['frames_pushed']} at {encode_ms:.1f} ms per frame: this host's CPU")
    assert distinct >= 0.9 * FRAMES
    assert in_order >= 0.9 * FRAMES
    assert got["fps"] >= 25


@pytest.mark.parametrize("lossy", ["receiver", "sender"])
def test_h265_access_units_survive_5_percent_loss(lossy_link, channel_id, lossy, tmp_path):
    """H.265 from an encoded source (x265's stream, 150 access units, keyframe every 30)
    under 5 % loss: retransmission repairs nearly everything, and what the receiver's
    depacketizer emits is always a sent access unit byte for byte, in order (a unit it
    cannot complete is never emitted)."""
    from test_h265 import encode_hevc
    aus = encode_hevc(tmp_path, FRAMES)
    units = tmp_path / "units.bin"
    units.write_bytes(b"".join(len(u).to_bytes(4, "big") + u for u in aus))
    # The sender starts once the receiver has the track, and the first access unit goes
    # through before the loss starts: a unit the receiver never saw begin cannot be asked for
    # again (it never learns those sequence numbers), and the keyframe request that follows
    # is answered by a stored stream only at its next keyframe (unit 30: 120/150, seen in CI).
    # Every later unit crosses the 5 % loss.
    got, sent = _run_peers(lossy_link, channel_id, lossy, "H265", ("--units", str(units)),
                           ("--units", str(units)), loss_after=0.2)
    indices, iv, ov = got["indices"], got["video"], sent["video"]
    print(f"\nH.265, 5 % loss at the {lossy}: {len(set(indices))}/{FRAMES} access units, "
          f"packets lost {iv.get('packetsLost')} of {iv.get('packetsReceived')}, NACKs "
          f"{iv.get('nackCount')}, retransmitted {ov.get('retransmittedPacketsSent')}, "
          f"keyframe requests {sent['keyframe_requests']}")
    assert -1 not in indices, f"an access unit that is not one of those sent was emitted: {indices}"
    assert indices == sorted(set(indices)), "out of order or twice"
    assert len(indices) >= 0.9 * FRAMES
    assert iv["nackCount"] > 0 and iv["packetsLost"] <= 0.01 * iv["packetsReceived"]


def test_a_lost_last_dtls_flight_is_sent_again(lossy_link, channel_id):
    """A sora_ffi client is the DTLS server (it answers a=setup:passive), so its handshake
    is over once it has sent its last flight (ChangeCipherSpec + Finished). That datagram
    is dropped once: the dev server repeats its own flight after its retransmission timer,
    and the client, whose handshake buffers are gone by then (OpenSSL here frees them when a
    handshake ends: openssl-src-dtls-buffers-on-demand.patch), answers from its stored
    flight with a buffer made for it. The connection comes up and the video flows."""
    link = lossy_link
    # The client's handshake datagrams (first byte 0x16: a handshake record): its first
    # flight (ServerHello ... ServerHelloDone), then its last (NewSessionTicket,
    # ChangeCipherSpec, Finished). The second one is dropped.
    last_flight = ("-p", "udp", "-m", "u32", "--u32", "0>>22&0x3C@8>>24=0x16",
                   "-m", "statistic", "--mode", "nth", "--every", "1000000", "--packet", "1", "-j", "DROP")
    _run("ip", "netns", "exec", link.ns, "iptables", "-A", "OUTPUT", *last_flight)
    got, _ = _run_peers(link, channel_id, "receiver", "VP8", loss=False)
    counters = subprocess.run(["ip", "netns", "exec", link.ns, "iptables", "-L", "OUTPUT", "-v", "-n", "-x"],
                              check=True, capture_output=True, text=True).stdout
    dropped = int(next(line for line in counters.splitlines() if "u32" in line).split()[0])
    print(f"\n{dropped} last flight dropped; {got['distinct']}/{FRAMES} frames decoded")
    assert dropped == 1  # the flight was lost, so it was sent again
    assert got["distinct"] >= 0.9 * FRAMES
