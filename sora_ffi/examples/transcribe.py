"""Audio streaming end to end, on this machine and offline:

    python -m sora_ffi.examples.transcribe [--text "..."]

starts a gateway (PocketSphinx) and a dev server that streams to it, connects a listener
and a speaker (``audio_streaming_language_code="en-US"``), turns streaming on with the
``StartAudioStreaming`` API, and has the speaker say the text (espeak-ng). Every result
the listener receives is printed as one JSON object per line (the push's ``data``), and
last ``{"spoken": ..., "recognized": ..., "word_accuracy": ...}``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Optional

from .. import Sora, aio
from .._lazy import np
from ..devserver.server import AsyncDevServer
from ..gateway import AsyncGateway
from .speech import synthesize, word_accuracy

DEFAULT_TEXT = "please call me back tomorrow, we will meet at the station at noon"
#: audio pushed per step (s); the speaker keeps real time
STEP = 0.02
#: no result for this long after the speech (and a final): the results are all in (s)
QUIET = 0.7


async def speak(source, pcm: "np.ndarray", rate: int, silence: float = 1.5) -> None:
    """Pushes `pcm` and then `silence` seconds of silence at the pace of real time."""
    step = int(rate * STEP)
    audio = np.concatenate([pcm, np.zeros(int(rate * silence), np.int16)])
    start = time.monotonic()
    for i, at in enumerate(range(0, len(audio), step)):
        source.on_data(audio[at:at + step].reshape(-1, 1))
        await asyncio.sleep(max(0.0, start + (i + 1) * STEP - time.monotonic()))


async def transcribe(text: str, *, out=sys.stdout, timeout: float = 15.0) -> dict:
    pcm, rate = synthesize(text)
    async with AsyncGateway() as gateway, \
            AsyncDevServer(audio_streaming_url=gateway.url + "/speech") as server:
        sora = Sora()
        url = [server.signaling_url]
        source = sora.create_audio_source(1, rate)
        async with aio.connect(sora, signaling_urls=url, role="recvonly", channel_id="transcribe",
                               audio=True, video=False) as listener, \
                aio.connect(sora, signaling_urls=url, role="sendonly", channel_id="transcribe",
                            audio=True, video=False, audio_source=source,
                            audio_streaming_language_code="en-US") as speaker:
            results = listener.audio_streaming_results()
            status, body = await asyncio.to_thread(
                server_api, server, "Sora_20221221.StartAudioStreaming", {"channel_id": "transcribe"})
            if status != 200:
                raise RuntimeError(f"StartAudioStreaming: {status} {body}")
            finals: list = []
            arrived = asyncio.Event()

            async def collect() -> None:
                async for r in results:
                    if r.connection_id != speaker.connection_id:
                        continue
                    print(json.dumps({"type": "audio_streaming_result", "connection_id": r.connection_id,
                                      "result": r.result}, ensure_ascii=False), file=out, flush=True)
                    if r.is_final and r.text:
                        finals.append(r.text)
                    arrived.set()

            collector = asyncio.ensure_future(collect())
            await speak(source, pcm, rate)
            # The recognizer ends the last utterance in the silence after the speech: wait
            # until a final has come and then nothing for a moment.
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), QUIET)
                except asyncio.TimeoutError:
                    if finals:
                        break
            collector.cancel()
    recognized = " ".join(finals)
    summary = {"spoken": text, "recognized": recognized,
               "word_accuracy": round(word_accuracy(text, recognized), 3)}
    print(json.dumps(summary, ensure_ascii=False), file=out, flush=True)
    return summary


def server_api(server: AsyncDevServer, target: str, body: dict) -> tuple:
    from ..devserver import api
    assert server.api_url is not None
    return api.api_request(server.api_url, target, body)


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sora_ffi.examples.transcribe",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default=DEFAULT_TEXT, help="what the speaker says (English)")
    args = p.parse_args(argv)
    summary = asyncio.run(transcribe(args.text))
    return 0 if summary["recognized"] else 1


if __name__ == "__main__":
    sys.exit(main())
