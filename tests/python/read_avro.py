"""An independent reader of oda-cdc topics: kafka-python + fastavro.

It shares no code with the Rust side (no librdkafka, no
schema_registry_converter), so a test that passes through it shows that
what we write is standard Confluent-framed Avro that any client decodes.
Prints one JSON object per record: key, schema_id, value.
"""

import argparse
import io
import json
import struct
import sys

import fastavro
import requests
from kafka import KafkaConsumer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--registry", required=True, help="Confluent-compatible base URL")
    parser.add_argument("--topic", required=True, action="append", help="repeatable")
    parser.add_argument("--count", type=int, required=True, help="records to read from each topic")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds")
    args = parser.parse_args()

    consumer = KafkaConsumer(
        *args.topic,
        bootstrap_servers=args.brokers.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=int(args.timeout * 1000),
    )
    schemas = {}
    seen = {topic: 0 for topic in args.topic}
    for message in consumer:
        if seen[message.topic] >= args.count:
            continue
        value = message.value
        if value is None:
            record = None
            schema_id = None
        else:
            if len(value) < 5 or value[0] != 0:
                print(f"not Confluent-framed: {value[:8]!r}", file=sys.stderr)
                return 1
            schema_id = struct.unpack(">I", value[1:5])[0]
            if schema_id not in schemas:
                response = requests.get(f"{args.registry}/schemas/ids/{schema_id}", timeout=10)
                response.raise_for_status()
                schemas[schema_id] = fastavro.parse_schema(json.loads(response.json()["schema"]))
            record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schemas[schema_id])
        key = message.key.decode("utf-8") if message.key is not None else None
        print(json.dumps({"topic": message.topic, "key": key, "schema_id": schema_id, "value": record},
                         ensure_ascii=False, default=str))
        seen[message.topic] += 1
        if all(n >= args.count for n in seen.values()):
            break
    consumer.close()
    short = {t: n for t, n in seen.items() if n < args.count}
    if short:
        print(f"too few records arrived: {short} (wanted {args.count} each)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
