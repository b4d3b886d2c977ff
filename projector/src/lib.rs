//! The read side: ScyllaDB (Cassandra in tests) schema, writers and queries, and the projector
//! role that fills them from the Kafka topics.
//!
//! - [`store`]: the CQL adapter (session, prepared statements).
//! - [`schema`]: keyspace and table definitions; `hookline schema migrate`.
//! - [`apply`]: events to idempotent row writes.
//! - [`role`]: the projector loop, health aggregates checkpointed with the consumer position.

pub mod apply;
pub mod query;
pub mod role;
pub mod schema;
pub mod store;

pub use store::{CqlError, Store};
