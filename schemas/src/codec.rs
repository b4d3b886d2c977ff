use std::collections::HashMap;

use apache_avro::Schema;
use serde::Serialize;

use crate::canonical::{canonical_form, crc64_avro};
use crate::error::CodecError;
use crate::events::{AnyEvent, Event, decode_direct, decode_named};

macro_rules! schema_file {
    ($file:literal) => {
        ($file, include_str!(concat!("../avro/", $file)))
    };
}

/// Every schema version ever released, embedded at build time. Add new versions here; never
/// remove or edit a released file.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    schema_file!("TriggerRequested.v1.avsc"),
    schema_file!("DeliveryRequested.v1.avsc"),
    schema_file!("AttemptSucceeded.v1.avsc"),
    schema_file!("AttemptFailed.v1.avsc"),
    schema_file!("DeliveryDeferred.v1.avsc"),
    schema_file!("MovedToDLQ.v1.avsc"),
    schema_file!("DLQReplayed.v1.avsc"),
    schema_file!("DLQDiscarded.v1.avsc"),
    schema_file!("CircuitOpened.v1.avsc"),
    schema_file!("CircuitClosed.v1.avsc"),
    schema_file!("EndpointUpserted.v1.avsc"),
    schema_file!("EndpointDeleted.v1.avsc"),
    schema_file!("EndpointDisabled.v1.avsc"),
    schema_file!("RecordQuarantined.v1.avsc"),
];

/// The 8-byte CRC-64-AVRO (Rabin) fingerprint of a schema's parsing canonical form.
pub type Fingerprint = u64;

/// `(specification fingerprint, legacy fingerprint)` of every schema version released before the
/// codec computed the specification's canonical form. Those versions wrote apache-avro 0.22's
/// fingerprint (its canonical form keeps `{"type":"long"}` for a logical type), and their records
/// stay on topics for the topics' retention, so readers accept both. Frozen: the values are the
/// bytes that were written, whatever apache-avro computes today; no newer version has an entry.
const LEGACY_FINGERPRINTS: &[(Fingerprint, Fingerprint)] = &[
    (0xbed8_5be8_aebc_9367, 0x189a_7053_47e1_3fcb), // AttemptFailed.v1
    (0xdef5_0b64_8566_9325, 0x7e1d_70de_30fa_8206), // AttemptSucceeded.v1
    (0xf3e2_1a82_5199_eb57, 0xdba2_d341_b18c_19e7), // CircuitClosed.v1
    (0x9ef7_ea35_eaab_efad, 0x6eea_f2fb_6308_6431), // CircuitOpened.v1
    (0x8f31_8f89_18ed_26f0, 0x715c_6902_3ed2_8251), // DLQDiscarded.v1
    (0x37a8_4b42_3896_ef29, 0xe72a_ddf6_1771_2f56), // DLQReplayed.v1
    (0x8105_55af_69dc_ba41, 0x45da_ab9d_d174_7d31), // DeliveryDeferred.v1
    (0x39e4_d6ce_4bce_6697, 0x5e47_8f76_ff39_dda6), // DeliveryRequested.v1
    (0xd9a7_fb70_a59a_db26, 0xc417_2eba_2373_3d98), // EndpointDeleted.v1
    (0x1bef_3a8f_c072_e702, 0xae22_e3f2_b1c2_0026), // EndpointDisabled.v1
    (0xd635_508b_c7ad_c784, 0x73d7_843f_836c_8607), // EndpointUpserted.v1
    (0xf7f2_952d_d008_1d02, 0x5d80_0e48_dc0a_3956), // MovedToDLQ.v1
    (0x1da2_fe68_87c0_9362, 0xd4c7_ee9a_0364_fc43), // RecordQuarantined.v1
    (0xf4a9_6b60_54ee_576d, 0x4582_cb72_75af_0994), // TriggerRequested.v1
];

/// The legacy header fingerprint that earlier Hookline versions wrote for the schema whose
/// specification fingerprint is `fingerprint`, if that schema was released before the change.
pub fn legacy_fingerprint(fingerprint: Fingerprint) -> Option<Fingerprint> {
    LEGACY_FINGERPRINTS.iter().find(|(spec, _)| *spec == fingerprint).map(|(_, legacy)| *legacy)
}

