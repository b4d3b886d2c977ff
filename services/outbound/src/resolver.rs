//! The DNS resolver plugged into hyper-util's `HttpConnector`: resolves with the system resolver
//! and drops every address the [`SsrfGuard`] refuses, so the guard applies to the address we are
//! about to connect to rather than to a name that could resolve differently later.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::ssrf::SsrfGuard;

/// Why a name yielded no usable address. Travels through hyper's error chain as the cause of the
/// connect error; [`crate::error::classify`] finds it there to pick the error kind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("dns lookup of {host} failed: {source}")]
    Lookup {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} has no addresses")]
    NoAddresses { host: String },
    #[error("{host} resolves only to refused addresses")]
    Refused { host: String },
}

#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    guard: Arc<SsrfGuard>,
}

impl GuardedResolver {
    pub(crate) fn new(guard: Arc<SsrfGuard>) -> Self {
        Self { guard }
    }
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0 is a placeholder: HttpConnector sets the URL's port on what we return.
            let lookup = tokio::net::lookup_host((host.clone(), 0)).await;
            let resolved: Vec<SocketAddr> = match lookup {
                Ok(addrs) => addrs.collect(),
                Err(source) => return Err(ResolveError::Lookup { host, source }),
            };
            if resolved.is_empty() {
                return Err(ResolveError::NoAddresses { host });
            }
            let permitted: Vec<SocketAddr> = resolved.into_iter().filter(|addr| guard.permits(addr.ip())).collect();
            if permitted.is_empty() {
                tracing::debug!(%host, "every resolved address is in a refused range");
                return Err(ResolveError::Refused { host });
            }
            Ok(permitted.into_iter())
        })
    }
}
