//! Hookline's event contract and its Avro codec.
//!
//! - `avro/*.vN.avsc` (beside this crate) are the contract for data teams: one self-contained
//!   schema per event and version. Every version ever released stays in the folder, so a reader
//!   can resolve any record that was ever written.
//! - [`events`] holds the Rust mirror of the newest version of each schema, with the shared
//!   [`Envelope`].
//! - [`Codec`] writes records in Avro *single-object encoding* (`C3 01` + the writer schema's
//!   8-byte CRC-64-AVRO fingerprint, little endian + the binary datum) and reads any known writer
//!   version into the newest reader types by Avro schema resolution. It also reads records that
//!   earlier versions wrote with a legacy fingerprint ([`legacy_fingerprint`]).
//! - `canonical` computes the specification's Parsing Canonical Form and fingerprint
//!   ([`parsing_canonical_form`], [`parsing_fingerprint`]) over the schema JSON, the same as
//!   Java's and fastavro's (apache-avro's differs for logical types).
//! - [`CodecError`] is the typed error: corrupt bytes, unknown fingerprints and mismatched
//!   types never panic.

mod canonical;
mod codec;
mod error;
pub mod events;

pub use canonical::{crc64_avro, parsing_canonical_form, parsing_fingerprint};
pub use codec::{Codec, Fingerprint, SCHEMA_FILES, legacy_fingerprint};
pub use error::CodecError;
pub use events::*;
