//! The HDHomeRun discovery and control protocol (port 65001, UDP for discovery, TCP for control)
//! as bytes and values: frames, their tag-length-value payloads, and what a tuner answers to a
//! discover request and to a read-only `get`.
//!
//! This module owns the wire format and the answering rules. It never touches sockets, threads
//! or the clock (the I/O edge is `node::lan::discovery`), and it never panics on untrusted bytes:
//! [`decode`] is total and reads at most [`MAX_FRAME`] bytes.
//!
//! # Frame
//!
//! ```text
//! u16 type (BE) | u16 payload length (BE) | payload: TLV... | u32 CRC-32 of all before it (LE)
//! TLV = u8 tag | length | value
//! length = one byte up to 127; from 128 two bytes: 0x80 | (len & 0x7f), then len >> 7
//! ```
//!
//! The CRC is the Ethernet one (reflected polynomial 0xEDB88320, initial and final value all
//! ones), stored little-endian; every other number is big-endian. Unknown tags are skipped. In
//! get/set packets every text carries its terminating NUL inside the TLV length; in discover
//! packets it does not. Numbers and layout follow Silicondust's libhdhomerun (`hdhomerun_pkt.h`,
//! `hdhomerun_discover.c`, `hdhomerun_control.c`).
//!
//! # Limits of the clients
//!
//! libhdhomerun up to 2022 keeps a discovered base URL only if it is at most 28 bytes long
//! (`http://255.255.255.255:65535`) and a device auth string only up to 24 bytes; longer ones
//! are dropped by the client, not refused here.

use std::fmt;

/// The UDP (discovery) and TCP (control) port.
pub const PORT: u16 = 65001;
/// The longest payload a frame may carry (libhdhomerun's limit).
pub const MAX_PAYLOAD: usize = 1452;
/// The longest frame: header, payload and CRC.
pub const MAX_FRAME: usize = HEADER + MAX_PAYLOAD + CRC_LEN;
/// The longest value [`answer_getset`] sends; a longer one is answered with an error.
pub const MAX_VALUE: usize = 1024;

const HEADER: usize = 4;
const CRC_LEN: usize = 4;

/// Packet types (the first u16 of a frame).
pub mod kind {
    /// A client looks for devices.
    pub const DISCOVER_REQUEST: u16 = 0x0002;
    /// A device answers a discover request.
    pub const DISCOVER_REPLY: u16 = 0x0003;
    /// A client gets (or sets) a variable.
    pub const GETSET_REQUEST: u16 = 0x0004;
    /// A device answers a get or set.
    pub const GETSET_REPLY: u16 = 0x0005;
}

/// Tags of the TLV payload.
pub mod tag {
    /// u32 device type.
    pub const DEVICE_TYPE: u8 = 0x01;
    /// u32 device id.
    pub const DEVICE_ID: u8 = 0x02;
    /// NUL-terminated variable name.
    pub const GETSET_NAME: u8 = 0x03;
    /// NUL-terminated variable value.
    pub const GETSET_VALUE: u8 = 0x04;
    /// NUL-terminated error message of a get/set reply.
    pub const ERROR_MESSAGE: u8 = 0x05;
    /// u8 tuner count.
    pub const TUNER_COUNT: u8 = 0x10;
    /// u32 lock key of a set request.
    pub const GETSET_LOCKKEY: u8 = 0x15;
    /// Lineup URL text.
    pub const LINEUP_URL: u8 = 0x27;
    /// Storage URL text (record devices).
    pub const STORAGE_URL: u8 = 0x28;
    /// HTTP base URL text.
    pub const BASE_URL: u8 = 0x2A;
    /// Device auth text.
    pub const DEVICE_AUTH: u8 = 0x2B;
    /// Storage id text (record devices).
    pub const STORAGE_ID: u8 = 0x2C;
    /// Several u32 device types (libhdhomerun from late 2022 on).
    pub const MULTI_TYPE: u8 = 0x2D;
}

/// Device type of a tuner.
pub const DEVICE_TYPE_TUNER: u32 = 0x0000_0001;
/// Device type of a record (storage) engine.
pub const DEVICE_TYPE_STORAGE: u32 = 0x0000_0005;
/// Device type matching every device.
pub const DEVICE_TYPE_WILDCARD: u32 = 0xFFFF_FFFF;
/// Device id matching every device.
pub const DEVICE_ID_WILDCARD: u32 = 0xFFFF_FFFF;

/// The error text a device gives for a variable it does not have.
pub const UNKNOWN_VARIABLE: &str = "ERROR: unknown getset variable";
/// The error text this device gives to a set: it has no writable variable.
pub const READ_ONLY: &str = "ERROR: read-only device";
/// The error text for a value longer than [`MAX_VALUE`].
pub const VALUE_TOO_LONG: &str = "ERROR: value too long";

