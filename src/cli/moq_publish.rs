//! `ec-node moq-publish`: capture a broadcast, chunk, encrypt, (sign) and serve it over MoQ.
//!
//! Flags become a [`PublishConfig`]; the endpoint listens and/or dials a relay and announces the
//! tracks' namespaces, the ready line names the endpoint (when listening) and the tracks, and
//! [`ec_node::node::publish`] runs the pipeline. Exit codes as every command.

use super::bounded::{AtLeastOne, ChunkMs};
use super::peer::{
    advertised, node_key, parse_target, peer_check, ready_line, serve_failure, stream_keys,
};
use super::record::capture_failure;
use super::summary::{self, chunker_fields, Line, Summary};
use super::Failure;
use argh::FromArgs;
use ec_node::capture::{CaptureOptions, Source};
use ec_node::chunk::ChunkerConfig;
use ec_node::net::Target;
use ec_node::node::ingest::IngestError;
use ec_node::node::publish::{publish, PublishConfig, PublishError, PublishSummary};
use ec_node::node::tracks::Outlet;
use ec_node::stop::StopFlag;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Capture a broadcast and publish it over MoQ: encrypted chunk objects (track `chunks`) and, with
/// --publish-manifests, signed manifests (track `manifests`).
#[derive(FromArgs)]
#[argh(subcommand, name = "moq-publish")]
pub struct Args {
    /// source: FILE, -, http://URL or hdhr://HOST[:PORT]/GUIDE_NUMBER
    #[argh(option)]
    input: String,
    /// stop after this many seconds of stream
    #[argh(option)]
    duration: Option<AtLeastOne<u64>>,
    /// listen for subscribers on this UDP address (e.g. 127.0.0.1:0 picks a free port)
    #[argh(option)]
    listen: Option<SocketAddr>,
    /// publish into this MoQT relay too (moqt://HOST:PORT[/path]); repeat for several relays,
    /// each announced independently and dialled again with back-off when it leaves
    #[argh(option)]
    relay: Vec<String>,
    /// trust the PEM certificates or CAs in this file for the relays instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// do not check the relay's certificate (warns)
    #[argh(switch)]
    insecure: bool,
    /// node key file: the listening identity and the manifest signer (default: a fresh key)
    #[argh(option)]
    key: Option<PathBuf>,
    /// stream id (default for hdhr://: the broadcast-scoped id of the channel)
    #[argh(option)]
    stream_id: Option<String>,
    /// network secret, hex (default: none, a public stream)
    #[argh(option)]
    network_secret: Option<String>,
    /// chunk duration D in milliseconds (default 2000)
    #[argh(option, default = "ChunkMs::DEFAULT")]
    chunk_ms: ChunkMs,
    /// chunks per signed manifest (default 1)
    #[argh(option, default = "AtLeastOne::literal(1)")]
    epoch_chunks: AtLeastOne<u32>,
    /// publish signed manifests
    #[argh(switch)]
    publish_manifests: bool,
    /// publish the chunk objects: true (default) or false (a manifests-only leader)
    #[argh(option, default = "true")]
    publish_chunks: bool,
    /// group cache per track for late joiners and FETCH, in MiB (default 32)
    #[argh(option, default = "AtLeastOne::literal(32)")]
    cache_mb: AtLeastOne<usize>,
    /// keep serving the cache this many seconds after the input ends (default 0)
    #[argh(option, default = "0")]
    linger: u64,
    /// read a file as fast as possible instead of at its real-time rate
    #[argh(switch)]
    as_fast_as_possible: bool,
    /// hold ingest this many milliseconds after the endpoint is ready (test helper)
    #[argh(option, default = "0")]
    startup_delay_ms: u64,
    /// seconds without data before a live source counts as failed (default 4): at start it ends
    /// the run (exit 3), mid-stream the source is dialled again
    #[argh(option, default = "4")]
    source_timeout: u64,
    /// once streaming, seconds a live source may deliver nothing (silent, refusing, unreachable)
    /// while it is dialled again with back-off, before the run ends with exit 5 (default 300)
    #[argh(option, default = "300")]
    signal_loss_timeout: u64,
    /// print the summary as one JSON object on the last line of stdout instead of text on stderr
    #[argh(switch)]
    json: bool,
}

/// Runs the subcommand and tells its summary.
pub fn run(args: Args) -> Result<(), Failure> {
    let mut told = None;
    let outcome = publish_over_moq(&args, &mut told);
    summary::report("moq-publish", args.json, told.as_ref(), outcome)
}

