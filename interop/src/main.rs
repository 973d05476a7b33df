//! `moq-peer`: a small MoQT draft-16 client and publisher built on Cloudflare's `moq-transport`
//! 0.16 and `moq-native-ietf` 0.10 (raw QUIC, `moqt://`), used by ec-node's interop tests as a
//! peer that ec-node did not write.
//!
//! Subcommands print one line per object, `group object size blake3hex`, the same format as
//! `ec-node moq-cat`, so tests compare the two byte-exactly.
//!
//! * `sub`   — dial, SUBSCRIBE (unfiltered), print `--count` objects.
//! * `fetch` — dial, standalone FETCH of groups FROM..=TO, print every object.
//! * `pub`   — publish the files of a folder (sorted by name) as groups 0..N-1, object 0 each,
//!   paced by `--interval-ms`, and answer FETCH from the folder. With `--relay URL` it dials
//!   and sends PUBLISH_NAMESPACE; with `--listen ADDR` it accepts one subscriber session.
//!   Publishing starts when the first SUBSCRIBE arrives (this stack's track cache hands a
//!   subscriber only the newest group, so groups written earlier would be lost).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use moq_native_ietf::quic;
use moq_transport::coding::{KeyValuePairs, Location, TrackNamespace};
use moq_transport::data::{FetchRecord, FetchRecordObject};
use moq_transport::message::StandaloneFetch;
use moq_transport::serve::{Subgroup, Track, TrackReaderMode};
use moq_transport::session::{FetchOkInfo, Publisher, Session, Transport};
use url::Url;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct TrackArgs {
    /// Namespace, fields separated by '/'.
    #[arg(long)]
    namespace: String,
    /// Track name.
    #[arg(long)]
    track: String,
}

#[derive(clap::Args, Clone)]
struct Dial {
    /// moqt://HOST:PORT[/path]
    #[arg(long)]
    url: Url,
    /// PEM root to trust (else the certificate is not verified).
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Subscribe and print objects.
    Sub {
        #[command(flatten)]
        dial: Dial,
        #[command(flatten)]
        track: TrackArgs,
        /// Objects to print before exiting.
        #[arg(long)]
        count: u64,
    },
    /// FETCH groups FROM..=TO and print them.
    Fetch {
        #[command(flatten)]
        dial: Dial,
        #[command(flatten)]
        track: TrackArgs,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
    },
    /// Publish a folder's files as groups.
    Pub {
        /// Dial this relay and PUBLISH_NAMESPACE.
        #[arg(long)]
        relay: Option<Url>,
        /// PEM root for the relay.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Accept one session on this address instead.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Certificate and key (PEM) for --listen.
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        track: TrackArgs,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 50)]
        interval_ms: u64,
    },
}

