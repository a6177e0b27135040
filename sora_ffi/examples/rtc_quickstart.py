"""LiveKit's Python quick-start, on Sora: an agent joins a room, reads every audio track it
is given with `AudioStream`, and publishes a sine wave through `AudioSource.capture_frame`
(the await is the pacing). Only the import and the connect arguments differ from LiveKit.

    python -m sora_ffi.examples.rtc_quickstart [--seconds 3] [--frequency 440]

starts a dev server, the agent, and a listener room that does what the agent does in
reverse (it hears the sine); prints one JSON object: the frequency sent and the one heard,
and how many frames each side handled. `--url URL --channel ID` joins an existing server
instead (the agent only, until interrupted).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Optional

import numpy as np

from sora_ffi import rtc

SAMPLE_RATE = 48000
NUM_CHANNELS = 1


async def publish_frames(source: rtc.AudioSource, frequency: float, seconds: Optional[float]) -> int:
    amplitude = 16000
    samples_per_channel = 480  # 10 ms at 48 kHz
    audio_frame = rtc.AudioFrame.create(SAMPLE_RATE, NUM_CHANNELS, samples_per_channel)
    audio_data = np.frombuffer(audio_frame.data, dtype=np.int16)
    total_samples = 0
    while seconds is None or total_samples < seconds * SAMPLE_RATE:
        time = (total_samples + np.arange(samples_per_channel)) / SAMPLE_RATE
        np.copyto(audio_data, (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.int16))
        await source.capture_frame(audio_frame)
        total_samples += samples_per_channel
    await source.wait_for_playout()
    return total_samples // samples_per_channel


async def receive_audio_frames(stream: rtc.AudioStream, into: list) -> None:
    async for frame_event in stream:
        into.append(frame_event.frame.to_ndarray().copy())


async def agent(url: str, channel_id: str, frequency: float, seconds: Optional[float]) -> int:
    """LiveKit's quick-start `main`, on Sora."""
    room = rtc.Room()
    heard: list = []

    @room.on("track_subscribed")
    def on_track_subscribed(track: rtc.Track, publication: rtc.RemoteTrackPublication,
                            participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            audio_stream = rtc.AudioStream(track)  # type: ignore[arg-type]
            asyncio.ensure_future(receive_audio_frames(audio_stream, heard))

    await room.connect(url, channel_id, options=rtc.RoomOptions(identity="agent"))
    source = rtc.AudioSource(SAMPLE_RATE, NUM_CHANNELS)
    track = rtc.LocalAudioTrack.create_audio_track("sinewave", source)
    options = rtc.TrackPublishOptions()
    options.source = rtc.TrackSource.SOURCE_MICROPHONE
    await room.local_participant.publish_track(track, options)
    try:
        return await publish_frames(source, frequency, seconds)
    finally:
        await room.disconnect()


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float64).reshape(-1)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


async def demo(frequency: float, seconds: float) -> dict:
    from sora_ffi.devserver.server import AsyncDevServer

    async with AsyncDevServer() as server:
        listener = rtc.Room()
        heard: list = []
        streams: list = []

        @listener.on("track_subscribed")
        def on_track(track: rtc.Track, publication: rtc.RemoteTrackPublication,
                     participant: rtc.RemoteParticipant) -> None:
            if isinstance(track, rtc.RemoteAudioTrack):
                streams.append(asyncio.ensure_future(receive_audio_frames(rtc.AudioStream(track), heard)))

        await listener.connect(server.signaling_url, "quickstart", options=rtc.RoomOptions(identity="listener"))
        sent = await agent(server.signaling_url, "quickstart", frequency, seconds)
        await listener.disconnect()
        for task in streams:
            await task  # the stream ends with the track
        audio = np.concatenate(heard) if heard else np.zeros(0, np.int16)
        return {"sent_hz": frequency, "heard_hz": round(dominant_frequency(audio[SAMPLE_RATE // 2:], SAMPLE_RATE), 1)
                if len(audio) > SAMPLE_RATE else None, "frames_sent": sent, "frames_heard": len(heard)}


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--frequency", type=float, default=440.0)
    parser.add_argument("--url", help="join this signaling URL instead of a local dev server")
    parser.add_argument("--channel", default="quickstart")
    args = parser.parse_args(argv)
    if args.url:
        asyncio.run(agent(args.url, args.channel, args.frequency, None))
        return 0
    result = asyncio.run(demo(args.frequency, args.seconds))
    print(json.dumps(result))
    return 0 if result["heard_hz"] is not None and abs(result["heard_hz"] - args.frequency) < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