/// Publishes; `told` gets the summary once the pipeline has run.
fn publish_over_moq(args: &Args, told: &mut Option<PublishReport>) -> Result<(), Failure> {
    if !args.publish_chunks && !args.publish_manifests {
        return Err(Failure::usage(
            "--publish-chunks=false publishes nothing without --publish-manifests",
        ));
    }
    let source = Source::parse(Some(&args.input)).map_err(|e| Failure::usage(e.to_string()))?;
    source.check().map_err(capture_failure)?;
    let keys = stream_keys(
        args.stream_id.as_deref(),
        args.network_secret.as_deref(),
        Some(&source),
    )?;
    let key = node_key(args.key.as_deref())?;
    if args.listen.is_none() && args.relay.is_empty() {
        return Err(Failure::usage("give --listen, --relay or both"));
    }
    let relays = args
        .relay
        .iter()
        .map(|url| match parse_target(url)? {
            target @ Target::Relay(_) => Ok(target),
            Target::Node(_) => Err(Failure::usage("--relay takes a moqt:// URL")),
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let node_id = key.node_id();
    let config = PublishConfig {
        source: source.clone(),
        capture: CaptureOptions {
            duration: args.duration.map(|s| Duration::from_secs(s.get())),
            realtime: !args.as_fast_as_possible,
            first_byte_timeout: Duration::from_secs(args.source_timeout.max(1)),
            signal_loss_timeout: Duration::from_secs(args.signal_loss_timeout),
            ..CaptureOptions::default()
        },
        chunker: ChunkerConfig {
            chunk_ms: args.chunk_ms.get(),
            ..ChunkerConfig::default()
        },
        keys,
        leader: args
            .publish_manifests
            .then(|| (key.clone(), args.epoch_chunks.get())),
        publish_chunks: args.publish_chunks,
        cache_bytes: args.cache_mb.get().saturating_mul(1 << 20),
        linger: Duration::from_secs(args.linger),
        startup_delay: Duration::from_millis(args.startup_delay_ms),
    };
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    let mut outlets = Vec::new();
    if let Some(addr) = args.listen {
        let server = config.server();
        outlets.push(Outlet::listen(addr, &key, server).map_err(serve_failure)?);
    }
    let endpoint = outlets
        .first()
        .map(|o| format!("{node_id}@{}", advertised(o.local_addr())));
    let mut relay_outlets = Vec::new();
    for target in &relays {
        let check = peer_check(target, args.relay_ca.clone(), args.insecure);
        relay_outlets.push(Outlet::relay(target, check, config.server()).map_err(serve_failure)?);
    }
    let mut refused = Vec::new();
    for mut outlet in relay_outlets {
        match outlet.announced(&stop) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => refused.push(e),
        }
        outlets.push(outlet);
    }
    // Exit only when no outlet is up; a refusing relay is dialled again with back-off.
    if !refused.is_empty() && refused.len() == outlets.len() {
        return Err(serve_failure(refused.swap_remove(0)));
    }
    for e in &refused {
        eprintln!("warning: {e}; dialling it again with back-off");
    }
    println!("{}", ready_line(endpoint, &config.tracks()));
    log::info!("publishing {source}");
    let outcome = publish(&mut outlets, config, &stop);
    for outlet in outlets {
        outlet.shutdown();
    }
    match outcome {
        Ok(mut summary) => {
            let capture = summary.ingest.as_mut().and_then(|i| i.capture.take());
            let told = told.insert(PublishReport {
                summary,
                relays: !relays.is_empty(),
            });
            let Some(ingest) = &told.summary.ingest else {
                return Ok(());
            };
            super::chunks::not_transport_stream(&source, &ingest.chunker)?;
            match capture {
                Some(Err(e)) => Err(capture_failure(e)),
                _ => Ok(()),
            }
        }
        Err(PublishError::Ingest(IngestError::Capture(e))) => Err(capture_failure(e)),
        Err(PublishError::Serve(e)) => Err(serve_failure(e)),
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

/// What `moq-publish` published.
struct PublishReport {
    summary: PublishSummary,
    /// Whether it published into relays.
    relays: bool,
}

impl Summary for PublishReport {
    fn text(&self) -> String {
        let s = &self.summary;
        let (lost, overrun, discontinuities, gaps) = s.ingest.as_ref().map_or((0, 0, 0, 0), |r| {
            (
                r.chunker.lost_packets,
                r.overrun_bytes,
                r.chunker.discontinuities,
                r.gaps,
            )
        });
        Line::new(
            "moq-publish",
            format!("{} chunk groups, {} manifests", s.chunks, s.manifests),
        )
        .part(format!(
            "cache evicted {} groups, {} groups dropped for slow subscribers",
            s.evicted, s.dropped
        ))
        .part(format!(
            "capture: {lost} packets lost, {overrun} bytes overrun, {discontinuities} \
             discontinuities, {gaps} gaps in the input (outages ridden through, overruns)"
        ))
        .parts(
            self.relays
                .then(|| format!("relays dialled again {} times", s.relay_reconnects)),
        )
        .to_string()
    }

    fn fields(&self) -> serde_json::Value {
        publish_fields(&self.summary)
    }
}

/// The figures of a publishing run for scripts; `ingest` is null when ingest never started.
pub(super) fn publish_fields(s: &PublishSummary) -> serde_json::Value {
    serde_json::json!({
        "chunks": s.chunks,
        "manifests": s.manifests,
        "evicted": s.evicted,
        "dropped": s.dropped,
        "relay_reconnects": s.relay_reconnects,
        "ingest": s.ingest.as_ref().map(|r| serde_json::json!({
            "overrun_bytes": r.overrun_bytes,
            "gaps": r.gaps,
            "chunker": chunker_fields(&r.chunker),
        })),
    })
}
