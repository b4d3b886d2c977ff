#!/usr/bin/env python3
"""Consume Hookline's event stream with a stock Kafka client and a stock Avro library.

    pip install confluent-kafka fastavro
    python consume.py --bootstrap localhost:19092 --topic hookline.events --group analytics

Every record value is an Avro single-object encoding (see ../README.md): the marker C3 01, the
writer schema's CRC-64-AVRO fingerprint (8 bytes, little-endian), then the Avro datum. No schema
registry: the fingerprint of every released `.avsc` file is computed here with fastavro's own
functions. Records written before Hookline used the specification's fingerprint carry a legacy
one; ../avro/fingerprints.json lists it beside each file's fingerprint, and it is accepted too.

`--decode-hex FILE` decodes `<RecordName> <hex>` lines instead of reading Kafka (the test suite
runs it on records written by Hookline's Rust codec: schemas/examples/samples.hex, and as earlier
versions wrote them: samples-legacy.hex).
"""

import argparse
import base64
import datetime
import glob
import io
import json
import os
import sys

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

MARKER = b"\xc3\x01"
HERE = os.path.dirname(os.path.abspath(__file__))


def load_schemas(folder):
    """header fingerprint (8 bytes) -> (record name, parsed writer schema)."""
    schemas = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.avsc"))):
        with open(path) as f:
            schema = parse_schema(json.load(f))
        # fastavro's hex is the 8 header bytes (the fingerprint, little-endian).
        header = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        schemas[header] = (schema["name"].split(".")[-1], schema)
    # Legacy fingerprints of records written by earlier Hookline versions, mapped to the schema
    # that has the entry's fingerprint.
    table = os.path.join(folder, "fingerprints.json")
    if os.path.exists(table):
        with open(table) as f:
            for entry in json.load(f).values():
                known = schemas.get(bytes.fromhex(entry["fingerprint"]))
                if known and "legacy" in entry:
                    schemas.setdefault(bytes.fromhex(entry["legacy"]), known)
    return schemas


def decode(value, schemas):
    """One record value -> (record name, dict). Raises ValueError on bytes that are not ours."""
    if value is None or len(value) < 10 or value[:2] != MARKER:
        raise ValueError("not an Avro single-object record")
    known = schemas.get(value[2:10])
    if known is None:
        raise ValueError("unknown writer schema %s: fetch the newer schemas/avro folder" % value[2:10].hex())
    name, schema = known
    return name, schemaless_reader(io.BytesIO(value[10:]), schema)


def to_json(obj):
    """For printing: bytes fields (payloads, sealed secrets) as base64 text; timestamps (fastavro
    turns timestamp-millis fields into aware datetimes) as ISO 8601 in UTC."""
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    if isinstance(obj, datetime.datetime):
        return obj.isoformat(timespec="milliseconds")
    raise TypeError(type(obj).__name__)


def consume(args, schemas):
    from confluent_kafka import Consumer  # imported here so --decode-hex needs only fastavro

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            # Hookline writes in Kafka transactions: never read records of aborted ones.
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([args.topic])
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print("kafka error: %s" % msg.error(), file=sys.stderr)
                continue
            try:
                name, record = decode(msg.value(), schemas)
            except ValueError as e:
                print("skipped %s[%d]@%d: %s" % (msg.topic(), msg.partition(), msg.offset(), e), file=sys.stderr)
                continue
            key = msg.key().decode() if msg.key() else None
            print(json.dumps({"type": name, "key": key, "record": record}, default=to_json))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def decode_hex_file(path, schemas):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            expected, hexvalue = line.split()
            name, record = decode(bytes.fromhex(hexvalue), schemas)
            if name != expected:
                raise SystemExit("%s decoded as %s" % (expected, name))
            print(json.dumps({"type": name, "record": record}, default=to_json))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default="localhost:19092")
    p.add_argument("--topic", default="hookline.events")
    p.add_argument("--group", default="hookline-example-consumer")
    p.add_argument("--schemas", default=os.path.join(HERE, "..", "avro"), help="folder of .avsc files")
    p.add_argument("--decode-hex", metavar="FILE", help="decode `<RecordName> <hex>` lines, no Kafka")
    args = p.parse_args()
    schemas = load_schemas(args.schemas)
    if args.decode_hex:
        decode_hex_file(args.decode_hex, schemas)
    else:
        consume(args, schemas)


if __name__ == "__main__":
    main()
