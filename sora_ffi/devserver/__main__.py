"""Command line: ``python -m sora_ffi.devserver [options]``.

When the server is ready, the first line on stdout is one JSON object (flushed) with at
least ``signaling_url`` and ``api_url``. SIGINT/SIGTERM stop it cleanly (exit status 0).
Logs go to stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Optional

from .._background import serve_until_signalled
from .server import AsyncDevServer, DevServerConfig


def _port_range(text: str) -> tuple:
    try:
        lo, hi = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError("expected LOW-HIGH, e.g. 40000-40100") from None
    if not 1 <= lo <= hi <= 65535:
        raise argparse.ArgumentTypeError("invalid port range")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sora_ffi.devserver",
        description="Sora-compatible development server (signaling, DataChannel signaling, "
                    "messaging, HTTP API).")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="signaling port (0 = a free port)")
    p.add_argument("--api-port", type=int, default=0, help="HTTP API port (0 = a free port)")
    p.add_argument("--no-api", action="store_true", help="do not start the HTTP API")
    p.add_argument("--tls-cert", help="PEM certificate (chain): serve wss:// and https://")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--client-ca", help="PEM CA bundle: require and verify client "
                                       "certificates on the signaling port (mTLS)")
    p.add_argument("--redirect-to", metavar="URL",
                   help="redirect mode: answer every connect without redirect:true with "
                        "{type: redirect, location: URL}")
    p.add_argument("--jwt-secret", help="require an HS256 JWT in metadata.access_token")
    p.add_argument("--auth-webhook", metavar="URL", help="POST auth requests to this URL")
    p.add_argument("--data-channel-signaling", action="store_true",
                   help="default data_channel_signaling for clients that omit it")
    p.add_argument("--ignore-disconnect-websocket", action="store_true",
                   help="default ignore_disconnect_websocket for clients that omit it")
    p.add_argument("--ping-interval", type=float, default=5.0,
                   help="seconds between pings (0 = no pings); no pong within two "
                        "intervals closes the session (4408 PONG-TIMEOUT)")
    p.add_argument("--no-transport-cc", action="store_true",
                   help="offer senders no transport-wide congestion control (they follow the "
                        "server's REMB only)")
    p.add_argument("--bind-address", default="127.0.0.1",
                   help="address the WebRTC peers bind to (default 127.0.0.1)")
    p.add_argument("--port-range", type=_port_range, metavar="LOW-HIGH",
                   help="UDP port range for the WebRTC peers")
    p.add_argument("--establish-timeout", type=float, default=30.0,
                   help="seconds a client has from the offer to being connected")
    p.add_argument("--session-webhook", metavar="URL",
                   help="POST session.created / session.destroyed to this URL")
    a = p.add_argument_group("audio streaming (docs/audio-streaming.md)")
    a.add_argument("--audio-streaming-url", metavar="URL",
                   help="the gateway: http:// (h2c) or https:// (h2), e.g. the one "
                        "python -m sora_ffi.gateway serves")
    a.add_argument("--audio-streaming-header", action="store_true",
                   help="each Opus payload after 20 bytes: Unix µs, sequence number, length")
    a.add_argument("--audio-streaming-tls-cert", metavar="PEM",
                   help="client certificate (chain) for an https:// gateway")
    a.add_argument("--audio-streaming-tls-key", metavar="PEM", help="its private key")
    a.add_argument("--audio-streaming-ca", metavar="PEM",
                   help="CA the gateway's certificate is checked against (default: the system's)")
    a.add_argument("--audio-streaming-keepalive", type=float, default=5.0, metavar="SECONDS",
                   help="HTTP/2 PING interval; a gateway silent for twice that is left and "
                        "connected again (default 5)")
    a.add_argument("--no-default-audio-streaming-result-push", action="store_true",
                   help="connections start unsubscribed from audio streaming results")
    a.add_argument("--audio-streaming-webhooks", action="store_true",
                   help="send audio-streaming.started/.stopped to --session-webhook")
    p.add_argument("--exit-with-stdin", action="store_true",
                   help="stop when standard input closes (the process holding the other end "
                        "of the pipe is gone)")
    p.add_argument("--log-level", default="WARNING",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="stderr log level")
    p.add_argument("-v", "--verbose", action="store_true", help="same as --log-level INFO")
    return p


def config_from_args(args: argparse.Namespace) -> DevServerConfig:
    return DevServerConfig(
        host=args.host,
        port=args.port,
        api_port=args.api_port,
        api=not args.no_api,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        redirect_to=args.redirect_to,
        jwt_secret=args.jwt_secret,
        auth_webhook=args.auth_webhook,
        data_channel_signaling=args.data_channel_signaling,
        ignore_disconnect_websocket=args.ignore_disconnect_websocket,
        ping_interval=args.ping_interval or None,
        transport_cc=not args.no_transport_cc,
        bind_address=args.bind_address,
        port_range=args.port_range,
        establish_timeout=args.establish_timeout,
        session_webhook=args.session_webhook,
        audio_streaming_url=args.audio_streaming_url,
        audio_streaming_header=args.audio_streaming_header,
        audio_streaming_tls_cert=args.audio_streaming_tls_cert,
        audio_streaming_tls_key=args.audio_streaming_tls_key,
        audio_streaming_ca=args.audio_streaming_ca,
        audio_streaming_keepalive=args.audio_streaming_keepalive,
        default_audio_streaming_result_push=not args.no_default_audio_streaming_result_push,
        audio_streaming_webhooks=args.audio_streaming_webhooks,
    )


async def _serve(config: DevServerConfig, exit_with_stdin: bool) -> None:
    server = AsyncDevServer(config)
    await serve_until_signalled(server.start, server.stop,
                                lambda: print(json.dumps(server.info()), flush=True),
                                until_stdin_closes=exit_with_stdin)


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = "INFO" if args.verbose and args.log_level == "WARNING" else args.log_level
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    try:
        asyncio.run(_serve(config, args.exit_with_stdin))
    except OSError as e:
        print(f"devserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
