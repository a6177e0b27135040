//! Video codec engines × codecs × {encoder, decoder}: what this build and this machine can
//! encode and decode, and the choice an application's codec preference makes among them.
//!
//! The official SDK's model (SoraVideoCodecCapability / SoraVideoCodecPreference): an
//! *engine* (implementation) offers, per codec, an encoder and/or a decoder. Engines that
//! depend on the machine (OpenH264 from a path, hardware) are probed at run time, never at
//! load time. Adding an engine means adding one entry to [`capability`] and its encoder and
//! decoder constructors to the pipelines; nothing else changes.
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// SoraVideoCodecType (the official numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecType {
    Vp8 = 1,
    Vp9 = 2,
    Av1 = 3,
    H264 = 4,
    H265 = 5,
}

impl CodecType {
    /// In the order the official capability lists them.
    pub const ALL: [CodecType; 5] = [CodecType::Vp8, CodecType::Vp9, CodecType::H264, CodecType::H265, CodecType::Av1];

    pub fn name(self) -> &'static str {
        match self {
            CodecType::Vp8 => "VP8",
            CodecType::Vp9 => "VP9",
            CodecType::Av1 => "AV1",
            CodecType::H264 => "H264",
            CodecType::H265 => "H265",
        }
    }

    /// From an SDP rtpmap name or a Sora codec_type ("vp8", "VP8", "H264"...).
    pub fn from_name(name: &str) -> Option<CodecType> {
        CodecType::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// SoraVideoCodecImplementation (the official numbering and JSON names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Implementation {
    Internal = 0,
    CiscoOpenh264 = 1,
    IntelVpl = 2,
    NvidiaVideoCodecSdk = 3,
    AmdAmf = 4,
    RaspiV4l2m2m = 5,
}

