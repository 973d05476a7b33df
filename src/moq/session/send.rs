//! Outgoing data streams: the bytes each one still has to write, which one goes next, and when
//! a stream is given its QUIC stream id.
//!
//! This module owns the send queues and the scheduling order. It never decides what to send
//! (the session queues whole streams) and never talks to QUIC. A stream only gets an id when its
//! first byte is handed to the endpoint, so a group dropped before that leaves no trace on the
//! wire and stream ids are used in order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::moq::session::{Priority, QuicStreamId, Role, StreamWrite};
use crate::moq::types::{GroupId, RequestId};

/// A piece of stream data: framing we built, or a payload shared with the cache.
pub(super) enum Chunk {
    /// Bytes owned by this stream.
    Owned(Vec<u8>),
    /// A payload shared with the track cache and other sessions.
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(a) => a,
        }
    }
}

/// What a queued stream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// A subgroup stream of a subscription we serve.
    Subscription(RequestId),
    /// The response stream of a FETCH we serve.
    Fetch(RequestId),
    /// A one-message reply on a peer-opened bidi stream (SUBSCRIBE_NAMESPACE).
    Reply,
}

/// Scheduling key: lower sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct OrderKey {
    /// The subscriber's priority (lower is more urgent).
    pub subscriber_priority: u8,
    /// The publisher's priority (lower is more urgent).
    pub publisher_priority: u8,
    /// Position by group: oldest first, unless the subscriber asked for descending order.
    pub group_rank: u64,
}

/// One outgoing stream.
pub(super) struct SendStream {
    id: Option<QuicStreamId>,
    chunks: VecDeque<Chunk>,
    offset: usize,
    queued: usize,
    fin_sent: bool,
    owner: Owner,
    group: GroupId,
    key: OrderKey,
    priority: Priority,
}

impl SendStream {
    /// A stream that will carry `chunks` then FIN. `id` is set for replies on peer streams.
    pub(super) fn new(
        id: Option<QuicStreamId>,
        owner: Owner,
        group: GroupId,
        key: OrderKey,
        priority: Priority,
        chunks: Vec<Chunk>,
    ) -> Self {
        let queued = chunks.iter().map(|c| c.bytes().len()).sum();
        SendStream {
            id,
            chunks: chunks.into(),
            offset: 0,
            queued,
            fin_sent: false,
            owner,
            group,
            key,
            priority,
        }
    }
}

/// What happened to a stream during one write, for the session's bookkeeping.
pub(super) struct WriteNote {
    /// The stream's owner.
    pub owner: Owner,
    /// The stream got its id with this write.
    pub opened: bool,
    /// The FIN went out with this write; the stream is gone from the queues.
    pub finished: bool,
}

/// All outgoing data streams of a session.
pub(super) struct SendQueues {
    streams: BTreeMap<u64, SendStream>,
    next_seq: u64,
    next_uni: u64,
    role: Role,
}

impl SendQueues {
    pub(super) fn new(role: Role) -> Self {
        SendQueues {
            streams: BTreeMap::new(),
            next_seq: 0,
            next_uni: 0,
            role,
        }
    }

    /// Queues a stream; returns its queue key.
    pub(super) fn push(&mut self, s: SendStream) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.streams.insert(seq, s);
        seq
    }

    /// RFC 9000 id of our `n`th unidirectional stream (client 2, 6...; server 3, 7...).
    fn uni_id(&self, n: u64) -> QuicStreamId {
        let low = match self.role {
            Role::Client => 0x2,
            Role::Server => 0x3,
        };
        QuicStreamId(n * 4 + low)
    }

    /// Hands up to `max` bytes of the most urgent stream to the endpoint.
    pub(super) fn next_write(&mut self, max: usize) -> Option<(StreamWrite, WriteNote)> {
        // Replies on peer streams first (they are tiny), then by priority, then oldest queued.
        let (&seq, _) = self
            .streams
            .iter()
            .min_by_key(|(seq, s)| (s.owner != Owner::Reply, s.key, **seq))?;
        // A stream gets its id when its first byte goes out, so ids are used in order.
        let id = match self.streams.get(&seq)?.id {
            Some(id) => id,
            None => {
                let id = self.uni_id(self.next_uni);
                self.next_uni += 1;
                id
            }
        };
        let s = self.streams.get_mut(&seq)?;
        let opened = s.id.replace(id).is_none();
        let mut data = Vec::with_capacity(max.min(s.queued));
        while data.len() < max {
            let Some(front) = s.chunks.front() else { break };
            let bytes = &front.bytes()[s.offset..];
            let n = bytes.len().min(max - data.len());
            data.extend_from_slice(&bytes[..n]);
            s.offset += n;
            if s.offset == front.bytes().len() {
                s.chunks.pop_front();
                s.offset = 0;
            }
        }
        s.queued -= data.len();
        let fin = s.chunks.is_empty() && !s.fin_sent;
        s.fin_sent |= fin;
        let (owner, priority) = (s.owner, s.priority);
        if fin {
            self.streams.remove(&seq);
        }
        Some((
            StreamWrite {
                stream: id,
                data,
                fin,
                priority,
            },
            WriteNote {
                owner,
                opened,
                finished: fin,
            },
        ))
    }

    /// Removes a stream; returns its id if any byte of it already went out (so it must be reset).
    pub(super) fn drop_stream(&mut self, seq: u64) -> Option<QuicStreamId> {
        self.streams.remove(&seq).and_then(|s| s.id)
    }

    /// Queue keys of every stream of `owner`, oldest group first.
    pub(super) fn streams_of(&self, owner: Owner) -> Vec<u64> {
        let mut v: Vec<(GroupId, u64)> = self
            .streams
            .iter()
            .filter(|(_, s)| s.owner == owner)
            .map(|(seq, s)| (s.group, *seq))
            .collect();
        v.sort();
        v.into_iter().map(|(_, seq)| seq).collect()
    }

    /// Bytes still queued for `owner`.
    pub(super) fn backlog(&self, owner: Owner) -> usize {
        self.streams
            .values()
            .filter(|s| s.owner == owner)
            .map(|s| s.queued)
            .sum()
    }

    /// The queue key and owner of the stream with this id.
    pub(super) fn find(&self, id: QuicStreamId) -> Option<(u64, Owner)> {
        self.streams
            .iter()
            .find(|(_, s)| s.id == Some(id))
            .map(|(seq, s)| (*seq, s.owner))
    }

    /// Whether anything is waiting to be written.
    pub(super) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}