fn endpoint(
    bind: SocketAddr,
    root: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<quic::Endpoint> {
    let tls = moq_native_ietf::tls::Args {
        cert: cert.into_iter().collect(),
        key: key.into_iter().collect(),
        disable_verify: root.is_none(),
        root: root.into_iter().collect(),
    }
    .load()?;
    quic::Endpoint::new(quic::Config::new(bind, None, tls)?)
}

async fn dial(
    dial: &Dial,
) -> anyhow::Result<(
    moq_transport::session::Session,
    moq_transport::session::Subscriber,
)> {
    let ep = endpoint("0.0.0.0:0".parse()?, dial.root.clone(), None, None)?;
    let (session, _, transport) = ep.client.connect(&dial.url, None).await?;
    Ok(moq_transport::session::Subscriber::connect(session, transport).await?)
}

fn print(group: u64, object: u64, payload: &[u8]) {
    println!(
        "{group} {object} {} {}",
        payload.len(),
        blake3::hash(payload).to_hex()
    );
}

async fn sub(d: Dial, t: TrackArgs, count: u64) -> anyhow::Result<()> {
    let (session, mut subscriber) = dial(&d).await?;
    let run = tokio::spawn(session.run());
    let (writer, reader) =
        Track::new(TrackNamespace::from_utf8_path(&t.namespace), t.track).produce();
    // The subscription may end (PUBLISH_DONE) before every delivered object was read, so only
    // the session ending or the objects decide the outcome.
    tokio::spawn(async move { subscriber.subscribe(writer).await });
    let read = async move {
        let mut printed = 0;
        let TrackReaderMode::Subgroups(mut groups) = reader.mode().await? else {
            anyhow::bail!("track is not sent as subgroups");
        };
        while printed < count {
            let Some(mut group) = groups.next().await? else {
                anyhow::bail!("track ended after {printed} objects");
            };
            let group_id = group.group_id;
            while let Some(mut object) = group.next().await? {
                let payload = object.read_all().await?;
                print(group_id, object.object_id, &payload);
                printed += 1;
            }
        }
        Ok(())
    };
    tokio::select! {
        r = read => r,
        r = run => anyhow::bail!("session ended: {:?}", r?),
    }
}

async fn fetch(d: Dial, t: TrackArgs, from: u64, to: u64) -> anyhow::Result<()> {
    let (session, mut subscriber) = dial(&d).await?;
    let run = tokio::spawn(session.run());
    let mut f = subscriber.fetch(
        StandaloneFetch {
            track_namespace: TrackNamespace::from_utf8_path(&t.namespace),
            track_name: t.track.into(),
            start_location: Location::new(from, 0),
            // Object 0 of the end group means the whole group (draft-16, as moq-transport reads it).
            end_location: Location::new(to, 0),
        },
        KeyValuePairs::default(),
    )?;
    let read = async move {
        // Read the stream before FETCH_OK: a relay proxying stream-first sends FETCH_OK only
        // after the whole response, which needs this side to keep reading.
        while let Some(record) = f.next().await? {
            if let FetchRecord::Object(o) = record {
                let mut payload = Vec::new();
                while let Some(chunk) = f.read_payload_chunk(64 * 1024).await? {
                    payload.extend_from_slice(&chunk);
                }
                print(o.group_id, o.object_id, &payload);
            }
        }
        f.ok().await?;
        anyhow::Ok(())
    };
    tokio::select! {
        r = read => r,
        r = run => anyhow::bail!("session ended: {:?}", r?),
    }
}

/// Answers every FETCH from the folder's files.
async fn serve_fetches(mut publisher: Publisher, files: Arc<Vec<Bytes>>) -> anyhow::Result<()> {
    while let Some(req) = publisher.fetch_requested().await {
        let files = files.clone();
        tokio::spawn(async move {
            let res: anyhow::Result<()> = async {
                let range = req.resolve().await?.context("fetch cancelled")?;
                let first = range.start_location.group_id;
                // End {g, 0} is all of group g; {g, n} is objects < n of g, so object 0 too.
                let last = range.end_location.group_id;
                let last = last.min(files.len() as u64 - 1);
                let mut w = req
                    .prepare_response(FetchOkInfo {
                        end_of_track: last + 1 == files.len() as u64,
                        end_location: Location::new(last, 0),
                        params: KeyValuePairs::default(),
                        track_extensions: Default::default(),
                    })
                    .await?;
                for g in first..=last {
                    let payload = files[g as usize].clone();
                    w.write_record(&FetchRecord::Object(FetchRecordObject {
                        group_id: g,
                        subgroup_id: Some(0),
                        object_id: 0,
                        publisher_priority: 128,
                        extension_headers: Default::default(),
                        payload_length: payload.len() as u64,
                    }))
                    .await?;
                    w.write_payload(payload).await?;
                }
                w.finish().await?;
                Ok(())
            }
            .await;
            if let Err(e) = res {
                eprintln!("moq-peer: fetch failed: {e:#}");
            }
        });
    }
    Ok(())
}

async fn publish(
    relay: Option<Url>,
    root: Option<PathBuf>,
    listen: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    t: TrackArgs,
    dir: PathBuf,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let files: Arc<Vec<Bytes>> = Arc::new(
        paths
            .iter()
            .map(|p| std::fs::read(p).map(Bytes::from))
            .collect::<Result<_, _>>()?,
    );
    anyhow::ensure!(!files.is_empty(), "no files in {}", dir.display());
    let namespace = TrackNamespace::from_utf8_path(&t.namespace);
    // No track is created up front: the first SUBSCRIBE requests it, and only then do groups
    // start, so the subscriber (or the relay's upstream subscription) sees every group.
    let (_tracks_writer, mut requests, tracks_reader) =
        moq_transport::serve::Tracks::new(namespace).produce();

    let via_relay = relay.is_some();
    let (session, publisher) = match (relay, listen) {
        (Some(url), None) => {
            let ep = endpoint("0.0.0.0:0".parse()?, root, None, None)?;
            let (s, _, transport) = ep.client.connect(&url, None).await?;
            Publisher::connect(s, transport).await?
        }
        (None, Some(addr)) => {
            let mut ep = endpoint(addr, None, cert, key)?;
            let mut server = ep.server.take().context("no server")?;
            println!("listening {}", server.local_addr()?);
            let (s, _) = server.accept().await.context("no session")?;
            let (session, publisher, _) = Session::accept(s, None, Transport::RawQuic).await?;
            (session, publisher.context("the peer does not subscribe")?)
        }
        _ => anyhow::bail!("give exactly one of --relay and --listen"),
    };
    let run = tokio::spawn(session.run());
    let fetches = tokio::spawn(serve_fetches(publisher.clone(), files.clone()));
    let mut p = publisher.clone();
    let tr = tracks_reader.clone();
    // Through a relay: PUBLISH_NAMESPACE serves the SUBSCRIBEs for the namespace. Directly:
    // SUBSCRIBEs arrive unannounced and are served from the same tracks.
    let announce = tokio::spawn(async move {
        if via_relay {
            p.publish_namespace(tr).await?;
        } else {
            while let Some(subscribed) = p.subscribed().await {
                tokio::spawn(Publisher::serve_subscribe(subscribed, tr.clone()));
            }
        }
        anyhow::Ok(())
    });
    println!("ready");
    let writer = requests.next().await.context("no SUBSCRIBE came")?;
    let mut groups = writer.subgroups()?;
    for (g, payload) in files.iter().enumerate() {
        tokio::time::sleep(interval).await;
        let mut sg = groups.create(Subgroup {
            group_id: g as u64,
            subgroup_id: 0,
            priority: 128,
        })?;
        sg.write(payload.clone())?;
    }
    eprintln!("moq-peer: published {} groups", files.len());
    tokio::select! {
        r = run => anyhow::bail!("session ended: {:?}", r?),
        r = announce => { r??; Ok(()) }
        r = fetches => { r??; Ok(()) }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Sub { dial, track, count } => sub(dial, track, count).await,
        Cmd::Fetch {
            dial,
            track,
            from,
            to,
        } => fetch(dial, track, from, to).await,
        Cmd::Pub {
            relay,
            root,
            listen,
            cert,
            key,
            track,
            dir,
            interval_ms,
        } => {
            publish(
                relay,
                root,
                listen,
                cert,
                key,
                track,
                dir,
                Duration::from_millis(interval_ms),
            )
            .await
        }
    }
}
