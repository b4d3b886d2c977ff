//! Outbound HTTP adapter: the pooled hyper + rustls client the dispatcher delivers webhooks with.
//!
//! - [`client`]: [`OutboundClient`] (one shared pool, HTTP/1.1 and HTTP/2 via ALPN, ring TLS),
//!   [`OutboundRequest`] in, [`Delivered`] out; no redirects, a total timeout, a capped body read.
//! - [`options`]: [`OutboundOptions`], built from `dispatcher.*` configuration.
//! - [`ssrf`]: the refused address ranges and the operator's allow-list.
//! - `resolver`: the DNS resolver that applies the SSRF guard to resolved addresses.
//! - [`error`]: [`OutboundError`] (construction), [`AttemptError`] / [`ErrorKind`] (one attempt)
//!   and the mapping from hyper's error chain to a kind.
//! - [`retry_after`]: [`parse_retry_after`] for the `Retry-After` header.

pub mod client;
pub mod error;
pub mod options;
mod resolver;
pub mod retry_after;
pub mod ssrf;

pub use client::{Delivered, OutboundClient, OutboundRequest};
pub use error::{AttemptError, ErrorKind, OutboundError};
pub use options::OutboundOptions;
pub use retry_after::parse_retry_after;
