//! The subscriber's HLS stage: its own thread owning the [`HlsWriter`], fed verified chunks in
//! index order over a bounded channel. It writes each segment and then the playlist, finishes the
//! playlist (ENDLIST) however the run ends, and keeps the figures of what reached the disk, shared
//! for the progress line. It verifies nothing: only chunks the verifier accepted are sent here.

use super::Latency;
use crate::chunk::ChunkIndex;
use crate::crypto::object::Plaintext;
use crate::hls::playlist::SegmentEntry;
use crate::hls::writer::HlsWriter;
use crate::hls::HlsError;
use crate::node::timing::{self, Stage};
use crate::time::UnixMillis;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Segments in flight to the HLS thread.
const SEGMENT_QUEUE: usize = 8;

/// A verified chunk on its way to disk.
pub struct Segment {
    /// Its playlist entry.
    pub entry: SegmentEntry,
    /// The plaintext chunk.
    pub bytes: Plaintext,
    /// When the manifest that vouched for it was created, for the latency figure (`None`: not
    /// a live chunk, or no manifest known).
    pub created: Option<UnixMillis>,
}

/// What reached the disk.
#[derive(Debug, Default)]
pub struct Written {
    /// Segments written.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The newest index written.
    pub newest: Option<ChunkIndex>,
    /// Manifest creation → segment in place, for the segments that carried a creation time.
    pub latency: Latency,
}

/// The running HLS stage.
pub struct Output {
    tx: Sender<Segment>,
    thread: JoinHandle<Result<(), HlsError>>,
    written: Arc<Mutex<Written>>,
}

impl Output {
    /// Starts the HLS thread on `writer`.
    pub fn start(writer: HlsWriter) -> std::io::Result<Output> {
        let (tx, rx) = bounded(SEGMENT_QUEUE);
        let written = Arc::new(Mutex::new(Written::default()));
        let thread = std::thread::Builder::new().name("hls".into()).spawn({
            let written = written.clone();
            move || write_all(writer, &rx, &written)
        })?;
        Ok(Output {
            tx,
            thread,
            written,
        })
    }

    /// Hands a segment to the HLS thread (waiting while its queue is full); false when the
    /// thread stopped on an error, which [`Output::finish`] returns.
    pub fn send(&self, segment: Segment) -> bool {
        self.tx.send(segment).is_ok()
    }

    /// Runs `f` on what reached the disk so far.
    pub fn written<R>(&self, f: impl FnOnce(&Written) -> R) -> R {
        f(&self.written.lock())
    }

    /// Lets the thread write what is queued and finish the playlist; returns the figures and the
    /// first error.
    pub fn finish(self) -> (Written, Result<(), HlsError>) {
        drop(self.tx);
        let result = self.thread.join().unwrap_or(Ok(()));
        let written = std::mem::take(&mut *self.written.lock());
        (written, result)
    }
}

/// The HLS thread: writes every segment until the channel closes or a write fails, then
/// finishes the playlist.
fn write_all(
    mut writer: HlsWriter,
    rx: &Receiver<Segment>,
    written: &Mutex<Written>,
) -> Result<(), HlsError> {
    let mut result = Ok(());
    for segment in rx {
        let bytes = segment.bytes.as_bytes();
        if let Err(e) = writer.write(&segment.entry, &[bytes]) {
            result = Err(e);
            break;
        }
        let index = segment.entry.index;
        timing::mark(Stage::Written, index);
        let mut w = written.lock();
        w.segments += 1;
        w.bytes += bytes.len() as u64;
        w.newest = Some(index);
        if let Some(created) = segment.created {
            w.latency
                .record(UnixMillis::now().0.saturating_sub(created.0));
        }
    }
    result.and(writer.finish())
}