/// Largest single allocation the decoder makes for one bytes/string/array field.
const MAX_ALLOCATION: usize = 64 * 1024 * 1024;
const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

struct Writer {
    name: String,
    schema: Schema,
    /// The schema this codec writes for `name` (and reads into): its records decode straight
    /// into the type, without schema resolution.
    current: bool,
}

struct Current {
    schema: Schema,
    header: [u8; HEADER_LEN],
}

/// Encodes events with their newest schema and decodes records written with any known version.
///
/// Cheap to share (`Arc<Codec>`); built once at start.
pub struct Codec {
    writers: Vec<Writer>,
    /// Header fingerprint → index into `writers`: every schema's specification fingerprint (the
    /// one written) and, for versions released before the change, its legacy one.
    by_fingerprint: HashMap<Fingerprint, usize>,
    current: HashMap<String, Current>,
}

impl Codec {
    /// The codec over the embedded schema files.
    pub fn new() -> Result<Self, CodecError> {
        Self::from_files(SCHEMA_FILES.iter().map(|(f, s)| (f.to_string(), s.to_string())))
    }

    /// A codec over the given `(file name, schema json)` pairs. The file name must be
    /// `<Record>.v<N>.avsc`; the highest N of each record is the one written.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, CodecError> {
        // A corrupt length prefix must give an error, not a multi-gigabyte allocation.
        let _ = apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
        let mut codec = Self { writers: Vec::new(), by_fingerprint: HashMap::new(), current: HashMap::new() };
        let mut newest: HashMap<String, (u32, usize, Fingerprint)> = HashMap::new();
        for (file, json) in files {
            let version = file
                .rsplit_once(".v")
                .and_then(|(_, rest)| rest.strip_suffix(".avsc"))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            let (index, fp) = codec.add_writer(file, &json)?;
            let name = &codec.writers[index].name;
            match newest.get(name) {
                Some((v, _, _)) if *v >= version => {}
                _ => {
                    newest.insert(name.clone(), (version, index, fp));
                }
            }
        }
        for (_, index, _) in newest.values() {
            codec.writers[*index].current = true;
        }
        codec.current = newest
            .into_iter()
            .map(|(name, (_, index, fp))| {
                let mut header = [0u8; HEADER_LEN];
                header[..2].copy_from_slice(&MARKER);
                header[2..].copy_from_slice(&fp.to_le_bytes());
                (name, Current { schema: codec.writers[index].schema.clone(), header })
            })
            .collect();
        Ok(codec)
    }

    /// Adds writer schemas (e.g. newer versions published after this binary was built) without
    /// changing what this codec writes or the types it reads into: records written with them are
    /// resolved into the reader types this binary knows.
    pub fn with_writer_schemas(
        mut self,
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, CodecError> {
        for (file, json) in files {
            self.add_writer(file, &json)?;
        }
        Ok(self)
    }

    /// Parses a record schema and makes it readable under its specification fingerprint (and its
    /// legacy one, if it has one). Returns its index in `writers` and its specification fingerprint.
    fn add_writer(&mut self, file: String, json: &str) -> Result<(usize, Fingerprint), CodecError> {
        let schema = Schema::parse_str(json)
            .map_err(|source| CodecError::SchemaFile { file: file.clone(), source: Box::new(source) })?;
        let Schema::Record(r) = &schema else {
            return Err(CodecError::NotARecord { file });
        };
        let name = r.name.name().to_string();
        let canonical = canonical_form(json).map_err(|reason| CodecError::CanonicalForm { schema: file, reason })?;
        let fp = crc64_avro(canonical.as_bytes());
        let index = self.writers.len();
        self.writers.push(Writer { name, schema, current: false });
        self.by_fingerprint.insert(fp, index);
        if let Some(legacy) = legacy_fingerprint(fp) {
            // A specification fingerprint always wins over a legacy one.
            self.by_fingerprint.entry(legacy).or_insert(index);
        }
        Ok((index, fp))
    }

    /// Record names this codec can write.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.current.keys().map(String::as_str)
    }

    /// Encodes `event` with the newest schema of its record type.
    pub fn encode<E: Event>(&self, event: &E) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(event, &mut out)?;
        Ok(out)
    }

    /// Appends the encoding of `event` to `out`.
    pub fn encode_into<E: Event>(&self, event: &E, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.encode_named(E::NAME, event, out)
    }

    fn encode_named<T: Serialize>(&self, name: &'static str, value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let current = self.current.get(name).ok_or(CodecError::NoSchema { record_type: name })?;
        out.extend_from_slice(&current.header);
        // Our schema files define every named type inline, so the serializer needs no name table.
        let names = HashMap::new();
        apache_avro::write_avro_datum_ref(&current.schema, &names, value, out)
            .map_err(|e| CodecError::Encode { record_type: name, source: Box::new(e) })?;
        Ok(())
    }

    /// The record type named by a record's header, without decoding the body.
    pub fn peek_name<'a>(&'a self, bytes: &[u8]) -> Result<&'a str, CodecError> {
        Ok(&self.writer(bytes)?.name)
    }

    /// Decodes any known record into the newest reader type.
    pub fn decode(&self, bytes: &[u8]) -> Result<AnyEvent, CodecError> {
        let writer = self.writer(bytes)?;
        let reader = self.current.get(&writer.name).map(|c| &c.schema);
        let decode_err = |source| CodecError::Decode { record_type: writer.name.clone(), source: Box::new(source) };
        let mut body = ExactReader { rest: &bytes[HEADER_LEN..], ran_out: false };
        let decoded = if writer.current {
            // Written with the schema of our own type: straight into it (a quarter of the cost of
            // the value path: `cargo run --release -p hookline-schemas --example decode_bench`).
            let direct =
                apache_avro::reader::datum::GenericDatumReader::builder(&writer.schema).build().map_err(decode_err)?;
            decode_direct(&writer.name, &direct, &mut body)
        } else {
            // An older (or newer) writer: through a value, resolved against the reader schema.
            #[allow(deprecated)]
            let value = apache_avro::from_avro_datum(&writer.schema, &mut body, reader).map_err(decode_err)?;
            decode_named(&writer.name, value)
        };
        if body.ran_out {
            return Err(CodecError::Truncated { record_type: writer.name.clone() });
        }
        if !body.rest.is_empty() {
            return Err(CodecError::TrailingBytes { record_type: writer.name.clone(), count: body.rest.len() });
        }
        match decoded {
            Some(r) => r.map_err(decode_err),
            None => Err(CodecError::WrongType { expected: "known event", found: writer.name.clone() }),
        }
    }

    /// Decodes a record that must be of type `E`.
    pub fn decode_as<E: Event + TryFrom<AnyEvent, Error = AnyEvent>>(&self, bytes: &[u8]) -> Result<E, CodecError> {
        let name = self.peek_name(bytes)?;
        if name != E::NAME {
            return Err(CodecError::WrongType { expected: E::NAME, found: name.to_string() });
        }
        E::try_from(self.decode(bytes)?)
            .map_err(|other| CodecError::WrongType { expected: E::NAME, found: other.name().to_string() })
    }

    /// The fingerprint written for `name`: the specification fingerprint of its newest schema.
    pub fn fingerprint_of(&self, name: &str) -> Option<Fingerprint> {
        self.current.get(name).map(|c| u64::from_le_bytes(c.header[2..].try_into().unwrap_or_default()))
    }

    fn writer(&self, bytes: &[u8]) -> Result<&Writer, CodecError> {
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::TooShort { len: bytes.len() });
        }
        if bytes[..2] != MARKER {
            return Err(CodecError::BadMarker { found: [bytes[0], bytes[1]] });
        }
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..HEADER_LEN]);
        let fingerprint = u64::from_le_bytes(fp);
        let index = self.by_fingerprint.get(&fingerprint).ok_or(CodecError::UnknownSchema { fingerprint })?;
        Ok(&self.writers[*index])
    }
}

/// A reader over a record body that notes any attempt to read past its end.
///
/// apache-avro turns an unexpected end of input into a null in some places (strings, booleans,
/// union indexes), which would make a truncated record decode as a different, valid one. A
/// well-formed datum never reads past its end, so any such attempt means truncation.
struct ExactReader<'a> {
    rest: &'a [u8],
    ran_out: bool,
}

impl std::io::Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() > self.rest.len() {
            self.ran_out = true;
        }
        self.rest.read(buf)
    }
}
