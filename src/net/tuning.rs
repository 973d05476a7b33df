//! The QUIC transport settings every endpoint runs with: congestion control, loss detection,
//! pacing, flow-control windows and the UDP payload size, and the two environment variables
//! that change them for a path the defaults do not suit (or to measure what a setting is worth).
//!
//! This module owns the defaults, the parsing and the validation, and applies the result to a
//! `quiche::Config`. It never touches a socket; the endpoint loop honours pacing (see
//! `net::pacing`).

use std::time::Duration;

use crate::net::NetError;

/// The environment variable that changes the QUIC settings: comma-separated `key=value` pairs,
/// e.g. `cc=cubic,pacing=off,stream-window=1M` (see [`Tuning::parse`]).
pub const QUIC_VAR: &str = "EC_NODE_QUIC";

/// The environment variable that sets the UDP payload size on every path.
pub const UDP_PAYLOAD_VAR: &str = "EC_NODE_UDP_PAYLOAD";

/// UDP payload size on network paths: fits a 1500-byte Ethernet MTU with room for tunnels.
const PATH_PAYLOAD: usize = 1350;

/// UDP payload size when every path is loopback. The interface's MTU (65 536 on Linux) takes
/// it without IP fragmentation, which is all RFC 9000 §14 asks; both ends advertise it as
/// `max_udp_payload_size`, a peer that advertises less gets less, and quiche uses 1200 bytes
/// until the handshake is done and caps packets at 16 383 bytes anyway. A twelfth of the packets
/// to build, encrypt, acknowledge and pass through the kernel than at [`PATH_PAYLOAD`].
const LOOPBACK_PAYLOAD: usize = 16_383;

/// QUIC needs datagrams of at least 1200 bytes (RFC 9000 §14); UDP carries at most 65 527.
const PAYLOAD_RANGE: std::ops::RangeInclusive<usize> = 1200..=65_527;

/// Flow-control windows a setting may ask for: below 64 KiB a 2 MB chunk needs dozens of
/// window updates per round trip; above 1 GiB a peer could make us buffer that much.
const WINDOW_RANGE: std::ops::RangeInclusive<u64> = (64 << 10)..=(1 << 30);

/// The congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    /// BBRv2 (quiche's `Bbr2Gcongestion`): the default; random loss and reordering are not
    /// taken as congestion.
    Bbr2,
    /// CUBIC (RFC 9438), quiche's own default.
    Cubic,
    /// NewReno (RFC 9002 §7).
    Reno,
}

/// The QUIC settings of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// The congestion controller.
    pub congestion: Congestion,
    /// After the first spurious loss, stop counting reordered packets as lost and widen the
    /// time threshold instead (quiche's relaxed loss threshold).
    pub relaxed_loss: bool,
    /// Send each packet at the time quiche's pacer gives it instead of in bursts of a whole
    /// congestion window (BBRv2 only: quiche's CUBIC and NewReno stamp every packet "now").
    /// Off by default: see [`Tuning::default`].
    pub pacing: bool,
    /// Bytes a peer may send on one stream before we let it send more (one MoQ group, i.e. one
    /// chunk object, per stream).
    pub stream_window: u64,
    /// Bytes a peer may send on the whole connection before we let it send more.
    pub conn_window: u64,
    /// The UDP payload size; `None`: [`PATH_PAYLOAD`], or [`LOOPBACK_PAYLOAD`] when every
    /// path is loopback.
    pub payload: Option<usize>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            // Measured in PERFORMANCE.md ("Real networks"): with CUBIC and quiche's packet-count
            // loss threshold a path that reorders (40 ± 20 ms) carried nothing, its reordered
            // packets resent again and again; BBRv2 with the relaxed threshold carries it whole.
            congestion: Congestion::Bbr2,
            relaxed_loss: true,
            // Measured both ways (PERFORMANCE.md, "QUIC settings"): paced, a reordering path
            // sends 15 % fewer datagrams and a 10 ms router queue drops almost nothing, but on a
            // busy machine (the impairment tests two at a time, or beside a compile) a paced
            // sender fell into retransmission storms and stalls that the unpaced one never did.
            // A node shares its box with media servers, so it stays unpaced unless asked.
            pacing: false,
            // A 1 s chunk of a 19.39 Mb/s mux is about 2.4 MB: a group's stream takes it whole
            // without waiting for a window update, and the connection holds several in flight.
            stream_window: 4 << 20,
            conn_window: 16 << 20,
            payload: None,
        }
    }
}

