//! The subscriber's output stage: its own thread, fed verified chunks in index order over a
//! bounded channel, writing them to their [`Destination`]: an HLS folder (each segment, then the
//! playlist, finished with ENDLIST however the run ends) or a [`SegmentSink`] (`serve`'s hub). It
//! keeps the figures of what was written, shared for the progress line. It verifies nothing:
//! only chunks the verifier accepted are sent here.

use super::Latency;
use crate::chunk::ChunkIndex;
use crate::crypto::object::Plaintext;
use crate::hls::playlist::{PlaylistKind, SegmentEntry};
use crate::hls::writer::HlsWriter;
use crate::hls::HlsError;
use crate::node::timing::{self, Stage};
use crate::time::UnixMillis;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Segments in flight to the output thread.
const SEGMENT_QUEUE: usize = 8;

/// Takes verified segments on the output thread, in index order.
pub trait SegmentSink: Send + 'static {
    /// One verified segment; false when the sink takes no more (the run then ends).
    fn put(&mut self, entry: &SegmentEntry, bytes: &[u8]) -> bool;
}

/// Where a subscriber's verified segments go.
pub enum Destination {
    /// An HLS folder: an EVENT playlist and its segments.
    Folder(PathBuf),
    /// A sink that takes each segment.
    Sink(Box<dyn SegmentSink>),
}

/// The writer the output thread owns.
enum Writer {
    Hls(HlsWriter),
    Sink(Box<dyn SegmentSink>),
}

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

/// Why the output stage failed.
#[derive(Debug)]
pub enum OutputError {
    /// The HLS folder could not be written.
    Hls(HlsError),
    /// The sink took no more.
    SinkClosed,
    /// The output thread could not be started.
    Start(std::io::Error),
}

/// The running output stage.
pub struct Output {
    tx: Sender<Segment>,
    thread: JoinHandle<Result<(), OutputError>>,
    written: Arc<Mutex<Written>>,
}

impl Output {
    /// Starts the output thread writing to `destination` (a folder gets an EVENT playlist with
    /// `target_duration`).
    pub fn start(destination: Destination, target_duration: u64) -> Result<Output, OutputError> {
        let writer = match destination {
            Destination::Folder(dir) => Writer::Hls(
                HlsWriter::create(&dir, PlaylistKind::Event, target_duration)
                    .map_err(OutputError::Hls)?,
            ),
            Destination::Sink(sink) => Writer::Sink(sink),
        };
        let (tx, rx) = bounded(SEGMENT_QUEUE);
        let written = Arc::new(Mutex::new(Written::default()));
        let thread = std::thread::Builder::new()
            .name("hls".into())
            .spawn({
                let written = written.clone();
                move || write_all(writer, &rx, &written)
            })
            .map_err(OutputError::Start)?;
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
    pub fn finish(self) -> (Written, Result<(), OutputError>) {
        drop(self.tx);
        let result = self.thread.join().unwrap_or(Ok(()));
        let written = std::mem::take(&mut *self.written.lock());
        (written, result)
    }
}

/// The output thread: writes every segment until the channel closes or a write fails, then
/// finishes the playlist.
fn write_all(
    mut writer: Writer,
    rx: &Receiver<Segment>,
    written: &Mutex<Written>,
) -> Result<(), OutputError> {
    let mut result = Ok(());
    for segment in rx {
        let bytes = segment.bytes.as_bytes();
        let put = match &mut writer {
            Writer::Hls(hls) => hls
                .write(&segment.entry, &[bytes])
                .map_err(OutputError::Hls),
            Writer::Sink(sink) => match sink.put(&segment.entry, bytes) {
                true => Ok(()),
                false => Err(OutputError::SinkClosed),
            },
        };
        if let Err(e) = put {
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
    match writer {
        Writer::Hls(hls) => result.and(hls.finish().map_err(OutputError::Hls)),
        Writer::Sink(_) => result,
    }
}
