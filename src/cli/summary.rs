//! [`Summary`]: what a command did, printed once when its run ends, the same way by every
//! command: one line on stderr, `COMMAND: HEADLINE; PART; PART…`, or, for a command asked for
//! JSON output (`--json`), one JSON object on stderr with the same fields.
//!
//! Standard output stays the command's data (chunk lines, object listings, ready lines); the
//! summary is for the person or script watching the run.

use std::fmt;

/// A command's summary: a headline (the main figures) and further parts (counters by topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    command: String,
    headline: String,
    parts: Vec<String>,
}

impl Summary {
    /// A summary of `command` (as the user typed it, or a role inside it such as
    /// `demo: subscriber`) whose main figures are `headline`.
    pub fn new(command: impl Into<String>, headline: impl Into<String>) -> Summary {
        Summary {
            command: command.into(),
            headline: headline.into(),
            parts: Vec::new(),
        }
    }

    /// The same summary with one more part.
    pub fn part(mut self, part: impl Into<String>) -> Summary {
        self.parts.push(part.into());
        self
    }

    /// The same summary with more parts.
    pub fn parts(mut self, parts: impl IntoIterator<Item = String>) -> Summary {
        self.parts.extend(parts);
        self
    }

    /// Prints it on stderr: as text, or as one JSON object when `json`.
    pub fn print(&self, json: bool) {
        if json {
            eprintln!("{}", self.to_json());
        } else {
            eprintln!("{self}");
        }
    }

    /// The JSON form: `{"command": …, "headline": …, "parts": […]}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "command": self.command,
            "headline": self.headline,
            "parts": self.parts,
        })
        .to_string()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.command, self.headline)?;
        for part in &self.parts {
            write!(f, "; {part}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn text_and_json_carry_the_same_fields() {
        let s = Summary::new("record", "3 segments").part("damage: none");
        assert_eq!(s.to_string(), "record: 3 segments; damage: none");
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["command"], "record");
        assert_eq!(v["headline"], "3 segments");
        assert_eq!(v["parts"][0], "damage: none");
    }
}
