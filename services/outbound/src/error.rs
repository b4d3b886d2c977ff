//! Errors: [`OutboundError`] for building the client, [`AttemptError`] for one failed delivery
//! attempt, and the mapping from hyper's error chain to an [`ErrorKind`].

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::resolver::ResolveError;

/// Building an [`crate::OutboundClient`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// An `ssrf_allow` entry is not a CIDR (`127.0.0.0/8`, `::1/128`) or a bare address.
    #[error("invalid dispatcher.ssrf_allow entry {entry:?}: expected a CIDR such as 127.0.0.0/8")]
    InvalidAllowList { entry: String },
    /// The TLS configuration could not be built from the ring provider.
    #[error("building the TLS client configuration failed")]
    TlsConfig {
        #[from]
        source: rustls::Error,
    },
}

/// What went wrong with an attempt that produced no HTTP status. Stable names via [`Self::as_str`]
/// are what events and metrics carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Not an http(s) URL, or no host.
    InvalidUrl,
    /// The host name did not resolve.
    Dns,
    /// Every address of the host is in a refused range (private, loopback, metadata, ...).
    SsrfBlocked,
    /// TCP connect refused, unreachable, or reset before a response.
    Connect,
    /// TLS handshake failed (certificate, protocol, not a TLS server).
    Tls,
    /// The total timeout (or the connect timeout) elapsed.
    Timeout,
    /// The peer spoke something that is not a well-formed HTTP response.
    Protocol,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid_url",
            Self::Dns => "dns",
            Self::SsrfBlocked => "ssrf_blocked",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery attempt that got no HTTP status. `message` is short and human; it never contains
/// request headers (they carry signatures) and is safe to store in delivery events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct AttemptError {
    pub kind: ErrorKind,
    pub message: String,
    /// Time from the start of the attempt until it failed.
    pub duration: Duration,
}

impl AttemptError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>, duration: Duration) -> Self {
        Self { kind, message: message.into(), duration }
    }
}

/// The next error in the chain. `io::Error::source` skips the error it wraps (it returns the
/// wrapped error's *source*), and hyper-rustls wraps TLS failures in two layers of `io::Error`,
/// so the wrapped error is taken explicitly.
fn next_cause<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match err.downcast_ref::<io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => None,
        },
        None => err.source(),
    }
}

fn chain<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> + 'a {
    // Bounded so a cyclic `source` implementation cannot hang an attempt.
    std::iter::successors(Some(err), |e| next_cause(*e)).take(32)
}

/// Maps a failed request (connect, handshake, or response head) to a kind and a message.
pub(crate) fn classify(err: &(dyn StdError + 'static), is_connect: bool) -> (ErrorKind, String) {
    for cause in chain(err) {
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            let kind = match resolve {
                ResolveError::Refused { .. } => ErrorKind::SsrfBlocked,
                ResolveError::Lookup { .. } | ResolveError::NoAddresses { .. } => ErrorKind::Dns,
            };
            return (kind, resolve.to_string());
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return (ErrorKind::Tls, format!("tls handshake failed: {tls}"));
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return (ErrorKind::Timeout, "connect timed out".to_owned()),
                io::ErrorKind::ConnectionRefused => return (ErrorKind::Connect, "connection refused".to_owned()),
                _ => {}
            }
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_parse() || hyper.is_parse_status() || hyper.is_parse_too_large() {
                return (ErrorKind::Protocol, format!("malformed response: {hyper}"));
            }
            if hyper.is_incomplete_message() {
                return (ErrorKind::Protocol, "connection closed before a complete response".to_owned());
            }
        }
    }
    let root = chain(err).last().map(ToString::to_string).unwrap_or_default();
    if is_connect {
        (ErrorKind::Connect, format!("connect failed: {root}"))
    } else {
        (ErrorKind::Protocol, format!("request failed: {root}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_stable() {
        let all = [
            (ErrorKind::InvalidUrl, "invalid_url"),
            (ErrorKind::Dns, "dns"),
            (ErrorKind::SsrfBlocked, "ssrf_blocked"),
            (ErrorKind::Connect, "connect"),
            (ErrorKind::Tls, "tls"),
            (ErrorKind::Timeout, "timeout"),
            (ErrorKind::Protocol, "protocol"),
        ];
        for (kind, name) in all {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
        }
    }

    /// A stand-in for hyper-util's connect error, which wraps its cause behind `source`.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] Box<dyn StdError + Send + Sync>);

    #[test]
    fn finds_markers_through_nested_io_errors() {
        let refused = Wrapper(Box::new(ResolveError::Refused { host: "internal".into() }));
        assert_eq!(classify(&refused, true).0, ErrorKind::SsrfBlocked);

        let dns = Wrapper(Box::new(ResolveError::NoAddresses { host: "nowhere".into() }));
        assert_eq!(classify(&dns, true).0, ErrorKind::Dns);

        // hyper-rustls: io::Error::other(io::Error(InvalidData, rustls::Error)).
        let tls = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let wrapped = Wrapper(Box::new(io::Error::other(tls)));
        let (kind, message) = classify(&wrapped, true);
        assert_eq!(kind, ErrorKind::Tls);
        assert!(message.starts_with("tls handshake failed"), "{message}");

        let reset = Wrapper(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert_eq!(classify(&reset, true).0, ErrorKind::Connect);
        assert_eq!(classify(&reset, false).0, ErrorKind::Protocol);
    }
}
