//! [`RetryPolicy`]: when a live HTTP source (a tuner, a plain URL) is dialled, read, given up on
//! or dialled again — the capture's rules for a first-byte timeout, stalls, flaps, outages and
//! back-off, in one place.
//!
//! A sans-I/O owner: it is told what the connection did (dialled, bytes arrived, the read
//! failed, the body ended, the device refused) with the time, and hands back [`Action`]s: dial
//! this URL, keep reading, mark a gap, tell people, wait until a deadline, end. It never touches
//! a socket, sleeps or reads the clock; `capture::live` does, and sleeps only until the
//! deadline it is given.
//!
//! Drive it like this: call [`RetryPolicy::poll`] with the time and do what it says: dial and
//! report the outcome; read once and report what the read gave ([`Action::Read`]); mark a gap
//! or log; close the stream and sleep until the deadline ([`Action::Wait`]); then poll again,
//! until [`Action::End`] (the policy is then spent). While reading, its deadline is the stall
//! moment, which it acts on at the first poll from then on: reads wait only a few milliseconds.
//!
//! The rules (docs/USAGE.md, `record`):
//! - The first connection is not retried: an error there ends the capture as it is (a refusing
//!   device, no connection), and so does a stream that sends nothing within the first-byte
//!   timeout (no signal lock).
//! - Once open, a stream that sends nothing for the first-byte timeout has stalled; it, a read
//!   error and an early end of the body (before a device `duration=` was served) break the
//!   connection.
//! - A connection that broke after delivering starts an outage, marked by one gap however many
//!   attempts it takes. Within an outage the source is dialled again after a back-off of
//!   0.5 s doubling to 8 s ([`Backoff`]); the outage ends with the first byte, so the next one
//!   starts at 0.5 s again.
//! - An outage that has lasted [`CaptureOptions::signal_loss_timeout`] since the last byte when
//!   an attempt fails ends the capture ([`CaptureError::Lost`]).
//! - Connections in a row that broke within [`RECOVERED_AFTER`] of being dialled (and, before
//!   the stream ever started, every failure) are flaps; more than
//!   [`CaptureOptions::max_reconnects`] end the capture.
//! - With a device duration, the body ending within [`DURATION_SLACK`] of it, or less than a
//!   second of it left when it is time to dial again, ends the capture normally; each dial asks
//!   for what is left.

use super::{CaptureEnd, CaptureError, CaptureOptions};
use crate::retry::Backoff;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The wait before each reconnect within one outage: 0.5 s, doubling to 8 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
/// A duration body that ends this close to its duration ended normally.
const DURATION_SLACK: Duration = Duration::from_millis(1500);
/// A connection that streamed at least this long before breaking counts as a recovery; shorter
/// ones keep counting as flaps, so a source that flaps every few seconds ends the run.
const RECOVERED_AFTER: Duration = Duration::from_secs(30);

/// What the capture should do next.
#[derive(Debug)]
pub(super) enum Action {
    /// Open a connection to this URL, then report [`RetryPolicy::connected`] or
    /// [`RetryPolicy::failed`].
    Dial(String),
    /// Read once from the open stream, report what came, and poll again. Reads wait only a
    /// short while: a stream that sends nothing for the first-byte timeout has stalled, which
    /// the first poll from then on acts on.
    Read,
    /// The stream broke after delivering: mark one gap in the ring.
    MarkGap,
    /// Tell people (a warning).
    Report(Notice),
    /// Close the stream, if one is open, and poll again at this time.
    Wait(Instant),
    /// The capture is over.
    End(Result<CaptureEnd, CaptureError>),
}

