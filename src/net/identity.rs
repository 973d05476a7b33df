//! Endpoint identity: the node's self-signed Ed25519 TLS certificate, the TLS contexts of both
//! roles, and the check that a peer proved possession of the node key an address pins.
//!
//! This module owns certificate bytes and BoringSSL context settings. It never opens sockets and
//! never decides whom to dial; the endpoint asks it for a context and, once a handshake is done,
//! whether the peer's certificate carries the pinned key. The certificate is an Ed25519
//! certificate whose subject public key *is* the node key (docs/PROTOCOL.md §4): TLS 1.3's
//! CertificateVerify then proves possession of the node key itself, so no extension is needed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use boring::pkey::{Id, PKey};
use boring::ssl::{SslContextBuilder, SslMethod, SslVerifyMode, SslVersion};
use boring::x509::X509;

use crate::crypto::{NodeId, NodeKey};
use crate::net::NetError;

/// ALPN of MoQ Transport draft-16 over raw QUIC.
pub const ALPN: &[u8] = b"moqt-16";

/// Debian's bundle of the system CA roots (BoringSSL's built-in default path does not point there).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a dialing endpoint checks the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCheck {
    /// The server must prove possession of exactly this node key (a `NODE_ID@HOST:PORT` address).
    Pinned(NodeId),
    /// No identity to check (a plain `HOST:PORT` address); the caller logs a warning.
    Unpinned,
    /// A relay: the certificate chain must verify against the system roots, or against the given
    /// PEM file (`--relay-ca`), and name the host.
    WebPki {
        /// Trust anchors instead of the system roots.
        ca_file: Option<PathBuf>,
        /// The host the certificate must name (a DNS name or an IP-address SAN).
        host: String,
    },
    /// `--insecure`: accept any certificate (the caller warns).
    Insecure,
}

/// The DER of the node's self-signed Ed25519 certificate (fixed validity, so it is the same bytes
/// every time for one key).
pub fn node_certificate(key: &NodeKey) -> Vec<u8> {
    let id = key.node_id();
    let name = der(
        0x30,
        &der(
            0x31,
            &der(
                0x30,
                &[
                    der(0x06, &[0x55, 0x04, 0x03]), // commonName
                    der(0x0c, id.to_string().as_bytes()),
                ]
                .concat(),
            ),
        ),
    );
    let ed25519 = der(0x30, &der(0x06, &[0x2b, 0x65, 0x70]));
    // A positive serial derived from the key: unique per node, stable across runs.
    let mut serial = id.as_bytes()[..16].to_vec();
    serial[0] &= 0x7f;
    serial[0] |= 0x40;
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])), // version v3
            der(0x02, &serial),
            ed25519.clone(),
            name.clone(),
            der(
                0x30,
                &[
                    der(0x17, b"250101000000Z"),   // notBefore (UTCTime)
                    der(0x18, b"99991231235959Z"), // notAfter: no well-defined expiry (RFC 5280)
                ]
                .concat(),
            ),
            name,
            der(0x30, &[ed25519.clone(), bit_string(id.as_bytes())].concat()),
        ]
        .concat(),
    );
    let signature = key.sign(&tbs);
    der(0x30, &[tbs, ed25519, bit_string(&signature)].concat())
}

/// The node key a peer certificate (DER) carries, if it is an Ed25519 certificate.
pub fn certificate_node_id(cert_der: &[u8]) -> Option<NodeId> {
    let cert = X509::from_der(cert_der).ok()?;
    let key = cert.public_key().ok()?;
    if key.id() != Id::ED25519 {
        return None;
    }
    let mut raw = [0u8; 32];
    let got = key.raw_public_key(&mut raw).ok()?;
    let bytes: [u8; 32] = got.try_into().ok()?;
    NodeId::from_bytes(bytes).ok()
}

/// The TLS context of a listening node: its Ed25519 certificate and key, TLS 1.3; clients are
/// not asked for certificates. (The endpoint sets ALPN through quiche.)
pub fn server_context(key: &NodeKey) -> Result<SslContextBuilder, NetError> {
    let mut b = base_context()?;
    let cert = X509::from_der(&node_certificate(key)).map_err(tls("node certificate"))?;
    let pkey = PKey::private_key_from_pkcs8(&pkcs8(key)).map_err(tls("node key"))?;
    b.set_certificate(&cert).map_err(tls("set certificate"))?;
    b.set_private_key(&pkey).map_err(tls("set key"))?;
    b.check_private_key()
        .map_err(tls("key matches certificate"))?;
    Ok(b)
}