impl Implementation {
    const ALL: [Implementation; 6] = [
        Implementation::Internal,
        Implementation::CiscoOpenh264,
        Implementation::IntelVpl,
        Implementation::NvidiaVideoCodecSdk,
        Implementation::AmdAmf,
        Implementation::RaspiV4l2m2m,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Implementation::Internal => "internal",
            Implementation::CiscoOpenh264 => "cisco_openh264",
            Implementation::IntelVpl => "intel_vpl",
            Implementation::NvidiaVideoCodecSdk => "nvidia_video_codec_sdk",
            Implementation::AmdAmf => "amd_amf",
            Implementation::RaspiV4l2m2m => "raspi_v4l2m2m",
        }
    }

    pub fn from_name(name: &str) -> Option<Implementation> {
        Implementation::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// One codec of one engine.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecSupport {
    pub codec: CodecType,
    pub encoder: bool,
    pub decoder: bool,
    /// Codec parameters as the official JSON names them (OpenH264: version, openh264_path).
    pub parameters: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Engine {
    pub implementation: Implementation,
    pub codecs: Vec<CodecSupport>,
    /// Engine parameters as the official JSON names them (version, openh264_path, ...).
    pub parameters: Map<String, Value>,
}

impl Engine {
    pub fn supports(&self, codec: CodecType, encode: bool) -> bool {
        self.codecs.iter().any(|c| c.codec == codec && if encode { c.encoder } else { c.decoder })
    }
}

/// The engines this build has on this machine. `openh264` is the path the application gave
/// (the official SDK loads Cisco's binary from there): the cisco_openh264 engine is listed
/// when that library loads and opens an encoder and a decoder; a missing or wrong path
/// only leaves it out (as in the official SDK).
pub fn capability(openh264: Option<&str>) -> Vec<Engine> {
    // libvpx, libaom and dav1d, linked into the shim: VP8, VP9 and AV1 both ways; H.265 only
    // through hardware engines.
    let internal = Engine {
        implementation: Implementation::Internal,
        codecs: CodecType::ALL
            .into_iter()
            .map(|codec| {
                let linked = matches!(codec, CodecType::Vp8 | CodecType::Vp9 | CodecType::Av1);
                CodecSupport { codec, encoder: linked, decoder: linked, parameters: Map::new() }
            })
            .collect(),
        parameters: Map::new(),
    };
    let mut engines = vec![internal];
    // NVDEC and NVENC where this machine has an NVIDIA GPU and driver: each codec as far as
    // a session really opens for it (nvidia.rs, nvenc.rs).
    let decodable = super::nvidia::probe().inspect_err(|why| log::debug!("{why}")).unwrap_or(&[]);
    let encodable = super::nvenc::probe().inspect_err(|why| log::debug!("{why}")).unwrap_or(&[]);
    if !decodable.is_empty() || !encodable.is_empty() {
        engines.push(Engine {
            implementation: Implementation::NvidiaVideoCodecSdk,
            codecs: CodecType::ALL
                .into_iter()
                .map(|codec| CodecSupport {
                    codec,
                    encoder: encodable.contains(&codec),
                    decoder: decodable.contains(&codec),
                    parameters: Map::new(),
                })
                .collect(),
            parameters: Map::new(),
        });
    }
    if let Some(path) = openh264 {
        match super::openh264::probe(path) {
            Ok(lib) => {
                let mut parameters = Map::new();
                parameters.insert("version".into(), lib.version().into());
                parameters.insert("openh264_path".into(), path.into());
                // The official order: H.264 last, with the library's facts on it.
                let codecs = [CodecType::Vp8, CodecType::Vp9, CodecType::H265, CodecType::Av1, CodecType::H264]
                    .into_iter()
                    .map(|codec| {
                        let h264 = codec == CodecType::H264;
                        let parameters = if h264 { parameters.clone() } else { Map::new() };
                        CodecSupport { codec, encoder: h264, decoder: h264, parameters }
                    })
                    .collect();
                engines.push(Engine { implementation: Implementation::CiscoOpenh264, codecs, parameters: Map::new() });
            }
            Err(e) => log::info!("OpenH264 at {path:?} is not usable: {e}"),
        }
    }
    engines
}

/// The official `SoraVideoCodecCapability.to_json()` shape.
pub fn capability_json(engines: &[Engine]) -> Value {
    json!({
        "engines": engines.iter().map(|e| json!({
            "name": e.implementation.name(),
            "codecs": e.codecs.iter().map(|c| json!({
                "type": c.codec.name(), "encoder": c.encoder, "decoder": c.decoder, "parameters": c.parameters,
            })).collect::<Vec<_>>(),
            "parameters": e.parameters,
        })).collect::<Vec<_>>(),
    })
}

/// One entry of an application's preference (`SoraVideoCodecPreference.Codec`): which
/// engine encodes and which decodes `type`; None = that direction is not used.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreferredCodec {
    #[serde(rename = "type")]
    pub codec: String,
    pub encoder: Option<String>,
    pub decoder: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// A validated preference: for each codec, the engines chosen to encode and decode it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preference {
    entries: Vec<(CodecType, Option<Implementation>, Option<Implementation>)>,
}

impl Preference {
    /// Checks every entry against `engines`: unknown names, duplicates and engines or
    /// directions this machine does not have are errors (the official SDK throws there).
    pub fn new(codecs: &[PreferredCodec], engines: &[Engine]) -> Result<Preference, String> {
        let mut entries = Vec::new();
        for c in codecs {
            let codec = CodecType::from_name(&c.codec).ok_or_else(|| format!("unknown video codec type {:?}", c.codec))?;
            if entries.iter().any(|(t, _, _)| *t == codec) {
                return Err(format!("{} appears twice in the video codec preference", codec.name()));
            }
            let pick = |name: &Option<String>, encode: bool| -> Result<Option<Implementation>, String> {
                let Some(name) = name else { return Ok(None) };
                let imp = Implementation::from_name(name).ok_or_else(|| format!("unknown video codec implementation {name:?}"))?;
                let what = if encode { "encoder" } else { "decoder" };
                match engines.iter().find(|e| e.implementation == imp) {
                    None => Err(format!("the {} engine is not available in this build or on this machine", imp.name())),
                    Some(e) if !e.supports(codec, encode) => {
                        Err(format!("the {} engine has no {} {what} (see get_video_codec_capability())", imp.name(), codec.name()))
                    }
                    Some(_) => Ok(Some(imp)),
                }
            };
            entries.push((codec, pick(&c.encoder, true)?, pick(&c.decoder, false)?));
        }
        Ok(Preference { entries })
    }

