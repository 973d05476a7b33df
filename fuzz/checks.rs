//! The properties every fuzz target checks, shared with the stable test suite
//! (`tests/decoders.rs` includes this file), so CI runs the same checks on the seed corpora and on
//! deterministic mutations that cargo-fuzz runs on random input.
//!
//! Each check feeds untrusted bytes to a decoder and to the `Verifier`, and panics only when a
//! property is violated: decoding must be total, accept only canonical encodings (re-encoding gives
//! back the input) and never let anything unverified through.

use ec_node::capture::http::{parse_head, Dechunker, Framing};
use ec_node::chunk::{Body, Chunk, Chunker, ChunkerConfig};
use ec_node::crypto::object::{self, Object};
use ec_node::crypto::{NodeKey, StreamId, StreamKey, StreamKeys};
use ec_node::hdhr::client::{parse_discover, parse_lineup};
use ec_node::hdhr::sim::TunerRoute;
use ec_node::http::parse_request_head;
use ec_node::manifest::{Event, Manifest, Policy, Proof, Verifier};
use ec_node::time::UnixMillis;

/// The stream the seed corpora are made for.
pub fn seed_keys() -> StreamKeys {
    StreamKey::derive(None, &StreamId::new("ec/fuzz").expect("valid id")).subkeys()
}

/// The signer of the seed manifests.
pub fn seed_signer() -> NodeKey {
    NodeKey::from_seed([7; 32])
}

/// `manifest_decode`: canonical decoding, and the verifier takes a manifest only with a valid
/// signature from the trusted signer for its stream.
pub fn manifest_decode(data: &[u8]) {
    let decoded = Manifest::decode(data);
    if let Ok(m) = &decoded {
        assert_eq!(
            m.encode(),
            data,
            "decoder accepted a non-canonical encoding"
        );
    }
    let mut verifier = Verifier::new(seed_keys(), Policy::new(vec![seed_signer().node_id()]));
    verifier.push_manifest(data, std::time::Instant::now());
    while let Some(event) = verifier.poll_event() {
        if let Event::Manifest { id, .. } = event {
            let m = decoded
                .as_ref()
                .expect("accepted a manifest that does not decode");
            assert_eq!(id, m.id);
            assert!(
                m.signature_valid(),
                "accepted a manifest with a bad signature"
            );
            assert_eq!(m.body.signer, seed_signer().node_id());
            assert_eq!(m.body.locator, seed_keys().locator());
        }
    }
}

/// `object_decode`: parsing is total and only authentic objects open.
pub fn object_decode(data: &[u8]) {
    let Ok(object) = Object::parse(data) else {
        return;
    };
    let _ = object.id();
    if let Ok(plaintext) = object::open(&seed_keys(), data.to_vec()) {
        // Authentic: sealing the plaintext again must give back exactly these bytes.
        let again = object::seal(&seed_keys(), object.index, object.flags, &plaintext)
            .expect("an opened object re-seals");
        assert_eq!(
            again, data,
            "an object opened but is not the deterministic encryption"
        );
    }
}

/// `merkle_proof`: canonical decoding and verification is total.
pub fn merkle_proof(data: &[u8]) {
    let Ok(proof) = Proof::decode(data) else {
        return;
    };
    assert_eq!(
        proof.encode(),
        data,
        "decoder accepted a non-canonical proof"
    );
    let _ = proof.verify(&[0; 32]);
}

