//! Incoming data streams and datagrams: which subscription or fetch each belongs to, the
//! objects they carry, and the bounded holding area for streams whose track alias is not known
//! yet (a data stream can overtake the SUBSCRIBE_OK that names its alias).
//!
//! This module owns per-stream receive buffers and their limits. A buffer never holds more than
//! one partial object (objects are decoded as soon as they are complete, with payload lengths
//! checked against `Config::max_object_size`); streams waiting for an alias are bounded in count,
//! total bytes and time. It never sends anything but STOP_SENDING requests through the session.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::moq::error::{reset, MoqError};
use crate::moq::session::{Event, Output, QuicStreamId, Session};
use crate::moq::types::{RequestId, TrackAlias};
use crate::moq::wire::{decode_datagram, DataItem, DataStreamReader};

/// What an incoming data stream feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The header has not been decoded yet.
    Unknown,
    /// A subgroup stream of one of our subscriptions.
    Subscription(RequestId),
    /// The response stream of one of our fetches.
    Fetch(RequestId),
    /// A subgroup stream whose alias is not known yet; held until this deadline.
    Early(TrackAlias, Instant),
}

struct RecvStream {
    reader: DataStreamReader,
    buf: Vec<u8>,
    target: Target,
    fin: bool,
}

/// Every incoming data stream of a session.
#[derive(Default)]
pub(super) struct RecvStreams {
    streams: HashMap<QuicStreamId, RecvStream>,
    /// Streams we asked the peer to stop; their remaining bytes are dropped.
    ignored: HashSet<QuicStreamId>,
    pub(super) early_bytes: usize,
    /// Peer-opened request streams: bytes until their one message is complete.
    requests: HashMap<QuicStreamId, Vec<u8>>,
    answered: HashSet<QuicStreamId>,
}

impl RecvStreams {
    pub(super) fn early_count(&self) -> usize {
        self.streams
            .values()
            .filter(|s| matches!(s.target, Target::Early(..)))
            .count()
    }

    /// Early streams past their deadline, removed and ignored from now on.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<QuicStreamId> {
        let expired: Vec<QuicStreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| matches!(s.target, Target::Early(_, d) if d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.ignore(*id);
        }
        expired
    }

    /// The earliest early-stream deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|s| match s.target {
                Target::Early(_, d) => Some(d),
                _ => None,
            })
            .min()
    }

    /// Open streams feeding one of our subscriptions or fetches.
    fn streams_of(&self, request: RequestId) -> Vec<QuicStreamId> {
        let mut ids: Vec<QuicStreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| matches!(s.target, Target::Subscription(r) | Target::Fetch(r) if r == request))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    fn ignore(&mut self, id: QuicStreamId) {
        if let Some(s) = self.streams.remove(&id) {
            if matches!(s.target, Target::Early(..)) {
                self.early_bytes -= s.buf.len();
            }
        }
        self.ignored.insert(id);
    }

    /// The buffer of a peer request stream, or `None` once it has been answered.
    pub(super) fn request_stream(&mut self, id: QuicStreamId) -> Option<&mut Vec<u8>> {
        if self.answered.contains(&id) {
            return None;
        }
        Some(self.requests.entry(id).or_default())
    }

    /// Forgets a request stream the peer closed.
    pub(super) fn forget_request_stream(&mut self, id: QuicStreamId) {
        self.requests.remove(&id);
        self.answered.remove(&id);
    }

    /// Marks a request stream answered; later bytes on it are dropped.
    pub(super) fn answered(&mut self, id: QuicStreamId) {
        self.requests.remove(&id);
        self.answered.insert(id);
    }
}

impl Session {
    /// Stops every open stream of a subscription or fetch we gave up.
    pub(super) fn stop_request_streams(&mut self, request: RequestId) {
        for stream in self.recvs.streams_of(request) {
            self.stop_sending(stream);
        }
    }

    pub(super) fn stop_sending(&mut self, stream: QuicStreamId) {
        self.recvs.ignore(stream);
        self.outputs.push_back(Output::StopSending {
            stream,
            code: reset::CANCELLED,
        });
    }

    pub(super) fn on_data_stream_bytes(
        &mut self,
        now: Instant,
        stream: QuicStreamId,
        data: &[u8],
        fin: bool,
    ) -> Result<(), MoqError> {
        if self.recvs.ignored.contains(&stream) {
            if fin {
                self.recvs.ignored.remove(&stream);
            }
            return Ok(());
        }
        let (version, max) = (self.version, self.config.max_object_size);
        let s = self
            .recvs
            .streams
            .entry(stream)
            .or_insert_with(|| RecvStream {
                reader: DataStreamReader::new(version, max),
                buf: Vec::new(),
                target: Target::Unknown,
                fin: false,
            });
        s.buf.extend_from_slice(data);
        s.fin |= fin;
        if matches!(s.target, Target::Early(..)) {
            self.recvs.early_bytes += data.len();
            if self.recvs.early_bytes > self.config.max_early_bytes {
                self.stop_sending(stream);
            }
            return Ok(());
        }
        self.process_stream(now, stream)?;
        // A stream stopped while decoding this data may already be finished: forget it now.
        if fin {
            self.recvs.ignored.remove(&stream);
        }
        Ok(())
    }

