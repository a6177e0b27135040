"""The main job in one command: ``python -m sora_ffi.demo``.

Starts the embedded dev server, connects two sora_ffi clients to one channel with
DataChannel signaling, exchanges a message each way on ``#chat``, prints what happened
(notifies, messages, how each session ended) and disconnects.
"""
from __future__ import annotations

import json
import threading
import time

import sora_ffi
from sora_ffi.devserver import DevServer

LABEL = "#chat"


class Participant:
    """One client with its callbacks recorded (callbacks run on the dispatcher thread)."""

    def __init__(self, sora: sora_ffi.Sora, url: str, name: str) -> None:
        self.name = name
        self.received: list[bytes] = []
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.conn = sora.create_connection(
            signaling_urls=[url], role="sendrecv", channel_id="demo", client_id=name,
            audio=False, video=False, data_channel_signaling=True,
            data_channels=[{"label": LABEL, "direction": "sendrecv"}],
        )
        self.conn.on_data_channel = self._on_data_channel
        self.conn.on_notify = lambda text: print(f"{name}: notify {json.loads(text)['event_type']}")
        self.conn.on_message = lambda label, data: self.received.append(data)
        self.conn.on_disconnect = self._on_disconnect

    def _on_data_channel(self, label: str) -> None:
        if label == LABEL:
            self.opened.set()

    def _on_disconnect(self, code: sora_ffi.SoraSignalingErrorCode, message: str) -> None:
        print(f"{self.name}: disconnected {code.name}: {message}")
        self.ended.set()

    def connect(self) -> bool:
        started = time.perf_counter()
        self.conn.connect()
        if not (self.conn.wait_connected(10) and self.opened.wait(5)):
            return False
        print(f"{self.name}: connected as {self.conn.connection_id} in {(time.perf_counter() - started) * 1e3:.1f} ms")
        return True


def main() -> int:
    with DevServer() as server:
        print(f"dev server: {server.signaling_url}")
        sora = sora_ffi.Sora()
        alice, bob = Participant(sora, server.signaling_url, "alice"), Participant(sora, server.signaling_url, "bob")
        if not (alice.connect() and bob.connect()):
            print("demo FAILED: could not connect")
            return 1
        alice.conn.send_data_channel(LABEL, b"hello from alice")
        bob.conn.send_data_channel(LABEL, b"hello from bob")
        deadline = time.monotonic() + 5
        while not (alice.received and bob.received) and time.monotonic() < deadline:
            time.sleep(0.01)
        for p in (alice, bob):
            print(f"{p.name} received on {LABEL}: {[m.decode() for m in p.received]}")
            p.conn.disconnect()
        ended = all(p.ended.wait(5) for p in (alice, bob))
    ok = ended and alice.received == [b"hello from bob"] and bob.received == [b"hello from alice"]
    print("demo", "succeeded" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
