//! Hookline's event contract and its Avro codec.
//!
//! - `avro/*.vN.avsc` (beside this crate) are the contract for data teams: one self-contained
//!   schema per event and version. Every version ever released stays in the folder, so a reader
//!   can resolve any record that was ever written.
//! - [`events`] holds the Rust mirror of the newest version of each schema, with the shared
//!   [`Envelope`].
//! - [`Codec`] writes records in Avro *single-object encoding* (`C3 01` + the writer schema's
//!   8-byte CRC-64-AVRO fingerprint, little endian + the binary datum) and reads any known writer
//!   version into the newest reader types by Avro schema resolution.
//! - [`CodecError`] is the typed error: corrupt bytes, unknown fingerprints and mismatched
//!   types never panic.

mod codec;
mod error;
pub mod events;

pub use codec::{Codec, Fingerprint, SCHEMA_FILES};
pub use error::CodecError;
pub use events::*;
