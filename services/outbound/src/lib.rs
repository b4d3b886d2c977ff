//! Outbound HTTP adapter: the pooled hyper + rustls client the dispatcher delivers with, its
//! timeouts, response-size cap and SSRF guard. Built out by the delivery pipeline.
