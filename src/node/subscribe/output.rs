//! The subscriber's output stage: its own thread, fed verified chunks in index order over a
//! bounded channel, writing them to their [`Destination`]: an HLS folder (each segment, then the
//! playlist, finished with ENDLIST however the run ends), a [`SegmentSink`] (`serve`'s hub), or
//! an [`Onward`] (a verifying forwarder, which passes on the sealed objects and the trusted
//! manifests rather than plaintext). It keeps the figures of what was written, shared for the
//! progress line. It verifies nothing: only what the verifier accepted is sent here.

use super::Latency;
use crate::chunk::ChunkIndex;
use crate::crypto::object::Plaintext;
use crate::hls::playlist::{PlaylistKind, SegmentEntry};
use crate::hls::writer::HlsWriter;
use crate::hls::HlsError;
use crate::moq::GroupId;
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

/// Takes what a verifying forwarder passes on, on the output thread: each trusted manifest as
/// it is verified, and each verified chunk in index order as the sealed object it came as.
pub trait Onward: Send + 'static {
    /// A trusted manifest: its group on the manifests track and its bytes; false when it takes
    /// no more.
    fn manifest(&mut self, group: GroupId, bytes: Arc<[u8]>) -> bool;
    /// A verified chunk's sealed object; false when it takes no more.
    fn object(&mut self, index: ChunkIndex, sealed: Arc<[u8]>) -> bool;
}

/// Where a subscriber's verified segments go.
pub enum Destination {
    /// An HLS folder: a playlist of this kind (every segment, or a sliding live window whose
    /// older segments are deleted) and its segments.
    Folder(PathBuf, PlaylistKind),
    /// An HLS folder an earlier run wrote: its playlist goes on after its newest segment.
    Resume(PathBuf),
    /// A sink that takes each segment.
    Sink(Box<dyn SegmentSink>),
    /// A forwarder's outlet: the sealed objects and the manifests that vouched for them.
    Onward(Box<dyn Onward>),
}

/// The writer the output thread owns.
enum Writer {
    Hls(HlsWriter),
    Sink(Box<dyn SegmentSink>),
    Onward(Box<dyn Onward>),
}

/// What the output thread is handed.
enum Item {
    Segment(Segment),
    /// A trusted manifest for an [`Onward`]: its group and bytes.
    Manifest(GroupId, Arc<[u8]>),
}

/// A verified chunk on its way to disk.
#[derive(Debug)]
pub struct Segment {
    /// Its playlist entry.
    pub entry: SegmentEntry,
    /// The plaintext chunk.
    pub bytes: Plaintext,
    /// When the manifest that vouched for it was created, for the latency figure (`None`: not
    /// a live chunk, or no manifest known).
    pub created: Option<UnixMillis>,
    /// The sealed object it came as, for an [`Onward`] (`None` for other destinations).
    pub sealed: Option<Arc<[u8]>>,
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
    tx: Sender<Item>,
    /// Whether it passes on sealed objects and manifests.
    onward: bool,
    /// The newest segment an earlier run wrote, when resuming.
    resumed: Option<ChunkIndex>,
    thread: JoinHandle<Result<(), OutputError>>,
    written: Arc<Mutex<Written>>,
}

impl Output {
    /// Starts the output thread writing to `destination` (a folder's playlist has
    /// `target_duration`).
    pub fn start(destination: Destination, target_duration: u64) -> Result<Output, OutputError> {
        let writer = match destination {
            Destination::Folder(dir, kind) => Writer::Hls(
                HlsWriter::create(&dir, kind, target_duration).map_err(OutputError::Hls)?,
            ),
            Destination::Resume(dir) => {
                Writer::Hls(HlsWriter::resume(&dir, target_duration).map_err(OutputError::Hls)?)
            }
            Destination::Sink(sink) => Writer::Sink(sink),
            Destination::Onward(onward) => Writer::Onward(onward),
        };
        let onward = matches!(writer, Writer::Onward(_));
        let resumed = match &writer {
            Writer::Hls(hls) => hls.last_index(),
            _ => None,
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
            onward,
            resumed,
            thread,
            written,
        })
    }

    /// Hands a segment to the HLS thread (waiting while its queue is full); false when the
    /// thread stopped on an error, which [`Output::finish`] returns.
    pub fn send(&self, segment: Segment) -> bool {
        self.tx.send(Item::Segment(segment)).is_ok()
    }

    /// The newest segment an earlier run wrote, when resuming: later chunks only follow it.
    pub fn resumed(&self) -> Option<ChunkIndex> {
        self.resumed
    }

    /// Whether the destination takes sealed objects and manifests (an [`Onward`]).
    pub fn passes_on(&self) -> bool {
        self.onward
    }

    /// Hands a trusted manifest to an [`Onward`]; false when the thread stopped.
    pub fn send_manifest(&self, group: GroupId, bytes: Arc<[u8]>) -> bool {
        self.tx.send(Item::Manifest(group, bytes)).is_ok()
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
    rx: &Receiver<Item>,
    written: &Mutex<Written>,
) -> Result<(), OutputError> {
    let mut result = Ok(());
    for item in rx {
        let segment = match item {
            Item::Segment(segment) => segment,
            Item::Manifest(group, bytes) => {
                if let Writer::Onward(onward) = &mut writer {
                    if !onward.manifest(group, bytes) {
                        result = Err(OutputError::SinkClosed);
                        break;
                    }
                }
                continue;
            }
        };
        if let Err(e) = put(&mut writer, &segment) {
            result = Err(e);
            break;
        }
        let index = segment.entry.index;
        timing::mark(Stage::Written, index);
        let mut w = written.lock();
        w.segments += 1;
        w.bytes += segment.bytes.as_bytes().len() as u64;
        w.newest = Some(index);
        if let Some(created) = segment.created {
            w.latency
                .record(UnixMillis::now().0.saturating_sub(created.0));
        }
    }
    match writer {
        Writer::Hls(hls) => result.and(hls.finish().map_err(OutputError::Hls)),
        Writer::Sink(_) | Writer::Onward(_) => result,
    }
}

/// Writes one segment to the writer.
fn put(writer: &mut Writer, segment: &Segment) -> Result<(), OutputError> {
    let bytes = segment.bytes.as_bytes();
    let taken = match writer {
        Writer::Hls(hls) => {
            return hls
                .write(&segment.entry, &[bytes])
                .map_err(OutputError::Hls)
        }
        Writer::Sink(sink) => sink.put(&segment.entry, bytes),
        Writer::Onward(onward) => match &segment.sealed {
            Some(sealed) => onward.object(segment.entry.index, sealed.clone()),
            // Kept for every chunk the receive loop hands over while passing on.
            None => {
                log::warn!(
                    "chunk {}: its sealed object was not kept",
                    segment.entry.index
                );
                true
            }
        },
    };
    match taken {
        true => Ok(()),
        false => Err(OutputError::SinkClosed),
    }
}