/// `http_response`: a live source's response head and chunked body. Parsing is total, a head
/// never claims more bytes than it was given, and chunked decoding gives the same payload whatever
/// the read sizes, never more bytes than came in.
pub fn http_response(data: &[u8]) {
    let Ok(Some((head, len))) = parse_head(data) else {
        return;
    };
    assert!(len <= data.len(), "a head longer than its input");
    if head.framing != Framing::Chunked {
        return;
    }
    let body = &data[len..];
    let decode = |step: usize| {
        let mut d = Dechunker::default();
        let mut payload = Vec::new();
        for piece in body.chunks(step) {
            let mut buf = piece.to_vec();
            match d.decode(&mut buf) {
                Ok(n) => payload.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
        Some(payload)
    };
    let whole = decode(body.len().max(1));
    if let Some(payload) = &whole {
        assert!(payload.len() <= body.len(), "more payload than input");
    }
    let step = usize::from(body.first().copied().unwrap_or(1) % 7) + 1;
    assert_eq!(
        decode(step),
        whole,
        "chunked decoding depends on the read size"
    );
}

/// `ts_demux`: the whole TS path (framer, packet, PSI, PES, random-access detection, chunker) on
/// arbitrary bytes in reads of varying size never panics, emits whole packets under increasing
/// indices, and the in-place chunker names exactly the bytes the copying one builds. Returns how
/// many chunks came out.
pub fn ts_demux(data: &[u8]) -> usize {
    let config = ChunkerConfig {
        chunk_ms: 100,
        max_chunk_bytes: 1 << 20,
    };
    let copied = chunk_in_reads(Chunker::new(config), data);
    let in_place = chunk_in_reads(Chunker::in_place(config), data);
    for pair in copied.windows(2) {
        assert!(pair[0].index < pair[1].index, "indices must increase");
    }
    assert!(copied.iter().all(|c| c.bytes.len() % 188 == 0));
    assert_eq!(
        copied.len(),
        in_place.len(),
        "in place: another chunk count"
    );
    for (copy, spans) in copied.iter().zip(&in_place) {
        assert_eq!(
            (copy.index, copy.duration, copy.flags),
            (spans.index, spans.duration, spans.flags)
        );
        assert!(
            copy.bytes == spans.bytes.parts(data).concat(),
            "in place: other bytes"
        );
    }
    copied.len()
}

fn chunk_in_reads<B: Body>(mut chunker: Chunker<B>, data: &[u8]) -> Vec<Chunk<B>> {
    let now = UnixMillis(1_764_072_000_000);
    let mut chunks = Vec::new();
    for part in data.chunks(1 + data.len() % 997) {
        chunker.push(part, now);
        chunks.extend(std::iter::from_fn(|| chunker.poll_chunk()));
    }
    chunker.finish(now);
    chunks.extend(std::iter::from_fn(|| chunker.poll_chunk()));
    chunks
}

/// `hdhr_documents`: a device's `discover.json` and `lineup.json` (the input is both, split at
/// its first NUL byte). Parsing is total, and no text taken from a device carries a control
/// character (it is printed to terminals).
pub fn hdhr_documents(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (discover, lineup) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let clean = |text: &str| assert!(!text.chars().any(char::is_control), "{text:?}");
    if let Ok(device) = parse_discover(discover) {
        [&device.id, &device.name, &device.model, &device.firmware]
            .into_iter()
            .for_each(|t| clean(t));
    }
    for channel in parse_lineup(lineup).unwrap_or_default() {
        [
            &channel.guide_number,
            &channel.guide_name,
            &channel.video_codec,
            &channel.audio_codec,
            &channel.url,
        ]
        .into_iter()
        .for_each(|t| clean(t));
    }
}

/// `sim_request`: the shared HTTP request head parser, the HDHomeRun stream request parser and
/// the routes of the tuner simulator and of `serve` are total; a target the head parser accepts
/// is visible ASCII starting with `/`; a stream request reads back from the target it writes,
/// with a duration of at most a day; and both servers route it as the stream request parser
/// reads it.
pub fn sim_request(data: &[u8]) {
    use ec_node::hdhr::request::{StreamRequest, TunerChoice, MAX_DURATION_S};
    use ec_node::node::lan::site::SiteRoute;
    let Ok(target) = parse_request_head(data) else {
        return;
    };
    assert!(target.starts_with('/'), "{target:?}");
    assert!(target.bytes().all(|b| b.is_ascii_graphic()), "{target:?}");
    let request = StreamRequest::parse(&target);
    let sim = TunerRoute::parse(&target);
    let site = SiteRoute::parse(&target);
    if let Some(Ok(request)) = &request {
        assert!(request.duration_s.is_none_or(|d| d <= MAX_DURATION_S));
        let written = request.target();
        assert_eq!(
            StreamRequest::parse(&written).as_ref(),
            Some(&Ok(request.clone()))
        );
        assert_eq!(sim, Some(TunerRoute::Stream(request.clone())), "{target:?}");
        if request.tuner == TunerChoice::Auto {
            let stream = SiteRoute::Stream {
                guide: request.channel.clone(),
                duration_s: request.duration_s,
            };
            assert_eq!(site, Some(stream), "{target:?}");
        }
    } else {
        assert!(!matches!(sim, Some(TunerRoute::Stream(_))), "{target:?}");
        assert!(
            !matches!(site, Some(SiteRoute::Stream { .. })),
            "{target:?}"
        );
    }
    // A segment is only ever `/hls/GUIDE/segment_N.ts`.
    if let Some(SiteRoute::Segment(..)) = site {
        let path = target.split('?').next().unwrap_or_default();
        assert!(
            path.starts_with("/hls/") && path.ends_with(".ts") && !path.contains(".."),
            "{target:?}"
        );
    }
}

/// `hdhr_protocol`: the HDHomeRun port-65001 codec is total; a frame it accepts is exactly one
/// frame and re-encodes (when it fits) to bytes that decode to the same message; what the node
/// answers to an accepted request always encodes. Each input is also tried with its last four
/// bytes replaced by a valid CRC, so mutations get past the CRC to the payload parser.
pub fn hdhr_protocol(data: &[u8]) {
    use ec_node::hdhr::protocol::{self, DeviceInfo, Message};
    let mut fixed = data.to_vec();
    if let Some(body) = fixed.len().checked_sub(4) {
        let crc = protocol::crc32(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
    }
    let device = DeviceInfo {
        device_id: 0x1EC0_DE08,
        tuner_count: 2,
        base_url: "http://192.0.2.1:5004".into(),
        lineup_url: "http://192.0.2.1:5004/lineup.json".into(),
        device_auth: "fuzz".into(),
        model: "hdhomerun5_atsc".into(),
        hardware_model: "HDHR5-2US".into(),
        firmware_version: "20250815".into(),
    };
    let round_trip = |message: Message| {
        let bytes = protocol::encode(&message).expect("an answer of the node encodes");
        assert_eq!(protocol::decode(&bytes), Ok(message));
    };
    for input in [data, &fixed[..]] {
        let Ok(message) = protocol::decode(input) else {
            continue;
        };
        assert_eq!(protocol::frame_len(input), Ok(Some(input.len())));
        if let Ok(bytes) = protocol::encode(&message) {
            assert_eq!(protocol::decode(&bytes), Ok(message.clone()));
        }
        match &message {
            Message::DiscoverRequest(request) => {
                if let Some(reply) = protocol::answer_discover(request, &device) {
                    round_trip(Message::DiscoverReply(reply));
                }
            }
            Message::GetSetRequest(request) => {
                let status = |tuner: u32| Some(format!("ch=none lock=none #{tuner}"));
                let lookup = |name: &str| protocol::device_variable(name, &device, &status);
                round_trip(Message::GetSetReply(protocol::answer_getset(
                    request, &lookup,
                )));
            }
            _ => {}
        }
    }
}