/// Every error of this module, sorted by blame.
///
/// All but `Misuse` are the peer's: bytes that are not a frame this module accepts. `Misuse` is
/// the caller's (a message that cannot be framed) and never comes from untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Fewer bytes than the frame needs (on a stream: more may come).
    Truncated {
        /// Bytes needed, as far as known.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The header announces a frame longer than [`MAX_FRAME`].
    Oversized {
        /// The announced frame length.
        len: usize,
    },
    /// The CRC does not match the frame.
    Crc {
        /// The CRC the frame carries.
        carried: u32,
        /// The CRC of the frame's bytes.
        computed: u32,
    },
    /// A well-framed packet whose payload breaks the format.
    Malformed(&'static str),
    /// A packet type this module does not decode (a firmware upgrade, say).
    Unsupported {
        /// The packet type.
        kind: u16,
    },
    /// The caller asked to encode a message that cannot be framed; nothing was encoded.
    Misuse(&'static str),
}

impl ProtocolError {
    /// Whether the peer's bytes are to blame (as opposed to the caller).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, ProtocolError::Misuse(_))
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated { need, have } => {
                write!(f, "truncated frame: {have} of {need} bytes")
            }
            ProtocolError::Oversized { len } => {
                write!(f, "frame of {len} bytes, longer than {MAX_FRAME}")
            }
            ProtocolError::Crc { carried, computed } => write!(
                f,
                "frame CRC 0x{carried:08x} does not match its bytes (0x{computed:08x})"
            ),
            ProtocolError::Malformed(why) => write!(f, "malformed packet: {why}"),
            ProtocolError::Unsupported { kind } => {
                write!(f, "unsupported packet type 0x{kind:04x}")
            }
            ProtocolError::Misuse(why) => write!(f, "API misuse: {why}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A discover request: which devices the client looks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoverRequest {
    /// The device types asked for; empty: any.
    pub device_types: Vec<u32>,
    /// The device id asked for; `None` (no tag) or [`DEVICE_ID_WILDCARD`]: any.
    pub device_id: Option<u32>,
}

/// A discover reply: who the device is and where its HTTP side is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverReply {
    /// The device's types (a tuner: `[DEVICE_TYPE_TUNER]`).
    pub device_types: Vec<u32>,
    /// The device id.
    pub device_id: u32,
    /// The number of tuners.
    pub tuner_count: Option<u8>,
    /// The HTTP base URL (`http://192.168.1.20:80`).
    pub base_url: Option<String>,
    /// The lineup URL (`http://192.168.1.20:80/lineup.json`).
    pub lineup_url: Option<String>,
    /// The device auth string.
    pub device_auth: Option<String>,
}

/// A get (no value) or set (a value) of one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSetRequest {
    /// The variable (`/sys/model`).
    pub name: String,
    /// The value to set; `None` for a get.
    pub value: Option<String>,
    /// The lock key of a set on a locked tuner.
    pub lockkey: Option<u32>,
}

/// What a get or set gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetSetOutcome {
    /// The variable's value.
    Value(String),
    /// The device's error text (`ERROR: unknown getset variable`).
    Error(String),
}

/// The answer to a get or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSetReply {
    /// The variable, echoed (devices leave it out of some error replies).
    pub name: Option<String>,
    /// The value or the error.
    pub outcome: GetSetOutcome,
}

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 0x0002.
    DiscoverRequest(DiscoverRequest),
    /// Type 0x0003.
    DiscoverReply(DiscoverReply),
    /// Type 0x0004.
    GetSetRequest(GetSetRequest),
    /// Type 0x0005.
    GetSetReply(GetSetReply),
}

impl Message {
    /// The packet type this message is framed with.
    pub fn kind(&self) -> u16 {
        match self {
            Message::DiscoverRequest(_) => kind::DISCOVER_REQUEST,
            Message::DiscoverReply(_) => kind::DISCOVER_REPLY,
            Message::GetSetRequest(_) => kind::GETSET_REQUEST,
            Message::GetSetReply(_) => kind::GETSET_REPLY,
        }
    }
}

/// What the device says about itself, for [`answer_discover`] and [`device_variable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id (with a valid check digit).
    pub device_id: u32,
    /// The number of tuners.
    pub tuner_count: u8,
    /// The HTTP base URL the asker should use; empty: not sent.
    pub base_url: String,
    /// The lineup URL; empty: not sent.
    pub lineup_url: String,
    /// The device auth string; empty: not sent.
    pub device_auth: String,
    /// `/sys/model`: the firmware family (`hdhomerun5_atsc`).
    pub model: String,
    /// `/sys/hwmodel`: the hardware model (`HDHR5-4US`).
    pub hardware_model: String,
    /// `/sys/version`: the firmware version (`20250815`).
    pub firmware_version: String,
}

