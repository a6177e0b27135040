"""A Sora-compatible development server (``python -m sora_ffi.devserver``).

Signaling (WebSocket, DataChannel signaling, notify/push, messaging relay, auth, HTTP API)
is Python; the WebRTC peers are the native shim's ``sora_peer_*`` objects. See
``docs/devserver.md``.
"""
from .process import DevServerProcess
from .server import AsyncDevServer, DevServer, DevServerConfig

__all__ = ["AsyncDevServer", "DevServer", "DevServerConfig", "DevServerProcess"]
