/// Everything that can go wrong reading or writing an event record.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record is {len} bytes, shorter than the 10-byte single-object header")]
    TooShort { len: usize },
    #[error("record does not start with the Avro single-object marker C3 01 (found {found:02X?})")]
    BadMarker { found: [u8; 2] },
    #[error("unknown writer schema fingerprint {fingerprint:016x}")]
    UnknownSchema { fingerprint: u64 },
    #[error("record is a {found}, expected a {expected}")]
    WrongType { expected: &'static str, found: String },
    #[error("schema file {file} is invalid: {source}")]
    SchemaFile {
        file: String,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("cannot compute the parsing canonical form of {schema}: {reason}")]
    CanonicalForm { schema: String, reason: String },
    #[error("schema file {file} is not a record schema")]
    NotARecord { file: String },
    #[error("no schema for record type {record_type}")]
    NoSchema { record_type: &'static str },
    #[error("{record_type} record is truncated")]
    Truncated { record_type: String },
    #[error("{record_type} record has {count} bytes after its end")]
    TrailingBytes { record_type: String, count: usize },
    #[error("cannot decode {record_type}: {source}")]
    Decode {
        record_type: String,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("cannot encode {record_type}: {source}")]
    Encode {
        record_type: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}