impl Tuning {
    /// The settings the environment asks for: the defaults changed by [`QUIC_VAR`] and
    /// [`UDP_PAYLOAD_VAR`] when they are set.
    pub fn from_env() -> Result<Tuning, NetError> {
        let mut tuning = match std::env::var(QUIC_VAR) {
            Ok(text) => Tuning::parse(&text)?,
            Err(_) => Tuning::default(),
        };
        if let Ok(text) = std::env::var(UDP_PAYLOAD_VAR) {
            tuning.payload = Some(parse_payload(&text)?);
        }
        Ok(tuning)
    }

    /// The defaults changed by `text`: comma-separated `key=value` pairs, keys `cc`
    /// (`bbr2`, `cubic`, `reno`), `relaxed-loss` and `pacing` (`on`, `off`), `stream-window`
    /// and `conn-window` (bytes, with an optional `K` or `M` suffix, 64K to 1024M; the
    /// connection's at least the stream's). Unknown keys and bad values are refused, naming
    /// them.
    pub fn parse(text: &str) -> Result<Tuning, NetError> {
        let mut tuning = Tuning::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| refused(pair, "give key=value"))?;
            match key.trim() {
                "cc" => tuning.congestion = parse_congestion(pair, value.trim())?,
                "relaxed-loss" => tuning.relaxed_loss = parse_switch(pair, value.trim())?,
                "pacing" => tuning.pacing = parse_switch(pair, value.trim())?,
                "stream-window" => tuning.stream_window = parse_window(pair, value.trim())?,
                "conn-window" => tuning.conn_window = parse_window(pair, value.trim())?,
                _ => {
                    return Err(refused(
                        pair,
                        "keys are cc, relaxed-loss, pacing, stream-window, conn-window",
                    ))
                }
            }
        }
        if tuning.conn_window < tuning.stream_window {
            return Err(refused(text, "conn-window must be at least stream-window"));
        }
        Ok(tuning)
    }

    /// The UDP payload size on an endpoint whose paths are all loopback (`loopback`) or not.
    pub fn payload(&self, loopback: bool) -> usize {
        match self.payload {
            Some(bytes) => bytes,
            None if loopback => LOOPBACK_PAYLOAD,
            None => PATH_PAYLOAD,
        }
    }

    /// Applies these settings (and `idle_timeout`) to `c`, next to the limits every MoQ
    /// connection needs.
    pub(super) fn apply(&self, c: &mut quiche::Config, idle_timeout: Duration, loopback: bool) {
        c.set_max_idle_timeout(idle_timeout.as_millis() as u64);
        let payload = self.payload(loopback);
        c.set_max_recv_udp_payload_size(payload);
        c.set_max_send_udp_payload_size(payload);
        // Every limit quiche leaves at zero: without them the peer could open or send nothing.
        c.set_initial_max_data(self.conn_window);
        c.set_initial_max_stream_data_bidi_local(self.stream_window);
        c.set_initial_max_stream_data_bidi_remote(self.stream_window);
        c.set_initial_max_stream_data_uni(self.stream_window);
        c.set_initial_max_streams_bidi(128);
        // MoQ opens one unidirectional stream per group (subgroup): allow plenty.
        c.set_initial_max_streams_uni(10_000);
        c.set_disable_active_migration(true);
        // MoQ requires QUIC DATAGRAM to be negotiated.
        c.enable_dgram(true, 1024, 1024);
        c.set_cc_algorithm(match self.congestion {
            Congestion::Bbr2 => quiche::CongestionControlAlgorithm::Bbr2Gcongestion,
            Congestion::Cubic => quiche::CongestionControlAlgorithm::CUBIC,
            Congestion::Reno => quiche::CongestionControlAlgorithm::Reno,
        });
        c.set_enable_relaxed_loss_threshold(self.relaxed_loss);
        // With pacing off (or CUBIC, NewReno) quiche stamps every packet "now", so the loop
        // sends at once and quiche's RTT samples start when the packet really left.
        c.enable_pacing(self.pacing);
    }
}

