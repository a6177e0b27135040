//! Low-level peer handles for the C ABI (`sora_peer_*`): a libdatachannel peer connection
//! whose callbacks become events on an event queue. The dev server's media plane uses these.
use crate::error::{Error, Result};
use crate::events::{next_handle_id, Event, EventQueue, EventType};
use crate::rtc::{self, DataChannelOptions, Peer, PeerConfig, RtcEvent, RtcObserver};
use crate::signaling::sdp::media_sections;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PeerJson {
    bind_address: Option<String>,
    ice_servers: Option<Vec<String>>,
    port_range: Option<(u16, u16)>,
    mtu: Option<i32>,
    relay_only: Option<bool>,
    /// Default true: the owner decides when to create offers/answers.
    disable_auto_negotiation: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DcJson {
    ordered: Option<bool>,
    max_packet_life_time: Option<u32>,
    max_retransmits: Option<u32>,
    protocol: Option<String>,
    negotiated: Option<bool>,
    stream: Option<u16>,
}

struct ToQueue {
    id: u64,
    queue: Arc<EventQueue>,
}

impl RtcObserver for ToQueue {
    fn on_rtc_event(&self, ev: RtcEvent) {
        let e = |t| Event::new(t, self.id);
        let event = match ev {
            RtcEvent::LocalDescription { sdp, kind } => e(EventType::PeerLocalDescription).text(&sdp).text2(&kind),
            RtcEvent::LocalCandidate { candidate, mid } => e(EventType::PeerLocalCandidate).text(&candidate).text2(&mid),
            RtcEvent::State(s) => e(EventType::PeerState).a(s as i64),
            RtcEvent::Gathering(s) => e(EventType::PeerGatheringState).a(s as i64),
            RtcEvent::RemoteDataChannel { dc, label } => e(EventType::PeerDataChannel).a(dc as i64).text(&label),
            RtcEvent::Track { track, mid } => e(EventType::PeerTrack).a(track as i64).text(&mid),
            RtcEvent::DcOpen { dc, label } => e(EventType::PeerDcOpen).a(dc as i64).text(&label),
            RtcEvent::DcClosed { dc } => e(EventType::PeerDcClosed).a(dc as i64),
            RtcEvent::DcMessage { dc, data, binary } => e(EventType::PeerDcMessage).a(dc as i64).b(binary as i64).data(data),
            RtcEvent::DcError { dc, message } => {
                log::warn!("peer data channel {dc}: {message}");
                return;
            }
        };
        self.queue.push(event);
    }
}

pub struct PeerHandle {
    pub id: u64,
    pub peer: Peer,
    /// Tracks added through this handle, so their forwarding routes die with it.
    tracks: parking_lot::Mutex<Vec<i32>>,
    /// Ids that replace_track gave a successor (they still name the same section).
    retired: parking_lot::Mutex<Vec<i32>>,
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        for t in self.tracks.lock().drain(..) {
            crate::forward::forget(t);
        }
    }
}

impl PeerHandle {
    pub fn new(queue: Arc<EventQueue>, config_json: &str) -> Result<PeerHandle> {
        let j: PeerJson = if config_json.trim().is_empty() {
            PeerJson::default()
        } else {
            serde_json::from_str(config_json).map_err(|e| Error::invalid(format!("invalid peer config: {e}")))?
        };
        let config = PeerConfig {
            ice_servers: j.ice_servers.unwrap_or_default(),
            bind_address: j.bind_address,
            port_range: j.port_range,
            mtu: j.mtu,
            relay_only: j.relay_only.unwrap_or(false),
            disable_auto_negotiation: j.disable_auto_negotiation.unwrap_or(true),
            // The dev server forwards inside its packet handlers: they stay off the ICE thread.
            inline_media_receive: false,
        };
        let id = next_handle_id();
        let peer = Peer::new(&config, Arc::new(ToQueue { id, queue }))?;
        Ok(PeerHandle { id, peer, tracks: parking_lot::Mutex::new(Vec::new()), retired: parking_lot::Mutex::new(Vec::new()) })
    }

    pub fn add_track(&self, media_sdp: &str) -> Result<i32> {
        let t = self.peer.add_track(media_sdp)?;
        let mut tracks = self.tracks.lock();
        if !tracks.contains(&t) {
            tracks.push(t);
        }
        Ok(t)
    }

    /// Gives the section of `track` new content (`media_sdp`: same kind, same `a=mid`) and
    /// stops forwarding into it; returns the id that names the section from now on.
    /// libdatachannel rewrites the same track in place, so the old id still names it: it is
    /// retired (refused from then on), never deleted, which would reject the section.
    pub fn replace_track(&self, track: i32, media_sdp: &str) -> Result<i32> {
        self.check_current(track)?;
        if !self.tracks.lock().contains(&track) {
            return Err(Error::invalid(format!("track {track} is not one of this peer's")));
        }
        // (kind, mid) of the first section of an SDP text
        let id = |text: &str| media_sections(text).into_iter().next().map(|m| (m.kind, m.mid)).unwrap_or_default();
        let current = id(&self.peer.track_description(track)?);
        if id(media_sdp) != current {
            let (kind, mid) = current;
            return Err(Error::invalid(format!("media_sdp must keep the track's kind and mid ({kind} a=mid:{mid})")));
        }
        let new = self.add_track(media_sdp)?;
        crate::forward::forget(track);
        self.tracks.lock().retain(|&t| t != track);
        self.retired.lock().push(track);
        Ok(new)
    }

    /// Refuses an id that [`PeerHandle::replace_track`] retired.
    pub fn check_current(&self, track: i32) -> Result<()> {
        if self.retired.lock().contains(&track) {
            return Err(Error::invalid(format!("track {track} was replaced: use the id replace_track returned")));
        }
        Ok(())
    }

    pub fn remove_track(&self, track: i32) -> Result<()> {
        self.check_current(track)?;
        crate::forward::forget(track);
        self.tracks.lock().retain(|&t| t != track);
        self.peer.delete_track(track)
    }

    pub fn create_data_channel(&self, label: &str, options_json: Option<&str>) -> Result<i32> {
        let j: DcJson = match options_json {
            Some(t) if !t.trim().is_empty() => {
                serde_json::from_str(t).map_err(|e| Error::invalid(format!("invalid data channel options: {e}")))?
            }
            _ => DcJson::default(),
        };
        if j.max_packet_life_time.is_some() && j.max_retransmits.is_some() {
            return Err(Error::invalid("max_packet_life_time and max_retransmits are exclusive"));
        }
        let opts = DataChannelOptions {
            ordered: j.ordered,
            max_packet_life_time: j.max_packet_life_time,
            max_retransmits: j.max_retransmits,
            protocol: j.protocol,
            negotiated: j.negotiated.unwrap_or(false),
            stream: j.stream,
        };
        self.peer.create_data_channel(label, &opts)
    }

    pub fn dc_send(&self, dc: i32, data: &[u8], binary: bool) -> Result<()> {
        let max = rtc::dc_max_message_size(dc);
        if data.len() > max {
            return Err(Error::new(crate::error::Kind::TooLarge, format!("message of {} bytes exceeds {max}", data.len())));
        }
        rtc::dc_send(dc, data, binary)
    }
}