/// The Ethernet CRC-32 table (reflected polynomial 0xEDB88320).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The Ethernet CRC-32 of `bytes`, as a frame carries it over its header and payload.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        CRC_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// The length of the frame that starts `bytes`, read from its header: `None` while fewer than
/// the 4 header bytes are there (a stream reader waits for that many bytes, then for the total).
pub fn frame_len(bytes: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let Some(header) = bytes.get(..HEADER) else {
        return Ok(None);
    };
    let payload = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let len = HEADER + payload + CRC_LEN;
    if payload > MAX_PAYLOAD {
        return Err(ProtocolError::Oversized { len });
    }
    Ok(Some(len))
}

/// Decodes exactly one frame (trailing bytes are refused). Total: any input gives a message or
/// an error.
pub fn decode(bytes: &[u8]) -> Result<Message, ProtocolError> {
    let len = frame_len(bytes)?.ok_or(ProtocolError::Truncated {
        need: HEADER + CRC_LEN,
        have: bytes.len(),
    })?;
    if bytes.len() < len {
        return Err(ProtocolError::Truncated {
            need: len,
            have: bytes.len(),
        });
    }
    if bytes.len() > len {
        return Err(ProtocolError::Malformed("bytes after the frame"));
    }
    let (body, crc) = bytes.split_at(len - CRC_LEN);
    let carried = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32(body);
    if carried != computed {
        return Err(ProtocolError::Crc { carried, computed });
    }
    let kind = u16::from_be_bytes([body[0], body[1]]);
    if !(kind::DISCOVER_REQUEST..=kind::GETSET_REPLY).contains(&kind) {
        return Err(ProtocolError::Unsupported { kind });
    }
    let tlvs = read_tlvs(&body[HEADER..])?;
    match kind {
        kind::DISCOVER_REQUEST => decode_discover_request(&tlvs).map(Message::DiscoverRequest),
        kind::DISCOVER_REPLY => decode_discover_reply(&tlvs).map(Message::DiscoverReply),
        kind::GETSET_REQUEST => decode_getset_request(&tlvs).map(Message::GetSetRequest),
        kind::GETSET_REPLY => decode_getset_reply(&tlvs).map(Message::GetSetReply),
        other => Err(ProtocolError::Unsupported { kind: other }),
    }
}

/// Splits a payload into its TLVs, in order.
fn read_tlvs(mut payload: &[u8]) -> Result<Vec<(u8, &[u8])>, ProtocolError> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = payload.split_first() {
        let (len, rest) = match rest {
            [low, high, rest @ ..] if low & 0x80 != 0 => {
                (usize::from(low & 0x7f) | usize::from(*high) << 7, rest)
            }
            [len, rest @ ..] if len & 0x80 == 0 => (usize::from(*len), rest),
            _ => {
                return Err(ProtocolError::Malformed(
                    "a TLV length runs past the payload",
                ))
            }
        };
        if rest.len() < len {
            return Err(ProtocolError::Malformed(
                "a TLV value runs past the payload",
            ));
        }
        let (value, rest) = rest.split_at(len);
        out.push((tag, value));
        payload = rest;
    }
    Ok(out)
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

/// The device types of a device-type (one u32) or multi-type (u32s) tag. A device-type tag of
/// another size is skipped, as libhdhomerun does; a multi-type tag must be whole u32s.
fn push_types(tag: u8, value: &[u8], types: &mut Vec<u32>) -> Result<(), ProtocolError> {
    match tag {
        tag::DEVICE_TYPE => types.extend(u32_of(value)),
        tag::MULTI_TYPE => {
            if !value.len().is_multiple_of(4) {
                return Err(ProtocolError::Malformed(
                    "a multi-type tag is not whole u32s",
                ));
            }
            types.extend(value.chunks_exact(4).filter_map(u32_of));
        }
        _ => {}
    }
    Ok(())
}

/// Text of a TLV: UTF-8, one terminating NUL allowed (and dropped), no other NUL.
fn text(value: &[u8]) -> Result<String, ProtocolError> {
    let value = value.strip_suffix(&[0]).unwrap_or(value);
    if value.contains(&0) {
        return Err(ProtocolError::Malformed("a NUL inside a text"));
    }
    String::from_utf8(value.to_vec()).map_err(|_| ProtocolError::Malformed("a text is not UTF-8"))
}

