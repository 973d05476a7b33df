//! Where to dial: node addresses (`NODE_ID@HOST:PORT` or `HOST:PORT`) and relay URLs
//! (`moqt://HOST[:PORT][/path]`).
//!
//! This module owns the text forms and their parsing. It never resolves names or opens sockets:
//! [`Target::resolve`] is the one place that asks the system resolver, and the endpoint calls it.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use crate::crypto::NodeId;
use crate::net::NetError;

/// A node's address: an optional pinned node id and a host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAddr {
    /// The node key the peer must prove, if pinned.
    pub node: Option<NodeId>,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
}

/// A MoQT relay URL: `moqt://HOST[:PORT][/path]` (default port 443).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// The path (with its leading `/`), or empty; sent as the PATH setup parameter.
    pub path: String,
}

/// What a dialing endpoint connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Another node (pinned or not).
    Node(EndpointAddr),
    /// A relay, whose certificate is checked as a web server's.
    Relay(RelayUrl),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(addr) => addr.fmt(f),
            Target::Relay(url) => url.fmt(f),
        }
    }
}

impl Target {
    /// Parses `moqt://…` as a relay and anything else as a node address.
    pub fn parse(text: &str) -> Result<Target, NetError> {
        if text.starts_with("moqt://") {
            text.parse().map(Target::Relay)
        } else {
            text.parse().map(Target::Node)
        }
    }

    /// Host and port.
    pub fn host_port(&self) -> (&str, u16) {
        match self {
            Target::Node(a) => (&a.host, a.port),
            Target::Relay(u) => (&u.host, u.port),
        }
    }

    /// The first socket address the host resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, NetError> {
        let (host, port) = self.host_port();
        let cannot = |detail: String| NetError::Resolve {
            host: host.to_owned(),
            detail,
        };
        (host, port)
            .to_socket_addrs()
            .map_err(|e| cannot(e.to_string()))?
            .next()
            .ok_or_else(|| cannot("no address".into()))
    }
}

/// Splits `HOST:PORT` / `[V6]:PORT` into host and port.
fn split_host_port(text: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '['")?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err("junk after ']'".into()),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err("IPv6 addresses need brackets".into()),
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
        None => default_port.ok_or("missing :PORT")?,
    };
    Ok((host.to_owned(), port))
}

fn host_text(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl FromStr for EndpointAddr {
    type Err = NetError;

    fn from_str(text: &str) -> Result<Self, NetError> {
        let bad = |why: String| NetError::Address {
            text: text.to_owned(),
            why,
        };
        let (node, rest) = match text.split_once('@') {
            Some((id, rest)) => (
                Some(id.parse::<NodeId>().map_err(|e| bad(e.to_string()))?),
                rest,
            ),
            None => (None, text),
        };
        let (host, port) = split_host_port(rest, None).map_err(bad)?;
        Ok(EndpointAddr { node, host, port })
    }
}

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "{node}@")?;
        }
        write!(f, "{}:{}", host_text(&self.host), self.port)
    }
}

impl FromStr for RelayUrl {
    type Err = NetError;

    fn from_str(text: &str) -> Result<Self, NetError> {
        let bad = |why: String| NetError::Address {
            text: text.to_owned(),
            why,
        };
        let rest = text
            .strip_prefix("moqt://")
            .ok_or_else(|| bad("relay URLs start with moqt://".into()))?;
        if rest.contains(['?', '#']) {
            return Err(bad("query and fragment are not supported".into()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority, Some(443)).map_err(bad)?;
        Ok(RelayUrl {
            host,
            port,
            path: path.to_owned(),
        })
    }
}

impl RelayUrl {
    /// The AUTHORITY setup parameter: `host:port` as written in the URL.
    pub fn authority(&self) -> String {
        format!("{}:{}", host_text(&self.host), self.port)
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "moqt://{}{}", self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::NodeKey;

    #[test]
    fn endpoint_addresses_round_trip() {
        let id = NodeKey::from_seed([1; 32]).node_id();
        for text in [
            format!("{id}@127.0.0.1:4443"),
            format!("{id}@[::1]:4443"),
            "example.org:443".to_string(),
            "[::1]:9".to_string(),
        ] {
            let a: EndpointAddr = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
        }
        let a: EndpointAddr = format!("{id}@[::1]:7").parse().unwrap();
        assert_eq!((a.node, a.host.as_str(), a.port), (Some(id), "::1", 7));
    }

    #[test]
    fn bad_endpoint_addresses_are_refused() {
        for text in ["", "host", "::1:80", "abc@1.2.3.4:5", "[::1", "h:99999"] {
            assert!(text.parse::<EndpointAddr>().is_err(), "{text}");
        }
    }

    #[test]
    fn relay_urls_parse_with_default_port_and_path() {
        let u: RelayUrl = "moqt://relay.example/live/x".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("relay.example", 443, "/live/x")
        );
        let u: RelayUrl = "moqt://[::1]:4443".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 4443, "")
        );
        assert_eq!(u.authority(), "[::1]:4443");
        assert!("https://x".parse::<RelayUrl>().is_err());
        assert!(matches!(
            Target::parse("moqt://h:1").unwrap(),
            Target::Relay(_)
        ));
        assert!(matches!(Target::parse("h:1").unwrap(), Target::Node(_)));
    }
}
