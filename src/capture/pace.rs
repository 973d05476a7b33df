//! Stream time from PCRs: paces a file at its real-time rate and ends a capture after a duration
//! of stream. Reads the system clock (it is an I/O edge) but parses only packet headers.

use crate::stop::StopFlag;
use crate::ts::clock::{Pts, TICKS_PER_SECOND};
use crate::ts::packet::{Packet, Pid};
use crate::ts::sync::{Framed, Framer};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Longest single sleep, so a stop request is noticed quickly.
const SLEEP_STEP: Duration = Duration::from_millis(100);

/// Tracks stream time across the bytes it is shown.
pub(super) struct PcrPacer {
    realtime: bool,
    duration_ticks: Option<u64>,
    framer: Framer,
    pcr_pid: Option<Pid>,
    last_pcr: Option<Pts>,
    elapsed_ticks: u64,
    started: Option<Instant>,
}

impl PcrPacer {
    /// A pacer that sleeps to real time if `realtime`, and breaks after `duration` of stream.
    pub(super) fn new(realtime: bool, duration: Option<Duration>) -> PcrPacer {
        PcrPacer {
            realtime,
            duration_ticks: duration.map(|d| (d.as_secs_f64() * TICKS_PER_SECOND as f64) as u64),
            framer: Framer::new(),
            pcr_pid: None,
            last_pcr: None,
            elapsed_ticks: 0,
            started: None,
        }
    }

    /// Accounts for `bytes` just captured; sleeps if they are ahead of real time. Breaks when the
    /// duration is reached.
    pub(super) fn after(&mut self, bytes: &[u8], stop: &StopFlag) -> ControlFlow<()> {
        if !self.realtime && self.duration_ticks.is_none() {
            return ControlFlow::Continue(());
        }
        let (pcr_pid, last_pcr, elapsed) = (
            &mut self.pcr_pid,
            &mut self.last_pcr,
            &mut self.elapsed_ticks,
        );
        self.framer.push(bytes, &mut |framed| {
            let Framed::Packet { packet: raw, .. } = framed else {
                return;
            };
            let Ok(packet) = Packet::parse(raw) else {
                return;
            };
            let Some(pcr) = packet.adaptation().pcr else {
                return;
            };
            if *pcr_pid.get_or_insert(packet.pid()) != packet.pid() {
                return;
            }
            if let Some(last) = *last_pcr {
                // A jump back or far forward is a splice: stream time goes on from here.
                let delta = pcr.base().wrapping_delta(last);
                if (0..=TICKS_PER_SECOND as i64).contains(&delta) {
                    *elapsed += delta as u64;
                }
            }
            *last_pcr = Some(pcr.base());
        });
        let started = *self.started.get_or_insert_with(Instant::now);
        if self.realtime {
            let due =
                started + Duration::from_micros(self.elapsed_ticks * 1_000_000 / TICKS_PER_SECOND);
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                if stop.is_set() {
                    return ControlFlow::Break(());
                }
                std::thread::sleep(wait.min(SLEEP_STEP));
            }
        }
        match self.duration_ticks {
            Some(limit) if self.elapsed_ticks >= limit => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}
