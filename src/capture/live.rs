//! Live sources: standard input, and HTTP streams (plain URLs and HDHomeRun tuners) with the
//! device's errors, a first-byte timeout, and riding through signal loss: once the stream has
//! started, a source that stalls, drops, refuses (805, 807) or cannot be reached is dialled again
//! with a doubling back-off until it streams again or has delivered nothing for
//! [`CaptureOptions::signal_loss_timeout`]. Each outage leaves one gap marker in the ring, so the
//! chunker drops the chunk it was building and flags the next one; chunk indices come from the
//! stream's own clock, so they carry on after the gap as on any node that saw no gap.

use super::http::{self, Body, HttpError, HttpUrl};
use super::pace::Pacer;
use super::ring::Producer;
use super::{CaptureEnd, CaptureError, CaptureOptions, READ_SIZE};
use crate::hdhr::DeviceError;
use crate::stop::StopFlag;
use std::io::{ErrorKind, Read};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Longest wait for a TCP connection to a source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first wait between reconnect attempts; it doubles with each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A duration body that ends this close to its duration ended normally.
const DURATION_SLACK: Duration = Duration::from_millis(1500);
/// A live HTTP source's bytes gather in the socket until this many have arrived or
/// [`GATHER_WAIT`] has passed. A tuner streams in small bursts; waking for each as it lands costs
/// more system calls and context switches than the rest of the pipeline. Up to 26 Mb/s this is
/// one read every [`GATHER_WAIT`] (about 24 KB at 19.39 Mb/s), never two wake-ups for one read; a
/// faster stream is read whenever this much has arrived, woken by the data itself.
const GATHER_BYTES: usize = 32 * 1024;
/// The longest a byte waits in the socket for others to gather (what gathering adds to the
/// latency at most), and how often the capture checks the stop flag and the stall clock.
const GATHER_WAIT: Duration = Duration::from_millis(10);
/// A connection that streamed at least this long before breaking counts as a recovery; shorter
/// ones keep counting as flaps, so a source that flaps every few seconds ends the run.
const RECOVERED_AFTER: Duration = Duration::from_secs(30);

/// How one read session ended.
enum Session {
    /// The stop flag was set, or the duration of stream was reached.
    Done(CaptureEnd),
    /// The body ended (EOF) after `received` bytes, the last at `last_byte`.
    Ended { received: u64, last_byte: Instant },
    /// The stream broke (read error or no data for the timeout) after `received` bytes, the
    /// last at `last_byte`.
    Broken {
        why: String,
        received: u64,
        last_byte: Instant,
    },
}

/// Copies standard input into the ring until it ends, the duration of stream is reached or the
/// stop flag is set.
pub(super) fn pump_stdin(
    options: &CaptureOptions,
    producer: &mut Producer,
    stop: &StopFlag,
) -> Result<CaptureEnd, CaptureError> {
    let mut pacer = Pacer::new(false, options.duration);
    let mut stdin = std::io::stdin().lock();
    match read_session(
        &mut stdin,
        producer,
        &mut pacer,
        stop,
        "standard input",
        options.first_byte_timeout,
        &mut || {},
    ) {
        Session::Done(end) => Ok(end),
        Session::Ended { .. } => Ok(CaptureEnd::Finished),
        Session::Broken { why, .. } => Err(CaptureError::Read(
            "standard input".into(),
            std::io::Error::other(why),
        )),
    }
}

/// An outage of a live source: since when nothing has arrived, and the attempts made since.
struct Outage {
    since: Instant,
    attempts: u32,
}