    /// Decodes every complete item of a stream and handles its end.
    fn process_stream(&mut self, now: Instant, stream: QuicStreamId) -> Result<(), MoqError> {
        let mut used_total = 0;
        loop {
            let Some(s) = self.recvs.streams.get_mut(&stream) else {
                return Ok(());
            };
            if matches!(s.target, Target::Early(..)) {
                break;
            }
            let Some((item, used)) = s.reader.next(&s.buf[used_total..])? else {
                break;
            };
            used_total += used;
            let target = s.target;
            match (target, item) {
                (_, DataItem::SubgroupHeader(h)) => {
                    if let Some(req) = self.aliases.get(&h.alias).copied() {
                        self.set_target(stream, Target::Subscription(req));
                    } else if self.retired_aliases.contains(&h.alias)
                        || self.recvs.early_count() >= self.config.max_early_streams
                    {
                        // A subscription we ended, or no room to hold another early stream.
                        self.stop_sending(stream);
                        return Ok(());
                    } else {
                        let deadline = now + self.config.early_stream_timeout;
                        if let Some(s) = self.recvs.streams.get_mut(&stream) {
                            s.buf.drain(..used_total);
                            s.target = Target::Early(h.alias, deadline);
                            self.recvs.early_bytes += s.buf.len();
                        }
                        if self.recvs.early_bytes > self.config.max_early_bytes {
                            self.stop_sending(stream);
                        }
                        return Ok(());
                    }
                }
                (_, DataItem::FetchHeader(req)) => {
                    if self.fetches.contains(&req) {
                        self.set_target(stream, Target::Fetch(req));
                    } else if self.is_our_request(req) {
                        // A fetch we cancelled or that failed: its stream is simply unwanted.
                        self.stop_sending(stream);
                        return Ok(());
                    } else {
                        return Err(MoqError::violation("FETCH stream for no fetch of ours"));
                    }
                }
                (
                    Target::Subscription(request) | Target::Fetch(request),
                    DataItem::Object(object),
                ) => {
                    self.event(Event::Object { request, object });
                }
                // End-of-range markers say objects are missing; the application sees the gap.
                (_, DataItem::EndOfRange { .. }) => {}
                // The reader only yields objects after a header, which set the target.
                (Target::Unknown | Target::Early(..), DataItem::Object(_)) => {}
            }
        }
        let Some(s) = self.recvs.streams.get_mut(&stream) else {
            return Ok(());
        };
        s.buf.drain(..used_total);
        if !s.fin {
            return Ok(());
        }
        if !s.buf.is_empty() {
            return Err(MoqError::violation("data stream ended inside an object"));
        }
        let target = s.target;
        self.recvs.streams.remove(&stream);
        self.stream_ended(target, None);
        Ok(())
    }

    fn set_target(&mut self, stream: QuicStreamId, target: Target) {
        if let Some(s) = self.recvs.streams.get_mut(&stream) {
            s.target = target;
        }
    }

    /// A stream of ours ended (FIN when `reset` is `None`).
    fn stream_ended(&mut self, target: Target, reset: Option<u64>) {
        match target {
            Target::Subscription(request) => {
                if let Some(code) = reset {
                    self.event(Event::StreamReset { request, code });
                }
                if let Some(sub) = self.subscriptions.get_mut(&request) {
                    sub.streams_ended += 1;
                }
                self.check_subscription_done(request);
            }
            Target::Fetch(request) => {
                self.fetches.remove(&request);
                self.event(match reset {
                    Some(code) => Event::StreamReset { request, code },
                    None => Event::FetchComplete { request },
                });
            }
            Target::Unknown | Target::Early(..) => {}
        }
    }

    pub(super) fn on_data_stream_reset(&mut self, stream: QuicStreamId, code: u64) {
        self.recvs.ignored.remove(&stream);
        self.recvs.forget_request_stream(stream);
        if let Some(s) = self.recvs.streams.remove(&stream) {
            if matches!(s.target, Target::Early(..)) {
                self.recvs.early_bytes -= s.buf.len();
            }
            self.stream_ended(s.target, Some(code));
        }
    }

    /// SUBSCRIBE_OK named `alias`: streams held for it are decoded now.
    pub(super) fn release_alias(
        &mut self,
        now: Instant,
        alias: TrackAlias,
        request: RequestId,
    ) -> Result<(), MoqError> {
        let held: Vec<QuicStreamId> = self
            .recvs
            .streams
            .iter()
            .filter(|(_, s)| matches!(s.target, Target::Early(a, _) if a == alias))
            .map(|(id, _)| *id)
            .collect();
        for id in held {
            if let Some(s) = self.recvs.streams.get_mut(&id) {
                self.recvs.early_bytes -= s.buf.len();
                s.target = Target::Subscription(request);
            }
            self.process_stream(now, id)?;
        }
        Ok(())
    }

    pub(super) fn on_datagram(&mut self, datagram: &[u8]) -> Result<(), MoqError> {
        let d = decode_datagram(self.version, datagram)?;
        // A datagram for an alias we do not know (yet or any more) is dropped: datagrams are
        // unreliable anyway, and holding them would need another buffer.
        if let Some(request) = self.aliases.get(&d.alias).copied() {
            self.event(Event::Object {
                request,
                object: d.object,
            });
        }
        Ok(())
    }
}