/// What the capture tells people while it retries.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Notice {
    /// Before the stream ever started: dialling again, one of the flaps allowed.
    Reconnecting {
        /// Why the last connection failed.
        why: String,
        /// This flap's number.
        flap: u32,
        /// The flaps allowed.
        max: u32,
    },
    /// In an outage: dialling again after `wait`.
    Retrying {
        /// Why the last attempt failed.
        why: String,
        /// This attempt's number within the outage.
        attempt: u32,
        /// The back-off before it.
        wait: Duration,
        /// How long the source has sent nothing.
        silent_for: Duration,
        /// The signal-loss timeout.
        give_up_after: Duration,
    },
    /// An outage is over: the first byte came.
    StreamsAgain {
        /// The URL.
        url: String,
        /// How long the source sent nothing.
        silent_for: Duration,
        /// The attempts the outage took.
        attempts: u32,
        /// The outage's number (gaps so far).
        gap: u64,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Reconnecting { why, flap, max } => {
                write!(f, "{why}; reconnecting (attempt {flap} of {max})")
            }
            Notice::Retrying {
                why,
                attempt,
                wait,
                silent_for,
                give_up_after,
            } => write!(
                f,
                "{why}; reconnect attempt {attempt} in {:.1} s ({:.0} s without data, giving up \
                 after {} s)",
                wait.as_secs_f64(),
                silent_for.as_secs_f64(),
                give_up_after.as_secs()
            ),
            Notice::StreamsAgain {
                url,
                silent_for,
                attempts,
                gap,
            } => write!(
                f,
                "{url} streams again after {:.1} s without data and {attempts} reconnect \
                 attempts (gap {gap})",
                silent_for.as_secs_f64()
            ),
        }
    }
}

/// Where the connection is.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Time to dial.
    Dial,
    /// Dialled at `since`; the stream is not open yet.
    Dialling { since: Instant },
    /// Open: dialled at `since`, `received` bytes so far, the stall clock running from `last`
    /// (the last byte, or the opening).
    Streaming {
        since: Instant,
        received: u64,
        last: Instant,
    },
    /// Waiting to dial again.
    Waiting { until: Instant },
    /// [`Action::End`] was handed out.
    Over,
}

/// An outage of a source that had streamed (or, before it ever did, the failures so far): since
/// when nothing has arrived, the attempts made since, and the back-off between them.
#[derive(Debug)]
struct Outage {
    since: Instant,
    attempts: u32,
    backoff: Backoff,
}

impl Outage {
    fn since(since: Instant) -> Outage {
        Outage {
            since,
            attempts: 0,
            backoff: RECONNECT,
        }
    }
}

/// The retry rules of one live HTTP capture; see the module documentation.
pub(super) struct RetryPolicy<'a> {
    url_for: &'a dyn Fn(Option<u64>) -> String,
    first_byte_timeout: Duration,
    max_reconnects: u32,
    signal_loss_timeout: Duration,
    /// The device duration (HDHomeRun `duration=`), measured from `started`.
    duration: Option<Duration>,
    started: Instant,
    /// The URL last dialled.
    url: String,
    dials: u64,
    state: State,
    /// Connections in a row that streamed and broke within [`RECOVERED_AFTER`] (or, before any
    /// data, every failure): a flapping source.
    flaps: u32,
    streamed: bool,
    outage: Option<Outage>,
    gaps: u64,
    /// Actions to hand out before the state's own.
    queued: VecDeque<Action>,
}

