"""python -m sora_ffi.gateway: a local audio streaming gateway.

Point the dev server at it (``python -m sora_ffi.devserver --audio-streaming-url
http://127.0.0.1:PORT/speech``): ``/speech`` recognizes speech (PocketSphinx, offline, US
English; or ``--recognizer module:factory``), ``/test`` answers each packet with its size,
``/dump`` with the packet. Prints one JSON line ({"url": ...}) once listening; stops on
SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Optional

from .._background import serve_until_signalled
from .app import GatewayOptions
from .recognizers import load_factory
from .server import AsyncGateway


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sora_ffi.gateway", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="listen address (IPv4; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (0 = a free port)")
    p.add_argument("--header", action="store_true",
                   help="the body carries Sora's 20-byte packet headers "
                        "(the dev server's --audio-streaming-header)")
    p.add_argument("--recognizer", default="pocketsphinx",
                   help="'pocketsphinx' (default) or a plug-in's factory, 'module:callable'")
    p.add_argument("--dump-file", help="/dump also appends each packet to this JSONL file")
    p.add_argument("--tls-cert", help="PEM certificate (chain): serve h2 over TLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--client-ca", help="PEM CA bundle: require and verify client certificates")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: Optional[list] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = GatewayOptions(framed=args.header, recognizer=load_factory(args.recognizer),
                                 dump_file=args.dump_file)
        gateway = AsyncGateway(args.host, args.port, options=options, tls_cert=args.tls_cert,
                               tls_key=args.tls_key, client_ca=args.client_ca)
    except (ValueError, ImportError) as e:
        parser.error(str(e))
    asyncio.run(serve_until_signalled(gateway.start, gateway.stop,
                                      lambda: print(json.dumps({"url": gateway.url}), flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