/// The TLS context of a dialing node for one connection's peer check.
///
/// Pinned and unpinned dials skip chain validation (a node's certificate is self-signed); the
/// endpoint then compares the handshake's certificate key with the pin before any MoQ byte is
/// sent. TLS 1.3 has already checked the CertificateVerify signature with that key, so a match
/// proves possession.
pub fn client_context(check: &PeerCheck) -> Result<SslContextBuilder, NetError> {
    let mut b = base_context()?;
    match check {
        PeerCheck::Pinned(_) | PeerCheck::Unpinned | PeerCheck::Insecure => {
            b.set_verify(SslVerifyMode::NONE);
        }
        PeerCheck::WebPki { ca_file, host } => {
            match ca_file {
                Some(path) => b.set_ca_file(path).map_err(|e| NetError::Config {
                    what: format!("cannot load CA file {}: {e}", path.display()),
                })?,
                None if Path::new(SYSTEM_CA_BUNDLE).exists() => b
                    .set_ca_file(SYSTEM_CA_BUNDLE)
                    .map_err(tls("system CA roots"))?,
                None => b
                    .set_default_verify_paths()
                    .map_err(tls("system CA roots"))?,
            }
            // A DNS name is checked by quiche (it sets the verify host from the server name).
            // An IP address is not a server name, so its SAN is checked here on the leaf.
            if let Ok(ip) = host.parse::<IpAddr>() {
                b.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
                    if !ok || ctx.error_depth() != 0 {
                        return ok;
                    }
                    ctx.current_cert().is_some_and(|c| cert_names_ip(c, ip))
                });
            } else {
                b.set_verify(SslVerifyMode::PEER);
            }
        }
    }
    Ok(b)
}

/// Whether a certificate carries `ip` as an IP-address subject alternative name.
fn cert_names_ip(cert: &boring::x509::X509Ref, ip: IpAddr) -> bool {
    let want: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    cert.subject_alt_names()
        .is_some_and(|names| names.iter().any(|n| n.ipaddress() == Some(&want[..])))
}

/// TLS 1.3 only, with Ed25519 offered for signatures (BoringSSL's default client list lacks it).
fn base_context() -> Result<SslContextBuilder, NetError> {
    use boring::ssl::SslSignatureAlgorithm as Alg;
    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(tls("context"))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))
        .map_err(tls("TLS version"))?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(tls("TLS version"))?;
    b.set_verify_algorithm_prefs(&[
        Alg::ED25519,
        Alg::ECDSA_SECP256R1_SHA256,
        Alg::RSA_PSS_RSAE_SHA256,
        Alg::RSA_PKCS1_SHA256,
        Alg::ECDSA_SECP384R1_SHA384,
        Alg::RSA_PSS_RSAE_SHA384,
        Alg::RSA_PKCS1_SHA384,
        Alg::RSA_PSS_RSAE_SHA512,
        Alg::RSA_PKCS1_SHA512,
    ])
    .map_err(tls("signature algorithms"))?;
    Ok(b)
}

/// The node key as PKCS#8 (RFC 8410): a fixed prefix and the 32-byte seed.
fn pkcs8(key: &NodeKey) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let file = key.to_file_bytes();
    // The key file holds magic (8 bytes), then the seed (32 bytes), then the public key.
    [&PREFIX[..], &file[8..40]].concat()
}

/// One DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A DER BIT STRING with no unused bits.
fn bit_string(bytes: &[u8]) -> Vec<u8> {
    der(0x03, &[&[0u8][..], bytes].concat())
}

fn tls(what: &'static str) -> impl Fn(boring::error::ErrorStack) -> NetError {
    move |e| NetError::Tls {
        what,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificate_parses_verifies_and_carries_the_node_key() {
        let key = NodeKey::from_seed([7; 32]);
        let der = node_certificate(&key);
        assert_eq!(der, node_certificate(&key), "deterministic");
        let cert = X509::from_der(&der).unwrap();
        assert!(cert.verify(&cert.public_key().unwrap()).unwrap());
        assert_eq!(certificate_node_id(&der), Some(key.node_id()));
        let pkey = PKey::private_key_from_pkcs8(&pkcs8(&key)).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&pkey));
    }

    #[test]
    fn a_non_ed25519_or_garbage_certificate_has_no_node_id() {
        assert_eq!(certificate_node_id(b"not a certificate"), None);
    }
}