fn decode_discover_request(tlvs: &[(u8, &[u8])]) -> Result<DiscoverRequest, ProtocolError> {
    let mut request = DiscoverRequest::default();
    for &(tag, value) in tlvs {
        push_types(tag, value, &mut request.device_types)?;
        if tag == tag::DEVICE_ID {
            if let Some(id) = u32_of(value) {
                request.device_id = Some(id);
            }
        }
    }
    Ok(request)
}

fn decode_discover_reply(tlvs: &[(u8, &[u8])]) -> Result<DiscoverReply, ProtocolError> {
    let mut device_types = Vec::new();
    let mut device_id = None;
    let (mut tuner_count, mut base_url, mut lineup_url, mut device_auth) = (None, None, None, None);
    for &(tag, value) in tlvs {
        push_types(tag, value, &mut device_types)?;
        match (tag, value) {
            (tag::DEVICE_ID, _) => device_id = u32_of(value).or(device_id),
            (tag::TUNER_COUNT, &[count]) => tuner_count = Some(count),
            (tag::BASE_URL, _) => base_url = Some(text(value)?),
            (tag::LINEUP_URL, _) => lineup_url = Some(text(value)?),
            (tag::DEVICE_AUTH, _) => device_auth = Some(text(value)?),
            _ => {}
        }
    }
    Ok(DiscoverReply {
        device_types,
        device_id: device_id.ok_or(ProtocolError::Malformed(
            "a discover reply without a device id",
        ))?,
        tuner_count,
        base_url,
        lineup_url,
        device_auth,
    })
}

fn decode_getset_request(tlvs: &[(u8, &[u8])]) -> Result<GetSetRequest, ProtocolError> {
    let (mut name, mut value, mut lockkey) = (None, None, None);
    for &(tag, bytes) in tlvs {
        match tag {
            tag::GETSET_NAME => name = Some(text(bytes)?),
            tag::GETSET_VALUE => value = Some(text(bytes)?),
            tag::GETSET_LOCKKEY => lockkey = u32_of(bytes).or(lockkey),
            _ => {}
        }
    }
    Ok(GetSetRequest {
        name: name.ok_or(ProtocolError::Malformed("a get/set request without a name"))?,
        value,
        lockkey,
    })
}

/// As libhdhomerun reads a reply: the first value or error tag is the outcome.
fn decode_getset_reply(tlvs: &[(u8, &[u8])]) -> Result<GetSetReply, ProtocolError> {
    let (mut name, mut outcome) = (None, None);
    for &(tag, bytes) in tlvs {
        match tag {
            tag::GETSET_NAME => name = Some(text(bytes)?),
            tag::GETSET_VALUE if outcome.is_none() => {
                outcome = Some(GetSetOutcome::Value(text(bytes)?))
            }
            tag::ERROR_MESSAGE if outcome.is_none() => {
                outcome = Some(GetSetOutcome::Error(text(bytes)?))
            }
            _ => {}
        }
    }
    Ok(GetSetReply {
        name,
        outcome: outcome.ok_or(ProtocolError::Malformed(
            "a get/set reply with neither value nor error",
        ))?,
    })
}

/// Builds a payload tag by tag.
struct Payload(Vec<u8>);

impl Payload {
    fn tlv(&mut self, tag: u8, value: &[u8]) -> Result<(), ProtocolError> {
        if value.len() > MAX_PAYLOAD {
            return Err(ProtocolError::Misuse("a value longer than a frame"));
        }
        self.0.push(tag);
        let len = value.len();
        if len <= 127 {
            self.0.push(len as u8);
        } else {
            // len <= MAX_PAYLOAD < 2^14, so both bytes hold it whole.
            self.0.extend([0x80 | (len & 0x7f) as u8, (len >> 7) as u8]);
        }
        self.0.extend_from_slice(value);
        Ok(())
    }

    fn u32(&mut self, tag: u8, value: u32) -> Result<(), ProtocolError> {
        self.tlv(tag, &value.to_be_bytes())
    }

    /// A text without NUL (discover packets).
    fn text(&mut self, tag: u8, value: &str) -> Result<(), ProtocolError> {
        if value.contains('\0') {
            return Err(ProtocolError::Misuse("a NUL inside a text"));
        }
        self.tlv(tag, value.as_bytes())
    }

    /// A NUL-terminated text (get/set packets).
    fn c_text(&mut self, tag: u8, value: &str) -> Result<(), ProtocolError> {
        if value.contains('\0') {
            return Err(ProtocolError::Misuse("a NUL inside a text"));
        }
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        self.tlv(tag, &bytes)
    }

