//! A command's summary: what its run did, told once when it ends, the same way by every command
//! that has one (docs/USAGE.md, "Summaries and --json").
//!
//! Each such command has one typed summary (a struct beside the command, implementing
//! [`Summary`]) that renders both forms from the same figures: for people, lines on stderr,
//! `COMMAND: HEADLINE; PART; PART…` ([`Line`]); with `--json`, one JSON object as the last line of
//! stdout instead, carrying those figures plus the exit code and the error, on success and on
//! failure alike ([`report`]). Standard output otherwise stays the command's data (chunk lines,
//! ready lines); the one-line cause of a failure stays on stderr either way.
//!
//! Nothing here runs a command or decides an exit code: it only renders what a command hands it.

use super::Failure;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;

/// The commands that take `--json` (the ones with a summary), as typed on the command line.
pub const COMMANDS: [&str; 6] = [
    "chunks",
    "demo",
    "moq-forward",
    "moq-publish",
    "moq-subscribe",
    "record",
];

/// A command's typed summary: its figures, rendered for people and for scripts.
pub trait Summary {
    /// For people: one or more lines, each `COMMAND: HEADLINE; PART…` (see [`Line`]).
    fn text(&self) -> String;
    /// For scripts: the same figures as a JSON object. Never the keys `command`, `exit` and
    /// `error`, which [`report`] adds.
    fn fields(&self) -> Value;
}

/// Ends a command's run: tells its summary (`None` when the run failed before it had one) and
/// hands `outcome` back for the exit code. With `json`, one object on stdout (see [`object`]);
/// without, the summary's text on stderr.
pub fn report<S: Summary>(
    command: &str,
    json: bool,
    summary: Option<&S>,
    outcome: Result<(), Failure>,
) -> Result<(), Failure> {
    if json {
        let object = object(command, summary.map(|s| s as &dyn Summary), &outcome);
        // A reader that has gone (`| head`) is no failure of the run.
        let _ = writeln!(std::io::stdout().lock(), "{object}");
    } else if let Some(s) = summary {
        eprintln!("{}", s.text());
    }
    outcome
}

/// Tells, as [`report`] would, a command line the flag parser refused (exit 2), when it names a
/// command with a summary and asks for `--json`: scripts get their one object on a bad flag too.
pub fn report_refused_flags(args: &[&str], cause: &str) {
    let Some(command) = args.get(1).filter(|c| COMMANDS.contains(c)) else {
        return;
    };
    if args.contains(&"--json") {
        let object = object(command, None, &Err(Failure::usage(cause)));
        let _ = writeln!(std::io::stdout().lock(), "{object}");
    }
}

/// The JSON form of a run: `command`, `exit` (0 on success), `error` (the one-line cause, or
/// null) and the summary's fields, if it got that far.
pub fn object(
    command: &str,
    summary: Option<&dyn Summary>,
    outcome: &Result<(), Failure>,
) -> Value {
    let mut object = match summary.map(Summary::fields) {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let (exit, error) = match outcome {
        Ok(()) => (0, Value::Null),
        Err(f) => (f.exit as u8, f.cause.clone().into()),
    };
    object.insert("command".into(), command.into());
    object.insert("exit".into(), exit.into());
    object.insert("error".into(), error);
    Value::Object(object)
}

/// One line for people: `COMMAND: HEADLINE; PART; PART…`, the headline being the main figures
/// and the parts further counters by topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    command: String,
    headline: String,
    parts: Vec<String>,
}

impl Line {
    /// A line of `command` (as the user typed it, or a role inside it such as
    /// `demo: subscriber`) whose main figures are `headline`.
    pub fn new(command: impl Into<String>, headline: impl Into<String>) -> Line {
        Line {
            command: command.into(),
            headline: headline.into(),
            parts: Vec::new(),
        }
    }

    /// The same line with one more part.
    pub fn part(mut self, part: impl Into<String>) -> Line {
        self.parts.push(part.into());
        self
    }

    /// The same line with more parts.
    pub fn parts(mut self, parts: impl IntoIterator<Item = String>) -> Line {
        self.parts.extend(parts);
        self
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.command, self.headline)?;
        for part in &self.parts {
            write!(f, "; {part}")?;
        }
        Ok(())
    }
}

/// The chunker's counters as the `chunker` object of `chunks`, `record` and `moq-publish`.
pub fn chunker_fields(s: &ec_node::chunk::ChunkerStats) -> Value {
    serde_json::json!({
        "chunks": s.chunks,
        "packets": s.packets,
        "null_packets": s.null_packets,
        "dropped_chunks": s.dropped_chunks,
        "lost_packets": s.lost_packets,
        "error_packets": s.error_packets,
        "malformed": s.malformed,
        "skipped_bytes": s.skipped_bytes,
        "discontinuities": s.discontinuities,
        "forced_cuts": s.forced_cuts,
    })
}

#[cfg(test)]
mod tests {
    use super::{object, Line, Summary};
    use crate::cli::{Exit, Failure};
    use serde_json::{json, Value};

    struct Counted(u64);

    impl Summary for Counted {
        fn text(&self) -> String {
            Line::new("count", format!("{} things", self.0))
                .part("damage: none")
                .to_string()
        }
        fn fields(&self) -> Value {
            json!({"things": self.0})
        }
    }

    #[test]
    fn a_line_joins_headline_and_parts() {
        let line = Line::new("record", "3 segments").part("damage: none");
        assert_eq!(line.to_string(), "record: 3 segments; damage: none");
        assert_eq!(Counted(3).text(), "count: 3 things; damage: none");
    }

    #[test]
    fn the_object_carries_the_fields_the_exit_code_and_the_error() {
        let ok = object("count", Some(&Counted(3)), &Ok(()));
        assert_eq!(
            ok,
            json!({"command": "count", "exit": 0, "error": null, "things": 3})
        );
        let failed = Err(Failure::new(Exit::Idle, "the peer left"));
        let late = object("count", Some(&Counted(2)), &failed);
        assert_eq!(
            late,
            json!({"command": "count", "exit": 5, "error": "the peer left", "things": 2})
        );
        // A run that failed before it had a summary still says how it ended.
        let early = object("count", None, &Err(Failure::usage("--out is required")));
        assert_eq!(
            early,
            json!({"command": "count", "exit": 2, "error": "--out is required"})
        );
    }
}