fn refused(text: &str, why: &str) -> NetError {
    NetError::Config {
        what: format!("{QUIC_VAR}: {text:?}: {why}"),
    }
}

fn parse_congestion(pair: &str, value: &str) -> Result<Congestion, NetError> {
    match value {
        "bbr2" => Ok(Congestion::Bbr2),
        "cubic" => Ok(Congestion::Cubic),
        "reno" => Ok(Congestion::Reno),
        _ => Err(refused(pair, "cc is bbr2, cubic or reno")),
    }
}

fn parse_switch(pair: &str, value: &str) -> Result<bool, NetError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(refused(pair, "give on or off")),
    }
}

fn parse_window(pair: &str, value: &str) -> Result<u64, NetError> {
    let (digits, unit) = match value.as_bytes().last() {
        Some(b'K' | b'k') => (&value[..value.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&value[..value.len() - 1], 1 << 20),
        _ => (value, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|bytes| WINDOW_RANGE.contains(bytes))
        .ok_or_else(|| refused(pair, "give a window from 64K to 1024M"))
}

fn parse_payload(text: &str) -> Result<usize, NetError> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|bytes| PAYLOAD_RANGE.contains(bytes))
        .ok_or_else(|| NetError::Config {
            what: format!("{UDP_PAYLOAD_VAR}={text:?}: give a UDP payload size from 1200 to 65527"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_the_defaults() {
        assert_eq!(Tuning::parse("").unwrap(), Tuning::default());
        assert_eq!(Tuning::parse(" , ").unwrap(), Tuning::default());
    }

    #[test]
    fn every_key_changes_its_setting() {
        let t = Tuning::parse(
            "cc=cubic, relaxed-loss=off,pacing=off,stream-window=1M,conn-window=65536K",
        )
        .unwrap();
        assert_eq!(t.congestion, Congestion::Cubic);
        assert!(!t.relaxed_loss);
        assert!(!t.pacing);
        assert!(Tuning::parse("pacing=on").unwrap().pacing);
        assert_eq!(t.stream_window, 1 << 20);
        assert_eq!(t.conn_window, 64 << 20);
        assert_eq!(
            Tuning::parse("cc=reno").unwrap().congestion,
            Congestion::Reno
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_them() {
        for (text, named) in [
            ("cc=vegas", "cc=vegas"),
            ("pacing=yes", "pacing=yes"),
            ("pacing", "pacing"),
            ("window=1M", "window=1M"),
            ("stream-window=1K", "stream-window=1K"),
            ("stream-window=2048M", "stream-window=2048M"),
            ("stream-window=99999999999999999999", "stream-window"),
            ("stream-window=-1", "stream-window=-1"),
            (
                "stream-window=8M,conn-window=4M",
                "conn-window must be at least",
            ),
        ] {
            match Tuning::parse(text) {
                Err(NetError::Config { what }) => {
                    assert!(
                        what.contains(QUIC_VAR) && what.contains(named),
                        "{text}: {what}"
                    )
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn payload_is_checked_and_defaults_by_path() {
        assert_eq!(parse_payload(" 1350 ").unwrap(), 1350);
        for bad in ["1199", "65528", "big", ""] {
            assert!(
                matches!(parse_payload(bad), Err(NetError::Config { .. })),
                "{bad}"
            );
        }
        let t = Tuning::default();
        assert_eq!(
            (t.payload(true), t.payload(false)),
            (LOOPBACK_PAYLOAD, PATH_PAYLOAD)
        );
    }
}