impl<'a> RetryPolicy<'a> {
    /// A capture starting `now`. `url_for` gives the URL for a remaining device duration in
    /// seconds; `duration` is that device duration (`None`: no `duration=`, or a source that
    /// is not a device).
    pub(super) fn new(
        url_for: &'a dyn Fn(Option<u64>) -> String,
        options: &CaptureOptions,
        duration: Option<Duration>,
        now: Instant,
    ) -> RetryPolicy<'a> {
        RetryPolicy {
            url_for,
            first_byte_timeout: options.first_byte_timeout,
            max_reconnects: options.max_reconnects,
            signal_loss_timeout: options.signal_loss_timeout,
            duration,
            started: now,
            url: String::new(),
            dials: 0,
            state: State::Dial,
            flaps: 0,
            streamed: false,
            outage: None,
            gaps: 0,
            queued: VecDeque::new(),
        }
    }

    /// What to do at `now`. Not to be called again after [`Action::End`].
    pub(super) fn poll(&mut self, now: Instant) -> Action {
        if let Some(action) = self.queued.pop_front() {
            if matches!(action, Action::End(_)) {
                self.state = State::Over;
            }
            return action;
        }
        match self.state {
            State::Dial => {
                // The first dial asks for the whole duration; later ones for what is left.
                let elapsed = match self.dials {
                    0 => Duration::ZERO,
                    _ => now.saturating_duration_since(self.started),
                };
                let remaining = self.duration.map(|d| d.saturating_sub(elapsed));
                if self.dials > 0 && remaining.is_some_and(|r| r < Duration::from_secs(1)) {
                    self.queued.push_back(Action::End(Ok(CaptureEnd::Finished)));
                    return self.poll(now);
                }
                self.dials += 1;
                self.url = (self.url_for)(remaining.map(|r| r.as_secs().max(1)));
                self.state = State::Dialling { since: now };
                Action::Dial(self.url.clone())
            }
            State::Streaming {
                since,
                received,
                last,
            } => {
                if now < last + self.first_byte_timeout {
                    return Action::Read;
                }
                let why = format!(
                    "{} sent no data for {} s",
                    self.url,
                    self.first_byte_timeout.as_secs()
                );
                self.broke(why, received, last, since, now);
                self.poll(now)
            }
            State::Waiting { until } if now < until => Action::Wait(until),
            State::Waiting { .. } => {
                self.state = State::Dial;
                self.poll(now)
            }
            State::Dialling { .. } => {
                panic!("polled while dialling: report connected or failed first")
            }
            State::Over => panic!("polled after the end"),
        }
    }

    /// The dialled stream is open (a 2xx head came): reading starts, the stall clock with it.
    pub(super) fn connected(&mut self, now: Instant) {
        if let State::Dialling { since } = self.state {
            self.state = State::Streaming {
                since,
                received: 0,
                last: now,
            };
        }
    }

    /// The dial failed: the device refused, no connection, no response head in time.
    pub(super) fn failed(&mut self, error: CaptureError, now: Instant) {
        let State::Dialling { since } = self.state else {
            return;
        };
        if self.dials == 1 {
            // The first connection is not retried.
            self.queued.push_back(Action::End(Err(error)));
            return;
        }
        self.lost(error.to_string(), 0, since, since, now);
    }

    /// `bytes` (more than none) arrived.
    pub(super) fn received(&mut self, bytes: usize, now: Instant) {
        let State::Streaming {
            since, received, ..
        } = self.state
        else {
            return;
        };
        if received == 0 {
            if let Some(over) = self.outage.take() {
                self.queued.push_back(Action::Report(Notice::StreamsAgain {
                    url: self.url.clone(),
                    silent_for: now.saturating_duration_since(over.since),
                    attempts: over.attempts,
                    gap: self.gaps,
                }));
            }
        }
        self.state = State::Streaming {
            since,
            received: received + bytes as u64,
            last: now,
        };
    }

    /// A read failed (not a timeout: that is nothing arriving, which [`RetryPolicy::poll`]
    /// judges).
    pub(super) fn read_failed(&mut self, error: &std::io::Error, now: Instant) {
        if let State::Streaming {
            since,
            received,
            last,
        } = self.state
        {
            let why = format!("{}: {error}", self.url);
            self.broke(why, received, last, since, now);
        }
    }

    /// The body ended (the server closed it, or its length was served).
    pub(super) fn ended(&mut self, now: Instant) {
        let State::Streaming {
            since,
            received,
            last,
        } = self.state
        else {
            return;
        };
        if let Some(d) = self.duration {
            if now.saturating_duration_since(self.started) + DURATION_SLACK >= d {
                self.queued.push_back(Action::End(Ok(CaptureEnd::Finished)));
                return;
            }
        }
        let why = format!("{} ended the stream", self.url);
        self.lost(why, received, last, since, now);
    }

    /// The open stream dialled at `dialled` stalled or failed (not ended) for `why` after
    /// `received` bytes, the last at `last_byte`.
    fn broke(
        &mut self,
        why: String,
        received: u64,
        last_byte: Instant,
        dialled: Instant,
        now: Instant,
    ) {
        if received == 0 && self.dials == 1 {
            // The first stream opened but sent nothing: no signal lock. Not retried.
            let error = CaptureError::NoData(self.url.clone(), self.first_byte_timeout);
            self.queued.push_back(Action::End(Err(error)));
            return;
        }
        self.lost(why, received, last_byte, dialled, now);
    }

    /// The connection dialled at `dialled` is over for `why` after `received` bytes, the last at
    /// `last_byte`: the outage, flap and signal-loss rules, then the back-off.
    fn lost(
        &mut self,
        why: String,
        received: u64,
        last_byte: Instant,
        dialled: Instant,
        now: Instant,
    ) {
        if received > 0 {
            // The stream broke after delivering: an outage begins, and one gap marks it.
            self.streamed = true;
            self.gaps += 1;
            self.queued.push_back(Action::MarkGap);
            self.outage = Some(Outage::since(last_byte));
        }
        if received > 0 || !self.streamed {
            // A connection that streamed for a while means the last outage is over: count only
            // flaps in a row (short-lived connections, and failures before any data).
            let recovered =
                received > 0 && now.saturating_duration_since(dialled) >= RECOVERED_AFTER;
            self.flaps = if recovered { 1 } else { self.flaps + 1 };
            if self.flaps > self.max_reconnects {
                let error = CaptureError::Lost {
                    url: self.url.clone(),
                    attempts: self.flaps - 1,
                    last: why,
                };
                self.queued.push_back(Action::End(Err(error)));
                return;
            }
        }
        let over = self.outage.get_or_insert_with(|| Outage::since(dialled));
        let silent_for = now.saturating_duration_since(over.since);
        if self.streamed && silent_for >= self.signal_loss_timeout {
            let error = CaptureError::Lost {
                url: self.url.clone(),
                attempts: over.attempts,
                last: format!(
                    "{why}; no data for {:.0} s, the signal-loss timeout",
                    silent_for.as_secs_f64()
                ),
            };
            self.queued.push_back(Action::End(Err(error)));
            return;
        }
        over.attempts += 1;
        let wait = over.backoff.next_wait();
        let notice = if self.streamed {
            Notice::Retrying {
                why,
                attempt: over.attempts,
                wait,
                silent_for,
                give_up_after: self.signal_loss_timeout,
            }
        } else {
            Notice::Reconnecting {
                why,
                flap: self.flaps,
                max: self.max_reconnects,
            }
        };
        self.queued.push_back(Action::Report(notice));
        self.state = State::Waiting { until: now + wait };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://tuner/auto/v5.1";

    fn url_for(duration: Option<u64>) -> String {
        match duration {
            Some(s) => format!("{URL}?duration={s}"),
            None => URL.to_string(),
        }
    }

    fn options() -> CaptureOptions {
        CaptureOptions {
            first_byte_timeout: Duration::from_secs(4),
            max_reconnects: 5,
            signal_loss_timeout: Duration::from_secs(60),
            ..CaptureOptions::default()
        }
    }

    fn secs(t: Instant, s: f64) -> Instant {
        t + Duration::from_secs_f64(s)
    }

    fn refused() -> CaptureError {
        CaptureError::Refused {
            url: URL.into(),
            status: 503,
            device: Some((807, "No Video Data".into())),
        }
    }

    /// Polls at `now` until the policy dials, reads, waits or ends; the warnings and gap marks
    /// on the way, and that action.
    fn drain(p: &mut RetryPolicy, now: Instant) -> (Vec<Action>, Action) {
        let mut side = Vec::new();
        loop {
            match p.poll(now) {
                a @ (Action::MarkGap | Action::Report(_)) => side.push(a),
                a => return (side, a),
            }
        }
    }

    /// Dials at `now` and gets the stream open: a byte arrives at `now`.
    fn stream_from(p: &mut RetryPolicy, now: Instant) -> Vec<Action> {
        let (side, action) = drain(p, now);
        assert!(matches!(action, Action::Dial(_)), "{action:?}");
        p.connected(now);
        p.received(188, now);
        side
    }

    /// Polls at `now` expecting a wait; returns its deadline and the warnings and marks before.
    fn wait_at(p: &mut RetryPolicy, now: Instant) -> (Vec<Action>, Instant) {
        match drain(p, now) {
            (side, Action::Wait(until)) => (side, until),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    fn gaps(side: &[Action]) -> usize {
        side.iter().filter(|a| matches!(a, Action::MarkGap)).count()
    }

    #[test]
    fn the_first_connection_is_not_retried() {
        let t = Instant::now();
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        assert!(matches!(p.poll(t), Action::Dial(url) if url == URL));
        p.failed(refused(), secs(t, 0.1));
        assert!(matches!(
            p.poll(secs(t, 0.1)),
            Action::End(Err(CaptureError::Refused { status: 503, .. }))
        ));
        // Open but silent: no signal lock, at the first-byte timeout and not before.
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        p.poll(t);
        p.connected(secs(t, 0.5));
        assert!(matches!(p.poll(secs(t, 4.49)), Action::Read));
        assert!(matches!(
            p.poll(secs(t, 4.5)),
            Action::End(Err(CaptureError::NoData(url, d))) if url == URL && d.as_secs() == 4
        ));
    }

    #[test]
    fn a_stall_marks_one_gap_and_is_retried_with_a_back_off_that_doubles_to_8_s() {
        let t = Instant::now();
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        stream_from(&mut p, t);
        p.received(188, secs(t, 10.0));
        // Nothing more: a stall four seconds after the last byte.
        assert!(matches!(p.poll(secs(t, 13.9)), Action::Read));
        let (side, until) = wait_at(&mut p, secs(t, 14.0));
        assert_eq!(gaps(&side), 1);
        assert_eq!(until, secs(t, 14.5));
        assert!(matches!(
            &side[1],
            Action::Report(Notice::Retrying { why, attempt: 1, .. }) if why.contains("sent no data for 4 s")
        ));
        // Until then it only waits.
        assert!(matches!(p.poll(secs(t, 14.2)), Action::Wait(u) if u == until));
        // Each attempt refused: the waits double to 8 s, and no further gap is marked.
        let mut now = until;
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert!(matches!(drain(&mut p, now), (_, Action::Dial(_))));
            p.failed(refused(), now);
            let (side, until) = wait_at(&mut p, now);
            assert_eq!(gaps(&side), 0);
            waits.push((until - now).as_secs_f64());
            now = until;
        }
        assert_eq!(waits, [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
    }

    #[test]
    fn streaming_again_ends_the_outage_and_starts_the_back_off_over() {
        let t = Instant::now();
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        stream_from(&mut p, t);
        p.received(188, secs(t, 40.0));
        p.read_failed(&std::io::ErrorKind::ConnectionReset.into(), secs(t, 40.0));
        let (_, until) = wait_at(&mut p, secs(t, 40.0));
        assert_eq!(until, secs(t, 40.5));
        drain(&mut p, until);
        p.failed(refused(), until);
        let (_, until) = wait_at(&mut p, until);
        assert_eq!(until, secs(t, 41.5), "the second wait is 1 s");
        // It streams again: people are told, once.
        let side = stream_from(&mut p, until);
        assert!(side.is_empty());
        match drain(&mut p, until) {
            (side, Action::Read) => match side.as_slice() {
                [Action::Report(Notice::StreamsAgain {
                    silent_for,
                    attempts: 2,
                    gap: 1,
                    ..
                })] => assert_eq!(*silent_for, Duration::from_millis(1500)),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        // The next outage is a new gap, and its first wait is 0.5 s again.
        let now = secs(t, 80.0);
        p.received(188, now);
        p.ended(now);
        let (side, until) = wait_at(&mut p, now);
        assert_eq!(gaps(&side), 1);
        assert_eq!(until, secs(t, 80.5));
    }

    #[test]
    fn an_outage_gives_up_at_the_first_failure_after_the_signal_loss_timeout() {
        let t = Instant::now();
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        stream_from(&mut p, t);
        // The last byte at 5 s; the stall is noticed at 9 s.
        p.received(188, secs(t, 5.0));
        let (_, mut now) = wait_at(&mut p, secs(t, 9.0));
        let mut attempts = 1;
        loop {
            assert!(matches!(drain(&mut p, now), (_, Action::Dial(_))));
            // Each attempt opens and gets nothing for the first-byte timeout.
            p.connected(now);
            let stalled = now + Duration::from_secs(4);
            match drain(&mut p, stalled) {
                (_, Action::Wait(until)) => {
                    assert!(stalled < secs(t, 65.0), "still retrying at {stalled:?}");
                    attempts += 1;
                    now = until;
                }
                (
                    _,
                    Action::End(Err(CaptureError::Lost {
                        attempts: a, last, ..
                    })),
                ) => {
                    assert!(stalled >= secs(t, 65.0), "gave up early");
                    assert_eq!(a, attempts);
                    assert!(last.contains("the signal-loss timeout"), "{last}");
                    return;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_source_that_keeps_flapping_ends_the_capture() {
        let t = Instant::now();
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        let mut now = t;
        // Five short-lived connections in a row are retried; the sixth flap ends it.
        for flap in 1..=6 {
            stream_from(&mut p, now);
            now += Duration::from_secs(10);
            p.ended(now);
            match drain(&mut p, now) {
                (_, Action::Wait(until)) if flap <= 5 => now = until,
                (
                    _,
                    Action::End(Err(CaptureError::Lost {
                        attempts: 5, last, ..
                    })),
                ) if flap == 6 => {
                    assert!(last.contains("ended the stream"), "{last}");
                }
                other => panic!("flap {flap}: {other:?}"),
            }
        }
        // A connection that streamed for 30 s counts as a recovery: the count starts over.
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        let mut now = t;
        for round in 0..20 {
            stream_from(&mut p, now);
            now += Duration::from_secs(if round % 5 == 4 { 30 } else { 10 });
            p.received(188, now);
            p.ended(now);
            match drain(&mut p, now) {
                (_, Action::Wait(until)) => now = until,
                other => panic!("round {round}: {other:?}"),
            }
        }
    }

    #[test]
    fn failures_before_the_stream_ever_started_are_flaps() {
        let t = Instant::now();
        let mut p = RetryPolicy::new(&url_for, &options(), None, t);
        // The first body ends empty (not a device duration): retried, as a flap.
        p.poll(t);
        p.connected(t);
        p.ended(secs(t, 1.0));
        let (side, mut now) = wait_at(&mut p, secs(t, 1.0));
        assert_eq!(gaps(&side), 0, "nothing streamed, nothing to mark");
        assert!(matches!(
            &side[0],
            Action::Report(Notice::Reconnecting {
                flap: 1,
                max: 5,
                ..
            })
        ));
        for flap in 2..=6 {
            drain(&mut p, now);
            p.failed(refused(), now);
            match drain(&mut p, now) {
                (_, Action::Wait(until)) if flap <= 5 => now = until,
                (_, Action::End(Err(CaptureError::Lost { attempts: 5, .. }))) if flap == 6 => {}
                other => panic!("flap {flap}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_device_duration_is_asked_for_and_ends_the_capture() {
        let t = Instant::now();
        let duration = Some(Duration::from_secs(30));
        let mut p = RetryPolicy::new(&url_for, &options(), duration, t);
        assert!(matches!(p.poll(t), Action::Dial(url) if url.ends_with("?duration=30")));
        p.connected(t);
        p.received(188, t);
        // A body that ends early breaks; the redial asks for what is left.
        p.ended(secs(t, 10.0));
        let (_, until) = wait_at(&mut p, secs(t, 10.0));
        assert!(matches!(p.poll(until), Action::Dial(url) if url.ends_with("?duration=19")));
        p.connected(until);
        p.received(188, until);
        // Ending within 1.5 s of the duration is the normal end.
        p.ended(secs(t, 28.5));
        assert!(matches!(
            drain(&mut p, secs(t, 28.5)),
            (_, Action::End(Ok(CaptureEnd::Finished)))
        ));
        // Less than a second left when it is time to dial again: finished.
        let mut p = RetryPolicy::new(&url_for, &options(), duration, t);
        stream_from(&mut p, t);
        p.read_failed(&std::io::ErrorKind::ConnectionReset.into(), secs(t, 28.0));
        let (_, until) = wait_at(&mut p, secs(t, 28.0));
        assert!(matches!(
            drain(&mut p, until + Duration::from_secs(2)),
            (_, Action::End(Ok(CaptureEnd::Finished)))
        ));
    }
}
