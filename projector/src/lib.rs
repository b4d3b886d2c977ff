//! The read side: ScyllaDB (Cassandra in tests) schema, writers and queries, and the projector
//! role that fills them from the Kafka topics.
//!
//! - [`store`]: the CQL adapter (session, prepared statements).
//! - [`schema`]: keyspace and table definitions; `hookline schema migrate`.
//! - [`apply`]: events to idempotent row writes.
//! - [`role`]: the projector loop; health aggregates and open-DLQ counts checkpointed with the
//!   consumer position.
//! - [`query`]: reads for the API (lists, health, endpoint flow-control state).

pub mod apply;
pub mod query;
pub mod role;
pub mod schema;
pub mod store;

pub use store::{CqlError, Store};
