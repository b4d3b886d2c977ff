//! [`OutboundOptions`]: the client's knobs, normally taken from `dispatcher.*` configuration.

use std::time::Duration;

use hookline_config::DispatcherOptions;

/// Idle pooled connections kept per host. Generous because one dispatcher talks to many
/// endpoints but a hot endpoint gets `max_in_flight_per_endpoint` concurrent requests per worker.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 64;

/// How the outbound client connects and how much of a response it reads.
#[derive(Debug, Clone)]
pub struct OutboundOptions {
    /// TCP connect timeout (per address tried). Default 5 s.
    pub connect_timeout: Duration,
    /// Most response-body bytes read; reading stops there and the connection is dropped (not an
    /// error). Default 64 KiB.
    pub max_response_bytes: usize,
    /// Leading body bytes kept (lossy UTF-8) as the excerpt. Default 1024.
    pub response_excerpt_bytes: usize,
    /// Networks exempt from the SSRF guard, as CIDRs (`127.0.0.0/8`, `::1/128`). Default none.
    pub ssrf_allow: Vec<String>,
    /// Idle pooled connections kept per host. Default [`DEFAULT_MAX_IDLE_PER_HOST`].
    pub max_idle_per_host: usize,
}

impl OutboundOptions {
    pub fn from_config(d: &DispatcherOptions) -> Self {
        Self {
            connect_timeout: Duration::from_millis(d.connect_timeout_ms),
            max_response_bytes: d.max_response_bytes,
            response_excerpt_bytes: d.response_excerpt_bytes,
            ssrf_allow: d.ssrf_allow.clone(),
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
        }
    }
}

impl Default for OutboundOptions {
    /// The same values as the configuration defaults.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
            response_excerpt_bytes: 1024,
            ssrf_allow: Vec::new(),
            max_idle_per_host: DEFAULT_MAX_IDLE_PER_HOST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_config_takes_dispatcher_fields() {
        let mut d = hookline_config::Config::defaults().unwrap().dispatcher;
        d.connect_timeout_ms = 1234;
        d.max_response_bytes = 99;
        d.response_excerpt_bytes = 7;
        d.ssrf_allow = vec!["10.0.0.0/8".to_owned()];
        let o = OutboundOptions::from_config(&d);
        assert_eq!(o.connect_timeout, Duration::from_millis(1234));
        assert_eq!(o.max_response_bytes, 99);
        assert_eq!(o.response_excerpt_bytes, 7);
        assert_eq!(o.ssrf_allow, vec!["10.0.0.0/8".to_owned()]);
        assert_eq!(o.max_idle_per_host, DEFAULT_MAX_IDLE_PER_HOST);
    }
}