    fn types(&mut self, types: &[u32]) -> Result<(), ProtocolError> {
        match types {
            [] => Ok(()),
            [one] => self.u32(tag::DEVICE_TYPE, *one),
            many => {
                let bytes: Vec<u8> = many.iter().flat_map(|t| t.to_be_bytes()).collect();
                self.tlv(tag::MULTI_TYPE, &bytes)
            }
        }
    }
}

/// Encodes one frame. Fails (nothing encoded) if a text holds a NUL or the payload would be
/// longer than [`MAX_PAYLOAD`].
pub fn encode(message: &Message) -> Result<Vec<u8>, ProtocolError> {
    let mut p = Payload(Vec::new());
    match message {
        Message::DiscoverRequest(r) => {
            p.types(&r.device_types)?;
            if let Some(id) = r.device_id {
                p.u32(tag::DEVICE_ID, id)?;
            }
        }
        Message::DiscoverReply(r) => {
            p.types(&r.device_types)?;
            p.u32(tag::DEVICE_ID, r.device_id)?;
            if let Some(count) = r.tuner_count {
                p.tlv(tag::TUNER_COUNT, &[count])?;
            }
            if let Some(auth) = &r.device_auth {
                p.text(tag::DEVICE_AUTH, auth)?;
            }
            if let Some(url) = &r.base_url {
                p.text(tag::BASE_URL, url)?;
            }
            if let Some(url) = &r.lineup_url {
                p.text(tag::LINEUP_URL, url)?;
            }
        }
        Message::GetSetRequest(r) => {
            p.c_text(tag::GETSET_NAME, &r.name)?;
            if let Some(value) = &r.value {
                p.c_text(tag::GETSET_VALUE, value)?;
            }
            if let Some(key) = r.lockkey {
                p.u32(tag::GETSET_LOCKKEY, key)?;
            }
        }
        Message::GetSetReply(r) => {
            if let Some(name) = &r.name {
                p.c_text(tag::GETSET_NAME, name)?;
            }
            match &r.outcome {
                GetSetOutcome::Value(v) => p.c_text(tag::GETSET_VALUE, v)?,
                GetSetOutcome::Error(e) => p.c_text(tag::ERROR_MESSAGE, e)?,
            }
        }
    }
    let payload = p.0;
    if payload.len() > MAX_PAYLOAD {
        return Err(ProtocolError::Misuse("a payload longer than a frame"));
    }
    let mut frame = Vec::with_capacity(HEADER + payload.len() + CRC_LEN);
    frame.extend(message.kind().to_be_bytes());
    // payload.len() <= MAX_PAYLOAD fits a u16.
    frame.extend((payload.len() as u16).to_be_bytes());
    frame.extend(payload);
    let crc = crc32(&frame);
    frame.extend(crc.to_le_bytes());
    Ok(frame)
}

/// The reply of `device` (a tuner) to `request`, or `None` when the request looks for another
/// device type or another device id.
pub fn answer_discover(request: &DiscoverRequest, device: &DeviceInfo) -> Option<DiscoverReply> {
    let type_matches = request.device_types.is_empty()
        || request
            .device_types
            .iter()
            .any(|&t| t == DEVICE_TYPE_TUNER || t == DEVICE_TYPE_WILDCARD);
    let id_matches = match request.device_id {
        None | Some(DEVICE_ID_WILDCARD) => true,
        Some(id) => id == device.device_id,
    };
    let some = |text: &str| (!text.is_empty()).then(|| text.to_string());
    (type_matches && id_matches).then(|| DiscoverReply {
        device_types: vec![DEVICE_TYPE_TUNER],
        device_id: device.device_id,
        tuner_count: Some(device.tuner_count),
        base_url: some(&device.base_url),
        lineup_url: some(&device.lineup_url),
        device_auth: some(&device.device_auth),
    })
}

/// The value of the read-only variable `name` of `device`: `/sys/model`, `/sys/hwmodel`,
/// `/sys/version` and `/tunerN/status` (from `tuner_status`, for `N` below the tuner count).
pub fn device_variable(
    name: &str,
    device: &DeviceInfo,
    tuner_status: &dyn Fn(u32) -> Option<String>,
) -> Option<String> {
    match name {
        "/sys/model" => Some(device.model.clone()),
        "/sys/hwmodel" => Some(device.hardware_model.clone()),
        "/sys/version" => Some(device.firmware_version.clone()),
        _ => {
            let tuner = name.strip_prefix("/tuner")?.strip_suffix("/status")?;
            if tuner.is_empty() || tuner.len() > 3 || !tuner.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let tuner: u32 = tuner.parse().ok()?;
            (tuner < u32::from(device.tuner_count))
                .then(|| tuner_status(tuner))
                .flatten()
        }
    }
}

