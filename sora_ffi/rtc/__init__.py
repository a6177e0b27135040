"""LiveKit's model on Sora: rooms, participants, tracks, data (docs/rtc.md).

    from sora_ffi import rtc

    room = rtc.Room()

    @room.on("track_subscribed")
    def on_track(track, publication, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            asyncio.ensure_future(listen(rtc.AudioStream(track)))

    await room.connect(signaling_urls, "my-channel")
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(track)
    await source.capture_frame(rtc.AudioFrame(samples, 48000, 1, len(samples)))

Room = Sora channel, participant = Sora connection (identity = client_id), tracks = its
audio and video, data = messaging labels. One Sora engine underneath: frames reach Python
as numpy views, as in the callback API.
"""
from ._audio import AudioFrame, AudioFrameEvent, AudioSource, AudioStream
from ._data import MAX_PACKET_BYTES, DataPacket, DataPacketKind
from ._events import ConnectionState, DisconnectReason
from ._monitor import ConnectionQuality
from . import _events as events
from ._participant import LocalParticipant, Participant, RemoteParticipant
from ._room import ConnectError, ReconnectPolicy, Room, RoomOptions, RtcStats
from ._track import (LocalAudioTrack, LocalTrackPublication, LocalVideoTrack, RemoteAudioTrack,
                     RemoteTrackPublication, RemoteVideoTrack, StreamState, Track, TrackKind,
                     TrackPublication, TrackPublishOptions, TrackSource)
from ._rpc import RpcError, RpcInvocationData
from ._streams import (ByteStreamInfo, ByteStreamReader, ByteStreamWriter, StreamError, TextStreamInfo,
                       TextStreamReader, TextStreamWriter)
from ._token import AccessToken, TokenVerifier, VideoGrants
from ._video import VideoBufferType, VideoFrame, VideoFrameEvent, VideoSource, VideoStream

__all__ = [
    "Room", "RoomOptions", "ReconnectPolicy", "ConnectError", "RtcStats", "ConnectionState", "DisconnectReason",
    "ConnectionQuality",
    "events", "Participant", "LocalParticipant", "RemoteParticipant",
    "Track", "LocalAudioTrack", "LocalVideoTrack", "RemoteAudioTrack", "RemoteVideoTrack",
    "TrackKind", "TrackSource", "StreamState", "TrackPublication", "LocalTrackPublication",
    "RemoteTrackPublication", "TrackPublishOptions",
    "AudioFrame", "AudioFrameEvent", "AudioSource", "AudioStream",
    "VideoBufferType", "VideoFrame", "VideoFrameEvent", "VideoSource", "VideoStream",
    "DataPacket", "DataPacketKind", "MAX_PACKET_BYTES", "AccessToken", "VideoGrants", "TokenVerifier",
    "RpcError", "RpcInvocationData", "StreamError", "TextStreamInfo", "ByteStreamInfo",
    "TextStreamReader", "ByteStreamReader", "TextStreamWriter", "ByteStreamWriter",
]