/// Streams an HTTP source into the ring; see the module doc. `url_for` gives the URL to request
/// for a remaining duration in seconds (HDHomeRun `duration=`); without it the URL is fixed and a
/// duration is measured in stream time.
pub(super) fn capture_http(
    url_for: &dyn Fn(Option<u64>) -> String,
    device_duration: bool,
    options: &CaptureOptions,
    producer: &mut Producer,
    stop: &StopFlag,
) -> Result<CaptureEnd, CaptureError> {
    let device_duration = if device_duration {
        options.duration
    } else {
        None
    };
    let mut pacer = Pacer::new(
        false,
        if device_duration.is_some() {
            None
        } else {
            options.duration
        },
    );
    let started = Instant::now();
    let mut url = url_for(device_duration.map(|d| d.as_secs().max(1)));
    // Connections in a row that streamed and broke within RECOVERED_AFTER (or, before any
    // data, every failure): a flapping source.
    let mut flaps = 0u32;
    let mut streamed = false;
    let mut outage: Option<Outage> = None;
    let mut gaps = 0u64;
    for connection in 0u64.. {
        let connected = Instant::now();
        let mut on_first_byte = || {
            if let Some(over) = outage.take() {
                log::warn!(
                    "capture: {url} streams again after {:.1} s without data and {} reconnect \
                     attempts (gap {gaps})",
                    over.since.elapsed().as_secs_f64(),
                    over.attempts
                );
            }
        };
        // One clock since the last byte serves as first-byte timeout and stall detector.
        let session = open(&url, options).and_then(|mut body| {
            body.gather(GATHER_BYTES, GATHER_WAIT)
                .map_err(|e| CaptureError::Unreachable(url.clone(), e.to_string()))?;
            Ok(read_session(
                &mut body,
                producer,
                &mut pacer,
                stop,
                &url,
                options.first_byte_timeout,
                &mut on_first_byte,
            ))
        });
        let (why, received, last_byte) = match session {
            Err(e) if connection == 0 => return Err(e),
            Err(e) => (e.to_string(), 0, connected),
            Ok(Session::Done(end)) => return Ok(end),
            // Headers came but no first byte: no signal lock. The first request is not retried.
            Ok(Session::Broken { received: 0, .. }) if connection == 0 => {
                return Err(CaptureError::NoData(url, options.first_byte_timeout));
            }
            Ok(Session::Broken {
                why,
                received,
                last_byte,
            }) => (why, received, last_byte),
            Ok(Session::Ended {
                received,
                last_byte,
            }) => match device_duration {
                Some(d) if started.elapsed() + DURATION_SLACK >= d => {
                    return Ok(CaptureEnd::Finished)
                }
                _ => (format!("{url} ended the stream"), received, last_byte),
            },
        };
        if received > 0 {
            // The stream broke after delivering: an outage begins, and one gap marks it.
            streamed = true;
            gaps += 1;
            producer.mark_gap();
            outage = Some(Outage {
                since: last_byte,
                attempts: 0,
            });
        }
        if received > 0 || !streamed {
            // A connection that streamed for a while means the last outage is over: count only
            // flaps in a row (short-lived connections, and failures before any data).
            let recovered = received > 0 && connected.elapsed() >= RECOVERED_AFTER;
            flaps = if recovered { 1 } else { flaps + 1 };
            if flaps > options.max_reconnects {
                return Err(CaptureError::Lost {
                    url,
                    attempts: flaps - 1,
                    last: why,
                });
            }
        }
        let over = outage.get_or_insert(Outage {
            since: connected,
            attempts: 0,
        });
        let silent_for = over.since.elapsed();
        if streamed && silent_for >= options.signal_loss_timeout {
            return Err(CaptureError::Lost {
                url,
                attempts: over.attempts,
                last: format!(
                    "{why}; no data for {:.0} s, the signal-loss timeout",
                    silent_for.as_secs_f64()
                ),
            });
        }
        over.attempts += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (over.attempts - 1).min(5))
            .min(MAX_BACKOFF);
        if streamed {
            log::warn!(
                "capture: {why}; reconnect attempt {} in {:.1} s ({:.0} s without data, giving \
                 up after {} s)",
                over.attempts,
                backoff.as_secs_f64(),
                silent_for.as_secs_f64(),
                options.signal_loss_timeout.as_secs()
            );
        } else {
            log::warn!(
                "capture: {why}; reconnecting (attempt {flaps} of {})",
                options.max_reconnects
            );
        }
        if sleep_unless_stopped(backoff, stop) {
            return Ok(CaptureEnd::Stopped);
        }
        let remaining = device_duration.map(|d| d.saturating_sub(started.elapsed()));
        if remaining.is_some_and(|r| r < Duration::from_secs(1)) {
            return Ok(CaptureEnd::Finished);
        }
        url = url_for(remaining.map(|r| r.as_secs().max(1)));
    }
    unreachable!("the connection loop only ends by returning")
}

/// Opens the stream: an error status or no connection is a `CaptureError`.
fn open(url: &str, options: &CaptureOptions) -> Result<Body, CaptureError> {
    let parsed = HttpUrl::parse(url).map_err(|e| CaptureError::BadSource(e.to_string()))?;
    match http::get(&parsed, CONNECT_TIMEOUT, options.first_byte_timeout) {
        Ok((head, body)) if (200..300).contains(&head.status) => Ok(body),
        Ok((head, _)) => Err(CaptureError::Refused {
            url: url.to_string(),
            status: head.status,
            device: head
                .device_error
                .as_deref()
                .and_then(DeviceError::parse_header),
        }),
        Err(HttpError::Timeout) => Err(CaptureError::NoData(
            url.to_string(),
            options.first_byte_timeout,
        )),
        Err(e) => Err(CaptureError::Unreachable(url.to_string(), e.to_string())),
    }
}

/// Copies a body into the ring, in place, until it ends, breaks (no byte for `timeout`; a read
/// that times out sooner is waited on again), or capture should stop. `first_byte` is called
/// when the first byte arrives.
fn read_session(
    body: &mut dyn Read,
    producer: &mut Producer,
    pacer: &mut Pacer,
    stop: &StopFlag,
    what: &str,
    timeout: Duration,
    first_byte: &mut dyn FnMut(),
) -> Session {
    let mut received = 0u64;
    let mut last_byte = Instant::now();
    loop {
        if stop.is_set() {
            return Session::Done(CaptureEnd::Stopped);
        }
        let mut flow = ControlFlow::Continue(());
        let result = producer.fill(READ_SIZE, |span| {
            let n = read_retrying(body, span)?;
            flow = pacer.after(&span[..n], stop);
            Ok(n)
        });
        match result {
            Ok(0) => {
                return Session::Ended {
                    received,
                    last_byte,
                }
            }
            Ok(n) => {
                if received == 0 {
                    first_byte();
                }
                received += n as u64;
                last_byte = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                if last_byte.elapsed() >= timeout {
                    let why = format!("{what} sent no data for {} s", timeout.as_secs());
                    return Session::Broken {
                        why,
                        received,
                        last_byte,
                    };
                }
            }
            Err(e) => {
                return Session::Broken {
                    why: format!("{what}: {e}"),
                    received,
                    last_byte,
                }
            }
        }
        if flow.is_break() {
            return Session::Done(if stop.is_set() {
                CaptureEnd::Stopped
            } else {
                CaptureEnd::Finished
            });
        }
    }
}

fn read_retrying(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sleeps `total` in small steps; true if the stop flag was set meanwhile.
fn sleep_unless_stopped(total: Duration, stop: &StopFlag) -> bool {
    let until = Instant::now() + total;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if stop.is_set() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    stop.is_set()
}