/// The reply to a get or set on a read-only device whose variables `lookup` gives: the value
/// with its name; or, without the name, [`UNKNOWN_VARIABLE`], [`READ_ONLY`] (any set) or
/// [`VALUE_TOO_LONG`]. The reply always encodes.
pub fn answer_getset(
    request: &GetSetRequest,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> GetSetReply {
    let error = |text: &str| GetSetReply {
        name: None,
        outcome: GetSetOutcome::Error(text.to_string()),
    };
    let Some(value) = lookup(&request.name) else {
        return error(UNKNOWN_VARIABLE);
    };
    if request.value.is_some() {
        return error(READ_ONLY);
    }
    // A known name is short (the lookup knows it); the value is bounded here.
    if value.len() > MAX_VALUE || value.contains('\0') || request.name.len() > MAX_VALUE / 4 {
        return error(VALUE_TOO_LONG);
    }
    GetSetReply {
        name: Some(request.name.clone()),
        outcome: GetSetOutcome::Value(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The discover request `hdhomerun_config discover 127.0.0.1` (libhdhomerun 20220303)
    /// sends, as captured on a UDP socket: device type and device id, both wildcards.
    const CAPTURED_DISCOVER: [u8; 20] = [
        0x00, 0x02, 0x00, 0x0c, 0x01, 0x04, 0xff, 0xff, 0xff, 0xff, 0x02, 0x04, 0xff, 0xff, 0xff,
        0xff, 0x73, 0xcc, 0x7d, 0x8f,
    ];

    /// `hdhomerun_config 127.0.0.1 get /sys/model` and `... get /tuner0/status` (libhdhomerun
    /// 20220303), as captured on a TCP socket: the name with its NUL, no lock key.
    const CAPTURED_GETS: [(&str, &str); 2] = [
        ("/sys/model", "0004000d030b2f7379732f6d6f64656c008f5b54b5"),
        (
            "/tuner0/status",
            "00040011030f2f74756e6572302f7374617475730067fa12dc",
        ),
    ];

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn device() -> DeviceInfo {
        DeviceInfo {
            device_id: 0x1EC0_DE08,
            tuner_count: 2,
            base_url: "http://127.0.0.1:5004".into(),
            lineup_url: "http://127.0.0.1:5004/lineup.json".into(),
            device_auth: "ec-node".into(),
            model: "hdhomerun5_atsc".into(),
            hardware_model: "HDHR5-2US".into(),
            firmware_version: "20250815".into(),
        }
    }

    fn round_trip(message: Message) {
        let bytes = encode(&message).unwrap();
        assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())));
        assert_eq!(decode(&bytes), Ok(message));
    }

    #[test]
    fn crc_is_the_ethernet_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_captured_discover_request_decodes_and_is_answered() {
        let request = match decode(&CAPTURED_DISCOVER) {
            Ok(Message::DiscoverRequest(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            request,
            DiscoverRequest {
                device_types: vec![DEVICE_TYPE_WILDCARD],
                device_id: Some(DEVICE_ID_WILDCARD),
            }
        );
        assert_eq!(
            encode(&Message::DiscoverRequest(request.clone())).unwrap(),
            CAPTURED_DISCOVER
        );
        let reply = answer_discover(&request, &device()).unwrap();
        assert_eq!(reply.device_id, 0x1EC0_DE08);
        assert_eq!(reply.tuner_count, Some(2));
        assert_eq!(reply.base_url.as_deref(), Some("http://127.0.0.1:5004"));
        round_trip(Message::DiscoverReply(reply));
    }

    #[test]
    fn captured_get_requests_decode_and_encode_alike() {
        for (name, hex) in CAPTURED_GETS {
            let bytes = unhex(hex);
            let request = GetSetRequest {
                name: name.into(),
                value: None,
                lockkey: None,
            };
            assert_eq!(decode(&bytes), Ok(Message::GetSetRequest(request.clone())));
            assert_eq!(encode(&Message::GetSetRequest(request)).unwrap(), bytes);
        }
    }

    #[test]
    fn discover_filters_by_type_and_id() {
        let d = device();
        let ask = |types: Vec<u32>, id| DiscoverRequest {
            device_types: types,
            device_id: id,
        };
        assert!(answer_discover(&ask(vec![], None), &d).is_some());
        assert!(answer_discover(&ask(vec![DEVICE_TYPE_TUNER], Some(0x1EC0_DE08)), &d).is_some());
        assert!(
            answer_discover(&ask(vec![DEVICE_TYPE_STORAGE, DEVICE_TYPE_TUNER], None), &d).is_some()
        );
        assert!(answer_discover(&ask(vec![DEVICE_TYPE_STORAGE], None), &d).is_none());
        assert!(answer_discover(&ask(vec![], Some(0x1010_0006)), &d).is_none());
    }

    #[test]
    fn multi_type_requests_of_newer_clients() {
        // libhdhomerun 2023: tag 0x2D with tuner and storage, no device id tag.
        let request = DiscoverRequest {
            device_types: vec![DEVICE_TYPE_TUNER, DEVICE_TYPE_STORAGE],
            device_id: None,
        };
        let bytes = encode(&Message::DiscoverRequest(request.clone())).unwrap();
        assert_eq!(&bytes[..6], &[0, 2, 0, 10, tag::MULTI_TYPE, 8]);
        round_trip(Message::DiscoverRequest(request));
    }

    #[test]
    fn gets_are_answered_from_the_variables() {
        let d = device();
        let status = |n: u32| {
            Some(format!(
                "ch=none lock=none ss=0 snq=0 seq=0 bps=0 pps=0 #{n}"
            ))
        };
        let lookup = |name: &str| device_variable(name, &d, &status);
        let get = |name: &str| GetSetRequest {
            name: name.into(),
            value: None,
            lockkey: None,
        };
        let value = |name: &str| answer_getset(&get(name), &lookup).outcome;
        assert_eq!(
            value("/sys/model"),
            GetSetOutcome::Value("hdhomerun5_atsc".into())
        );
        assert_eq!(
            value("/sys/hwmodel"),
            GetSetOutcome::Value("HDHR5-2US".into())
        );
        assert_eq!(
            value("/sys/version"),
            GetSetOutcome::Value("20250815".into())
        );
        assert!(matches!(value("/tuner1/status"), GetSetOutcome::Value(v) if v.ends_with("#1")));
        for unknown in [
            "/tuner2/status",
            "/tuner/status",
            "/tuner+1/status",
            "/sys/x",
            "",
        ] {
            assert_eq!(
                value(unknown),
                GetSetOutcome::Error(UNKNOWN_VARIABLE.into())
            );
        }
        let mut set = get("/sys/model");
        set.value = Some("x".into());
        assert_eq!(
            answer_getset(&set, &lookup).outcome,
            GetSetOutcome::Error(READ_ONLY.into())
        );
        let reply = answer_getset(&get("/sys/model"), &lookup);
        assert_eq!(reply.name.as_deref(), Some("/sys/model"));
        round_trip(Message::GetSetReply(reply));
        let long = |_: &str| Some("x".repeat(MAX_VALUE + 1));
        assert_eq!(
            answer_getset(&get("/sys/model"), &long).outcome,
            GetSetOutcome::Error(VALUE_TOO_LONG.into())
        );
    }

    #[test]
    fn get_requests_carry_nul_terminated_names() {
        let request = GetSetRequest {
            name: "/sys/model".into(),
            value: None,
            lockkey: None,
        };
        let bytes = encode(&Message::GetSetRequest(request.clone())).unwrap();
        assert_eq!(&bytes[..6], &[0, 4, 0, 13, tag::GETSET_NAME, 11]);
        assert_eq!(&bytes[6..17], b"/sys/model\0");
        round_trip(Message::GetSetRequest(request));
        round_trip(Message::GetSetRequest(GetSetRequest {
            name: "/tuner0/channel".into(),
            value: Some("auto:33".into()),
            lockkey: Some(7),
        }));
    }

    #[test]
    fn long_tlv_lengths_take_two_bytes() {
        let value = "v".repeat(300);
        let reply = GetSetReply {
            name: Some("/x".into()),
            outcome: GetSetOutcome::Value(value.clone()),
        };
        let bytes = encode(&Message::GetSetReply(reply.clone())).unwrap();
        // name TLV: 03 03 "/x\0"; value TLV: 04, then 301 = 0x80 | 45, 2.
        assert_eq!(&bytes[9..12], &[tag::GETSET_VALUE, 0x80 | 45, 2]);
        round_trip(Message::GetSetReply(reply));
        // 127 still fits one byte, 128 does not.
        for (len, head) in [(126usize, vec![127u8]), (127, vec![0x80, 1])] {
            let reply = GetSetReply {
                name: None,
                outcome: GetSetOutcome::Error("e".repeat(len)),
            };
            let bytes = encode(&Message::GetSetReply(reply.clone())).unwrap();
            assert_eq!(bytes[5..5 + head.len()], head[..]);
            round_trip(Message::GetSetReply(reply));
        }
    }

    #[test]
    fn crc_failures_are_refused() {
        let mut bytes = CAPTURED_DISCOVER;
        bytes[19] ^= 1;
        assert!(matches!(decode(&bytes), Err(ProtocolError::Crc { .. })));
        let mut bytes = CAPTURED_DISCOVER;
        bytes[8] ^= 0x40;
        assert!(matches!(decode(&bytes), Err(ProtocolError::Crc { .. })));
    }

    #[test]
    fn truncated_and_oversized_frames_are_refused() {
        for cut in 0..CAPTURED_DISCOVER.len() {
            let err = decode(&CAPTURED_DISCOVER[..cut]).unwrap_err();
            assert!(
                matches!(err, ProtocolError::Truncated { have, .. } if have == cut),
                "{cut}"
            );
        }
        assert_eq!(frame_len(&[0, 2, 0]), Ok(None));
        let mut long = vec![0, 4, 0x05, 0xad];
        long.resize(1461, 0);
        assert_eq!(
            frame_len(&long),
            Err(ProtocolError::Oversized { len: 1461 })
        );
        assert!(matches!(
            decode(&long),
            Err(ProtocolError::Oversized { .. })
        ));
        let mut extra = CAPTURED_DISCOVER.to_vec();
        extra.push(0);
        assert!(matches!(decode(&extra), Err(ProtocolError::Malformed(_))));
    }

    /// A frame around `payload` with a valid CRC.
    fn framed(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = kind.to_be_bytes().to_vec();
        frame.extend((payload.len() as u16).to_be_bytes());
        frame.extend(payload);
        let crc = crc32(&frame);
        frame.extend(crc.to_le_bytes());
        frame
    }

    #[test]
    fn unknown_tags_and_bad_sizes_are_skipped() {
        let payload = [
            &[0x7e, 2, 9, 9][..],               // unknown tag
            &[tag::DEVICE_ID, 2, 1, 2],         // wrong size: skipped as libhdhomerun does
            &[tag::DEVICE_TYPE, 4, 0, 0, 0, 1], // tuner
            &[0x55, 0x81, 1],                   // unknown tag, two-byte length 129
            &[0u8; 129],
        ]
        .concat();
        assert_eq!(
            decode(&framed(kind::DISCOVER_REQUEST, &payload)),
            Ok(Message::DiscoverRequest(DiscoverRequest {
                device_types: vec![DEVICE_TYPE_TUNER],
                device_id: None,
            }))
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let cases: [(u16, &[u8]); 8] = [
            (kind::DISCOVER_REQUEST, &[tag::DEVICE_ID]), // length missing
            (kind::DISCOVER_REQUEST, &[tag::DEVICE_ID, 0x81]), // second length byte missing
            (kind::DISCOVER_REQUEST, &[tag::DEVICE_ID, 4, 1, 2]), // value too short
            (kind::DISCOVER_REQUEST, &[tag::MULTI_TYPE, 3, 0, 0, 1]),
            (kind::GETSET_REQUEST, &[]), // no name
            (kind::GETSET_REQUEST, &[tag::GETSET_NAME, 3, b'a', 0, b'b']), // NUL inside
            (kind::GETSET_REQUEST, &[tag::GETSET_NAME, 2, 0xff, 0]), // not UTF-8
            (kind::GETSET_REPLY, &[tag::GETSET_NAME, 2, b'a', 0]), // no value, no error
        ];
        for (kind, payload) in cases {
            assert!(
                matches!(
                    decode(&framed(kind, payload)),
                    Err(ProtocolError::Malformed(_))
                ),
                "{payload:?}"
            );
        }
        assert_eq!(
            decode(&framed(0x0006, &[0xff; 4])),
            Err(ProtocolError::Unsupported { kind: 6 })
        );
        assert_eq!(
            decode(&framed(kind::DISCOVER_REPLY, &[tag::TUNER_COUNT, 1, 2])),
            Err(ProtocolError::Malformed(
                "a discover reply without a device id"
            ))
        );
    }

    #[test]
    fn texts_without_terminating_nul_are_accepted() {
        let payload = [tag::GETSET_NAME, 3, b'/', b'a', b'b'];
        assert_eq!(
            decode(&framed(kind::GETSET_REQUEST, &payload)),
            Ok(Message::GetSetRequest(GetSetRequest {
                name: "/ab".into(),
                value: None,
                lockkey: None,
            }))
        );
    }

    #[test]
    fn encode_refuses_what_cannot_be_framed() {
        let nul = Message::GetSetRequest(GetSetRequest {
            name: "a\0b".into(),
            value: None,
            lockkey: None,
        });
        assert!(matches!(encode(&nul), Err(ProtocolError::Misuse(_))));
        let long = Message::GetSetReply(GetSetReply {
            name: Some("n".repeat(800)),
            outcome: GetSetOutcome::Value("v".repeat(800)),
        });
        let err = encode(&long).unwrap_err();
        assert!(!err.is_peer_fault(), "{err}");
    }
}
