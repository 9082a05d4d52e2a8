#!/usr/bin/env python3
"""Checks an OTLP/JSON document against the protobuf request it was written from, with the official
protobuf runtime (google.protobuf.json_format) and the OpenTelemetry proto classes -- an implementation
independent of tailgate's writer and of its decoder.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way the spec names: trace and span ids
are hex strings, not base64. They are converted back before json_format parses the document.

usage: check_otlp_json.py REQUEST.pb REQUEST.json   (exit 0 and "equal N spans" when they agree)
"""
import base64
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def hex_ids_to_base64(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids_to_base64(item)


def main():
    with open(sys.argv[1], "rb") as f:
        expected = ExportTraceServiceRequest.FromString(f.read())
    with open(sys.argv[2], encoding="utf-8") as f:
        document = json.load(f)
    hex_ids_to_base64(document)
    # Unknown fields are errors: a misspelt field name must not pass as "absent".
    parsed = json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=False)
    spans = sum(len(ss.spans) for rs in expected.resource_spans for ss in rs.scope_spans)
    if parsed == expected:
        print(f"equal {spans} spans")
        return 0
    print("differ")
    print("expected:", expected)
    print("parsed:", parsed)
    return 1


if __name__ == "__main__":
    sys.exit(main())