    /// The engine that encodes `codec`, if the preference allows sending it.
    pub fn encoder(&self, codec: CodecType) -> Option<Implementation> {
        self.entries.iter().find(|(t, _, _)| *t == codec).and_then(|(_, e, _)| *e)
    }

    /// The engine that decodes `codec`, if the preference allows receiving it.
    pub fn decoder(&self, codec: CodecType) -> Option<Implementation> {
        self.entries.iter().find(|(t, _, _)| *t == codec).and_then(|(_, _, d)| *d)
    }
}

/// Without an application preference: every codec an engine of this machine handles, the
/// internal engine first.
pub fn default_preference(engines: &[Engine]) -> Preference {
    let pick = |codec: CodecType, encode: bool| {
        engines.iter().find(|e| e.supports(codec, encode)).map(|e| e.implementation)
    };
    Preference { entries: CodecType::ALL.into_iter().map(|c| (c, pick(c, true), pick(c, false))).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pref(codec: &str, encoder: Option<&str>, decoder: Option<&str>) -> PreferredCodec {
        PreferredCodec { codec: codec.into(), encoder: encoder.map(Into::into), decoder: decoder.map(Into::into), parameters: None }
    }

    #[test]
    fn capability_lists_what_this_build_has() {
        let caps = capability(None);
        let j = capability_json(&caps);
        assert_eq!(j["engines"][0]["name"], "internal");
        let codecs = j["engines"][0]["codecs"].as_array().unwrap();
        let names: Vec<_> = codecs.iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(names, ["VP8", "VP9", "H264", "H265", "AV1"]);
        assert_eq!(codecs[0]["encoder"], true);
        assert_eq!(codecs[4]["decoder"], true, "AV1 (dav1d)");
        assert_eq!(codecs[3]["encoder"], false, "H265");
        // NVDEC/NVENC are listed after the internal engines where an NVIDIA GPU is.
        let (nvdec, nvenc) = (super::super::nvidia::probe().is_ok(), super::super::nvenc::probe().is_ok());
        assert_eq!(caps.len(), 1 + (nvdec || nvenc) as usize);
        if nvdec || nvenc {
            assert_eq!(j["engines"][1]["name"], "nvidia_video_codec_sdk");
            let codecs = j["engines"][1]["codecs"].as_array().unwrap();
            assert_eq!(codecs.iter().any(|c| c["encoder"] == true), nvenc);
            assert_eq!(codecs.iter().any(|c| c["decoder"] == true), nvdec);
        }
        assert_eq!(capability(Some("/no/such/libopenh264.so")).len(), caps.len());
    }

    #[test]
    fn preference_checks_engines_and_directions() {
        let caps = capability(None);
        let p = Preference::new(&[pref("VP9", Some("internal"), None)], &caps).unwrap();
        assert_eq!(p.encoder(CodecType::Vp9), Some(Implementation::Internal));
        assert_eq!(p.decoder(CodecType::Vp9), None);
        assert_eq!(p.encoder(CodecType::Vp8), None);
        let err = |c: &[PreferredCodec]| Preference::new(c, &caps).unwrap_err();
        // NVDEC never encodes; without a GPU the engine is not there at all.
        let nvenc = err(&[pref("H264", Some("nvidia_video_codec_sdk"), None)]);
        assert!(nvenc.contains("not available") || nvenc.contains("no H264 encoder"), "{nvenc}");
        assert!(err(&[pref("H265", None, Some("internal"))]).contains("no H265 decoder"));
        assert!(err(&[pref("VP8", None, None), pref("VP8", None, None)]).contains("twice"));
        assert!(err(&[pref("VP7", None, None)]).contains("unknown video codec type"));
        let d = default_preference(&caps);
        assert_eq!(d.decoder(CodecType::Vp8), Some(Implementation::Internal));
        assert_eq!(d.encoder(CodecType::H264), None);
    }
}
