//! Live sources: standard input, and HTTP streams (plain URLs and HDHomeRun tuners) with the
//! device's errors, a first-byte timeout, and riding through signal loss: once the stream has
//! started, a source that stalls, drops, refuses (805, 807) or cannot be reached is dialled again
//! with a doubling back-off until it streams again or has delivered nothing for
//! [`CaptureOptions::signal_loss_timeout`]. Each outage leaves one gap marker in the ring, so the
//! chunker drops the chunk it was building and flags the next one; chunk indices come from the
//! stream's own clock, so they carry on after the gap as on any node that saw no gap.
//!
//! Those rules are [`RetryPolicy`]'s; this module only opens connections, reads into the ring,
//! reports what happened with the time, and sleeps until the policy's deadline.

use super::http::{self, Body, HttpError, HttpUrl};
use super::pace::PcrPacer;
use super::retry_policy::{Action, RetryPolicy};
use super::ring::Producer;
use super::{CaptureEnd, CaptureError, CaptureOptions, READ_SIZE};
use crate::hdhr::DeviceError;
use crate::stop::StopFlag;
use std::io::{ErrorKind, Read};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

/// Longest wait for a TCP connection to a source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A live HTTP source's bytes gather in the socket until this many have arrived or
/// [`GATHER_WAIT`] has passed. A tuner streams in small bursts; waking for each as it lands costs
/// more system calls and context switches than the rest of the pipeline. Up to 26 Mb/s this is
/// one read every [`GATHER_WAIT`] (about 24 KB at 19.39 Mb/s), never two wake-ups for one read; a
/// faster stream is read whenever this much has arrived, woken by the data itself.
const GATHER_BYTES: usize = 32 * 1024;
/// The longest a byte waits in the socket for others to gather (what gathering adds to the
/// latency at most), and how often the capture checks the stop flag and the stall clock.
const GATHER_WAIT: Duration = Duration::from_millis(10);
/// The longest single sleep of a back-off, so a stop request is noticed quickly.
const SLEEP_STEP: Duration = Duration::from_millis(100);

/// What one read from a live source gave.
enum Step {
    /// This many bytes went into the ring; `Break` when the duration of stream was reached or
    /// the stop flag was set while pacing.
    Bytes(usize, ControlFlow<()>),
    /// Nothing arrived within the read timeout.
    Nothing,
    /// The body ended (EOF).
    End,
    /// The read failed.
    Failed(std::io::Error),
}

/// Reads once from `body` into the ring, in place, and shows the bytes to the pacer.
fn read_step(
    body: &mut dyn Read,
    producer: &mut Producer,
    pacer: &mut PcrPacer,
    stop: &StopFlag,
) -> Step {
    let mut flow = ControlFlow::Continue(());
    let result = producer.fill(READ_SIZE, |span| {
        let n = read_retrying(body, span)?;
        flow = pacer.after(&span[..n], stop);
        Ok(n)
    });
    match result {
        Ok(0) => Step::End,
        Ok(n) => Step::Bytes(n, flow),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => Step::Nothing,
        Err(e) => Step::Failed(e),
    }
}

/// How a capture that reached its duration of stream, or was stopped while pacing, ended.
fn paced_end(stop: &StopFlag) -> CaptureEnd {
    if stop.is_set() {
        CaptureEnd::Stopped
    } else {
        CaptureEnd::Finished
    }
}

/// Copies standard input into the ring until it ends, the duration of stream is reached or the
/// stop flag is set. A read that times out is waited on again, up to the first-byte timeout.
pub(super) fn pump_stdin(
    options: &CaptureOptions,
    producer: &mut Producer,
    stop: &StopFlag,
) -> Result<CaptureEnd, CaptureError> {
    let mut pacer = PcrPacer::new(false, options.duration);
    let mut stdin = std::io::stdin().lock();
    let mut last_byte = Instant::now();
    let failed = |e| CaptureError::Read("standard input".into(), e);
    loop {
        if stop.is_set() {
            return Ok(CaptureEnd::Stopped);
        }
        match read_step(&mut stdin, producer, &mut pacer, stop) {
            Step::Bytes(_, ControlFlow::Break(())) => return Ok(paced_end(stop)),
            Step::Bytes(..) => last_byte = Instant::now(),
            Step::End => return Ok(CaptureEnd::Finished),
            Step::Nothing if last_byte.elapsed() < options.first_byte_timeout => {}
            Step::Nothing => {
                return Err(failed(std::io::Error::other(format!(
                    "no data for {} s",
                    options.first_byte_timeout.as_secs()
                ))))
            }
            Step::Failed(e) => return Err(failed(e)),
        }
    }
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
    // A device ends the body at its duration; another source's duration is stream time.
    let (device_duration, stream_duration) = if device_duration {
        (options.duration, None)
    } else {
        (None, options.duration)
    };
    let mut pacer = PcrPacer::new(false, stream_duration);
    let mut policy = RetryPolicy::new(url_for, options, device_duration, Instant::now());
    let mut body: Option<Body> = None;
    loop {
        if stop.is_set() {
            return Ok(CaptureEnd::Stopped);
        }
        match policy.poll(Instant::now()) {
            Action::Dial(url) => match open(&url, options) {
                Ok(opened) => {
                    body = Some(opened);
                    policy.connected(Instant::now());
                }
                Err(e) => policy.failed(e, Instant::now()),
            },
            Action::Read => {
                // The policy reads only after `connected`, which stored the body.
                let stream = body.as_mut().expect("a stream is open while reading");
                match read_step(stream, producer, &mut pacer, stop) {
                    Step::Bytes(_, ControlFlow::Break(())) => return Ok(paced_end(stop)),
                    Step::Bytes(n, _) => policy.received(n, Instant::now()),
                    Step::Nothing => {}
                    Step::End => policy.ended(Instant::now()),
                    Step::Failed(e) => policy.read_failed(&e, Instant::now()),
                }
            }
            Action::MarkGap => producer.mark_gap(),
            Action::Report(notice) => log::warn!("capture: {notice}"),
            Action::Wait(until) => {
                body = None;
                if sleep_until_unless_stopped(until, stop) {
                    return Ok(CaptureEnd::Stopped);
                }
            }
            Action::End(result) => return result,
        }
    }
}

/// Opens the stream for reading in gathered steps: an error status or no connection is a
/// `CaptureError`.
fn open(url: &str, options: &CaptureOptions) -> Result<Body, CaptureError> {
    let parsed = HttpUrl::parse(url).map_err(|e| CaptureError::BadSource(e.to_string()))?;
    match http::get(&parsed, CONNECT_TIMEOUT, options.first_byte_timeout) {
        Ok((head, mut body)) if (200..300).contains(&head.status) => {
            // From now on reads wait in short steps: the policy's stall clock tells a stall.
            body.gather(GATHER_BYTES, GATHER_WAIT)
                .map_err(|e| CaptureError::Unreachable(url.to_string(), e.to_string()))?;
            Ok(body)
        }
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

fn read_retrying(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Sleeps until `until` in small steps; true if the stop flag was set meanwhile.
fn sleep_until_unless_stopped(until: Instant, stop: &StopFlag) -> bool {
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if stop.is_set() {
            return true;
        }
        std::thread::sleep(left.min(SLEEP_STEP));
    }
    stop.is_set()
}
