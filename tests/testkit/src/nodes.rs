//! Nodes as real processes for the mesh and swarm tests: `moq-publish`, `moq-forward` and
//! `moq-subscribe` of the test stream on loopback (each killed when its guard drops), their keys,
//! and what their outputs say. Every wait is bounded.

use crate::hls;
use crate::process::{self, ec_node, wait_limited, Proc};
use crate::sim::Sim;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::Duration;

pub const STREAM: &str = "ec/stream/v1/test/mesh";

/// A running `moq-publish` or `moq-forward`; killed on drop.
pub struct Publisher {
    pub proc: Proc,
    /// `NODE_ID@IP:PORT` from its ready line (empty when it only publishes into a relay).
    pub endpoint: String,
}

impl Publisher {
    /// Publishes channel 5.1 of `sim`, listening on loopback.
    pub fn start(sim: &Sim, key: &Path, extra: &[&str]) -> Publisher {
        Publisher::from_input(&format!("hdhr://{}/5.1", sim.addr), key, extra)
    }

    /// A leader of channel 5.1 of `sim`: signed manifests only, no chunk objects.
    pub fn leader(sim: &Sim, key: &Path, extra: &[&str]) -> Publisher {
        let mut args = vec!["--publish-manifests", "--publish-chunks=false"];
        args.extend_from_slice(extra);
        Publisher::start(sim, key, &args)
    }

    pub fn from_input(input: &str, key: &Path, extra: &[&str]) -> Publisher {
        let mut args = vec!["moq-publish", "--input", input, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Publisher::spawn(&args, key)
    }

    /// Forwards the chunks `upstream` serves, listening on loopback.
    pub fn forward(upstream: &Publisher, key: &Path, extra: &[&str]) -> Publisher {
        let mut args = vec![
            "moq-forward",
            "--remote",
            &upstream.endpoint,
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Publisher::spawn(&args, key)
    }

    /// Runs `ec-node ARGS --key KEY --stream-id STREAM` and reads its ready line.
    pub fn spawn(args: &[&str], key: &Path) -> Publisher {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--key", key.to_str().unwrap(), "--stream-id", STREAM]);
        let mut proc = Proc::ec_node(args[0], &all);
        let ready = proc.ready();
        let endpoint = ready["endpoint"].as_str().unwrap_or_default().to_string();
        Publisher { proc, endpoint }
    }
}

pub fn key(name: &str) -> (PathBuf, String) {
    let dir = process::out_dir("mesh-keys", name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.key");
    let out = process::run(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", process::stderr(&out));
    (path, process::stdout(&out).trim().to_string())
}

/// Runs `moq-subscribe ARGS --out DIR` for the test stream, killed if it runs past `limit`.
pub fn subscribe(dir: &Path, args: &[&str], limit: Duration) -> Output {
    subscribe_to(STREAM, dir, args, limit)
}

/// Runs `moq-subscribe --stream-id STREAM ARGS --out DIR`, killed if it runs past `limit`.
pub fn subscribe_to(stream: &str, dir: &Path, args: &[&str], limit: Duration) -> Output {
    let child = start_subscriber(stream, dir, args);
    wait_limited(child, limit)
}

pub fn start_subscriber(stream: &str, dir: &Path, args: &[&str]) -> Child {
    let mut all = vec![
        "moq-subscribe",
        "--stream-id",
        stream,
        "--out",
        dir.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    ec_node(&all).spawn().expect("start moq-subscribe")
}

/// The subscriber's summary, from the output of a run with `--json`.
pub fn summary(out: &Output) -> serde_json::Value {
    let summary = process::summary_object(out);
    assert_eq!(summary["command"], "moq-subscribe", "{summary}");
    summary
}

pub fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("segment_") && n.ends_with(".ts"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The chunk indices of the playlist in `dir`, in order.
pub fn playlist_indices(dir: &Path) -> Vec<u64> {
    hls::read_playlist(dir)
        .segments
        .iter()
        .map(|(name, ..)| {
            let digits = name.trim_start_matches("segment_").trim_end_matches(".ts");
            digits.parse().unwrap()
        })
        .collect()
}

/// The subscriber's `--summary-json`.
pub fn summary_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
