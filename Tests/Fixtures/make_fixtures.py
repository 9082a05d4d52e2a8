#!/usr/bin/env python3
"""Generate OTLP trace fixtures with the official OpenTelemetry Python SDK.

Spans are created with `opentelemetry-sdk` (tracer, resource, events, links, status, trace state)
and encoded with the SDK's own OTLP encoder (`opentelemetry-exporter-otlp-proto-common`), exactly as
an instrumented service's exporter would send them. OTLP/JSON is derived from the same protobuf with
protobuf's JSON mapping, with ids rewritten to hex as the OTLP specification requires.

For every fixture an `*.expected.json` lists each span in wire order, read back with the official
protobuf runtime, so the Swift decoder is checked against an independent reading.

Deterministic (seeded ids, fixed clock): run it twice, get the same bytes.

    pip install -r Tests/Fixtures/requirements.txt
    python3 Tests/Fixtures/make_fixtures.py [--out Tests/Fixtures]
"""
import argparse
import json
import os
import random
import struct

from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState

T0 = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z in Unix nanoseconds
MS = 1_000_000


class SeededIds(IdGenerator):
    """Deterministic W3C ids (never zero)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def generate_span_id(self):
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self):
        return self.rng.getrandbits(128) or 1


class DogBook:
    """One TracerProvider per service, as each DogBook pod has its own SDK."""

    SERVICES = {
        "frontend": ("web", "1.14.2"),
        "api-gateway": ("edge", "3.2.0"),
        "feed-service": ("core", "2.7.1"),
        "photo-service": ("media", "5.0.3"),
        "user-service": ("core", "1.9.0"),
        "auth-service": ("security", "4.1.1"),
    }

    def __init__(self, seed):
        self.ids = SeededIds(seed)
        self.exporter = InMemorySpanExporter()
        self.tracers = {}
        for name, (team, version) in self.SERVICES.items():
            resource = Resource(
                {
                    "service.name": name,
                    "service.namespace": "dogbook",
                    "service.version": version,
                    "deployment.environment.name": "production",
                    "k8s.namespace.name": "dogbook",
                    "k8s.pod.name": f"{name}-7d9f8b6c5-x2k4p",
                    "cloud.provider": "azure",
                    "cloud.platform": "azure.aks",
                    "team": team,
                    "telemetry.sdk.language": "python",
                    "telemetry.sdk.name": "opentelemetry",
                },
                schema_url="https://opentelemetry.io/schemas/1.26.0",
            )
            provider = TracerProvider(resource=resource, id_generator=self.ids)
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            self.tracers[name] = provider.get_tracer(
                f"dogbook.{name}", "0.9.0", schema_url="https://opentelemetry.io/schemas/1.26.0"
            )

    def span(self, service, name, kind, start, duration_ms, parent=None, attributes=None, **kw):
        tracer = self.tracers[service]
        ctx = trace_api.set_span_in_context(parent) if parent is not None else None
        s = tracer.start_span(name, context=ctx, kind=kind, attributes=attributes or {}, start_time=start, links=kw.get("links"))
        for event in kw.get("events", []):
            s.add_event(event[0], event[1], timestamp=event[2])
        if kw.get("status"):
            s.set_status(kw["status"])
        s.end(end_time=start + int(duration_ms * MS))
        return s

    def feed_request(self, t, error=False, slow=False, rich=False):
        """frontend -> api-gateway -> feed-service -> (user, photo, auth) + postgres + redis: ~20 spans."""
        root = self.span(
            "frontend", "GET /feed", SpanKind.SERVER, t, 180 if not slow else 2400,
            attributes={
                "http.request.method": "GET", "http.route": "/feed", "url.path": "/feed", "url.scheme": "https",
                "http.response.status_code": 500 if error else 200, "server.address": "dogbook.example",
                "server.port": 443, "user_agent.original": "Mozilla/5.0 (DogBook iOS 7.3)",
                "client.address": "203.0.113.7", "network.protocol.version": "2",
            },
            status=Status(StatusCode.ERROR, "upstream feed failed") if error else None,
        )
        root_ctx = root
        gw_client = self.span(
            "frontend", "GET", SpanKind.CLIENT, t + 2 * MS, 170,
            parent=root_ctx,
            attributes={
                "http.request.method": "GET", "url.full": "http://api-gateway:8080/api/v1/feed",
                "server.address": "api-gateway", "server.port": 8080, "http.response.status_code": 500 if error else 200,
                "network.peer.address": "10.244.1.17", "network.peer.port": 8080,
                "http.request.resend_count": 0, "peer.service": "api-gateway", "network.protocol.name": "http",
            },
        )
        gw = self.span(
            "api-gateway", "GET /api/v1/feed", SpanKind.SERVER, t + 3 * MS, 165,
            parent=gw_client,
            attributes={
                "http.request.method": "GET", "http.route": "/api/v1/feed", "url.path": "/api/v1/feed",
                "http.response.status_code": 500 if error else 200, "server.address": "api-gateway",
                "server.port": 8080, "client.address": "10.244.2.4", "enduser.id": "dog-lover-4411",
                "dogbook.tenant": "eu-west", "dogbook.feature_flags": ["new-feed", "hd-photos"],
            },
        )
        auth_client = self.span(
            "api-gateway", "dogbook.Auth/Verify", SpanKind.CLIENT, t + 4 * MS, 6, parent=gw,
            attributes={"rpc.system": "grpc", "rpc.service": "dogbook.Auth", "rpc.method": "Verify",
                        "server.address": "auth-service", "server.port": 50051, "rpc.grpc.status_code": 0,
                        "network.peer.address": "10.244.3.9", "network.transport": "tcp", "peer.service": "auth-service",
                        "rpc.grpc.request.metadata.x-request-id": ["req-8a7f"]},
        )
        auth = self.span(
            "auth-service", "dogbook.Auth/Verify", SpanKind.SERVER, t + 5 * MS, 4, parent=auth_client,
            attributes={"rpc.system": "grpc", "rpc.service": "dogbook.Auth", "rpc.method": "Verify",
                        "rpc.grpc.status_code": 0, "server.address": "auth-service", "server.port": 50051,
                        "client.address": "10.244.1.17", "auth.method": "jwt", "auth.cache_hit": True,
                        "auth.token.ttl_seconds": 3600},
        )
        self.span("auth-service", "GET session", SpanKind.CLIENT, t + 5 * MS + 500_000, 1, parent=auth,
                  attributes={"db.system": "redis", "db.operation.name": "GET", "db.namespace": "0",
                              "server.address": "redis", "server.port": 6379, "db.query.text": "GET session:4411",
                              "network.peer.address": "10.244.4.2", "network.peer.port": 6379,
                              "db.redis.database_index": 0, "net.transport": "ip_tcp"})
        feed_client = self.span(
            "api-gateway", "dogbook.Feed/GetFeed", SpanKind.CLIENT, t + 12 * MS, 150, parent=gw,
            attributes={"rpc.system": "grpc", "rpc.service": "dogbook.Feed", "rpc.method": "GetFeed",
                        "server.address": "feed-service", "server.port": 50051,
                        "rpc.grpc.status_code": 14 if error else 0, "network.peer.address": "10.244.2.11",
                        "network.transport": "tcp", "peer.service": "feed-service", "rpc.message.compressed_size": 182},
        )
        events = []
        if rich:
            events = [("cache.miss", {"cache.key": "feed:4411", "cache.ttl_ms": 30000}, t + 14 * MS),
                      ("feed.ranked", {"feed.items": 25, "feed.score.max": 0.98, "feed.personalized": True}, t + 120 * MS)]
        feed = self.span(
            "feed-service", "dogbook.Feed/GetFeed", SpanKind.SERVER, t + 13 * MS, 145 if not slow else 2300,
            parent=feed_client,
            attributes={"rpc.system": "grpc", "rpc.service": "dogbook.Feed", "rpc.method": "GetFeed",
                        "rpc.grpc.status_code": 14 if error else 0, "server.address": "feed-service",
                        "server.port": 50051, "client.address": "10.244.1.17", "feed.page_size": 25,
                        "feed.ranking.model": "pawrank-v3", "feed.ranking.weight": 0.75},
            events=events,
            status=Status(StatusCode.ERROR, "14 UNAVAILABLE: photo-service unavailable") if error else None,
        )
        pg = self.span("feed-service", "SELECT dogbook.posts", SpanKind.CLIENT, t + 15 * MS, 22 if not slow else 2100, parent=feed,
                       attributes={"db.system": "postgresql", "db.namespace": "dogbook", "db.operation.name": "SELECT",
                                   "db.collection.name": "posts", "server.address": "postgres", "server.port": 5432,
                                   "db.query.text": "SELECT id, author_id, photo_id, caption FROM posts WHERE author_id = ANY($1) ORDER BY created_at DESC LIMIT 25",
                                   "network.peer.address": "10.244.4.8", "network.peer.port": 5432, "db.response.returned_rows": 25})
        self.span("feed-service", "GET", SpanKind.CLIENT, t + 40 * MS, 2, parent=feed,
                  attributes={"db.system": "redis", "db.operation.name": "MGET", "server.address": "redis",
                              "server.port": 6379, "db.query.text": "MGET likes:1 likes:2 likes:3",
                              "network.peer.address": "10.244.4.2", "network.peer.port": 6379,
                              "db.namespace": "1", "db.redis.database_index": 1, "db.response.returned_rows": 3})
        for i, svc in enumerate(["user-service", "photo-service"]):
            method = "GetProfiles" if svc == "user-service" else "GetThumbnails"
            rpc_service = "dogbook.User" if svc == "user-service" else "dogbook.Photo"
            failed = error and svc == "photo-service"
            c = self.span("feed-service", f"{rpc_service}/{method}", SpanKind.CLIENT, t + (45 + i * 40) * MS, 35, parent=feed,
                          attributes={"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": method,
                                      "server.address": svc, "server.port": 50051, "rpc.grpc.status_code": 14 if failed else 0,
                                      "network.peer.address": f"10.244.5.{i + 3}", "network.transport": "tcp",
                                      "peer.service": svc, "rpc.message.uncompressed_size": 512})
            s = self.span(svc, f"{rpc_service}/{method}", SpanKind.SERVER, t + (46 + i * 40) * MS, 32, parent=c,
                          attributes={"rpc.system": "grpc", "rpc.service": rpc_service, "rpc.method": method,
                                      "rpc.grpc.status_code": 14 if failed else 0, "server.address": svc,
                                      "server.port": 50051, "client.address": "10.244.2.11",
                                      "dogbook.batch_size": 25, "dogbook.cache_enabled": i == 0, "dogbook.region": "westeurope"},
                          status=Status(StatusCode.ERROR, "blob store timeout") if failed else None)
            self.span(svc, "SELECT dogbook." + ("users" if i == 0 else "photos"), SpanKind.CLIENT, t + (48 + i * 40) * MS, 12, parent=s,
                      attributes={"db.system": "postgresql", "db.namespace": "dogbook", "db.operation.name": "SELECT",
                                  "db.collection.name": "users" if i == 0 else "photos", "server.address": "postgres",
                                  "server.port": 5432, "db.query.text": "SELECT * FROM t WHERE id = ANY($1)",
                                  "network.peer.address": "10.244.4.8", "network.peer.port": 5432, "db.response.returned_rows": 25})
            self.span(svc, "serialize", SpanKind.INTERNAL, t + (62 + i * 40) * MS, 3, parent=s,
                      attributes={"code.function.name": "serialize_batch", "code.file.path": "app/serialize.py",
                                  "code.line.number": 42, "dogbook.items": 25, "dogbook.bytes": 18231,
                                  "dogbook.format": "protobuf", "thread.id": 7, "thread.name": "worker-7",
                                  "dogbook.compressed": True, "dogbook.ratio": 0.31})
        return root

    def showcase(self, t):
        """One trace using every field the decoder extracts: trace state, links, events, all attribute types."""
        tracer = self.tracers["photo-service"]
        state = TraceState([("dogbook", "tier-gold"), ("congo", "t61rcWkgMzE")])
        linked = trace_api.SpanContext(trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7,
                                       is_remote=True, trace_flags=trace_api.TraceFlags(1), trace_state=state)
        # A remote parent with trace state, as after W3C traceparent/tracestate extraction.
        remote = trace_api.SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331,
                                       is_remote=True, trace_flags=trace_api.TraceFlags(1), trace_state=state)
        ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote))
        upload = tracer.start_span(
            "POST /photos", context=ctx, kind=SpanKind.SERVER, start_time=t,
            attributes={
                "http.request.method": "POST", "http.route": "/photos", "http.response.status_code": 503,
                "photo.size_bytes": 4_194_304, "photo.aspect": 1.5, "photo.public": False,
                "photo.tags": ["corgi", "beach"], "photo.ratings": [5, 4, 5], "photo.scores": [0.5, 0.25],
                "photo.flags": [True, False], "photo.caption": "Bär am Strand 🐕 \"quoted\"\n",
                "big.int": 9_007_199_254_740_993, "negative.int": -42,
            },
            links=[Link(linked, {"link.reason": "retry-of", "link.attempt": 2})],
        )
        upload.add_event("exception", {"exception.type": "TimeoutError", "exception.message": "blob store timeout",
                                        "exception.escaped": False}, timestamp=t + 250 * MS)
        upload.set_status(Status(StatusCode.ERROR, "blob store timeout"))
        upload.end(end_time=t + 300 * MS)
        child = tracer.start_span("thumbnail", context=trace_api.set_span_in_context(upload), kind=SpanKind.PRODUCER,
                                  start_time=t + 10 * MS, attributes={"messaging.system": "kafka",
                                                                     "messaging.destination.name": "thumbnails"})
        child.set_status(Status(StatusCode.OK))
        child.end(end_time=t + 12 * MS)
        consumer = tracer.start_span("thumbnails process", context=trace_api.set_span_in_context(child),
                                     kind=SpanKind.CONSUMER, start_time=t + 20 * MS)
        consumer.end(end_time=t + 21 * MS)

    def head_sampled(self, t):
        """A trace an upstream head sampler kept at 1/2 (OTEP 235: `ot=th:8` with explicit randomness
        `rv`), continued from a remote parent whose tracestate also carries another vendor's entry:
        the SDK propagates the tracestate to every span it creates in the trace."""
        state = TraceState([("ot", "th:8;rv:d3f00000000000"), ("dogbook", "tier-gold")])
        remote = trace_api.SpanContext(trace_id=0x5B8EFFF798038103D269B633813FC60C, span_id=0xEEE19B7EC3C1B174,
                                       is_remote=True, trace_flags=trace_api.TraceFlags(1), trace_state=state)
        ctx = trace_api.NonRecordingSpan(remote)
        server = self.span("api-gateway", "GET /api/v1/feed", SpanKind.SERVER, t, 120, parent=ctx,
                           attributes={"http.request.method": "GET", "http.route": "/api/v1/feed"})
        client = self.span("api-gateway", "dogbook.Feed/GetFeed", SpanKind.CLIENT, t + 2 * MS, 100, parent=server,
                           attributes={"rpc.system": "grpc", "rpc.service": "dogbook.Feed", "rpc.method": "GetFeed"})
        self.span("feed-service", "dogbook.Feed/GetFeed", SpanKind.SERVER, t + 4 * MS, 95, parent=client,
                  attributes={"rpc.system": "grpc", "rpc.service": "dogbook.Feed", "rpc.method": "GetFeed"})

    def take(self):
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans


def add_values_sdks_send(request):
    """Attribute values the Python SDK's attribute API cannot express but other SDKs and the collector
    send (Java's and Go's map attributes, byte arrays, an unset value, an empty list, nested lists),
    added to the showcase span with the official opentelemetry-proto messages."""
    exif = KeyValueList(values=[
        KeyValue(key="camera", value=AnyValue(string_value="Pixel 9")),
        KeyValue(key="iso", value=AnyValue(int_value=200)),
        KeyValue(key="flash", value=AnyValue(bool_value=False)),
        KeyValue(key="lens", value=AnyValue(kvlist_value=KeyValueList(values=[
            KeyValue(key="focal_mm", value=AnyValue(double_value=24.0))]))),
    ])
    extra = [
        KeyValue(key="photo.exif", value=AnyValue(kvlist_value=exif)),
        KeyValue(key="photo.sha256_prefix", value=AnyValue(bytes_value=bytes([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))),
        KeyValue(key="photo.unset", value=AnyValue()),
        KeyValue(key="photo.no_tags", value=AnyValue(array_value=ArrayValue())),
        KeyValue(key="photo.empty_map", value=AnyValue(kvlist_value=KeyValueList())),
        KeyValue(key="photo.empty_bytes", value=AnyValue(bytes_value=b"")),
        KeyValue(key="photo.matrix", value=AnyValue(array_value=ArrayValue(values=[
            AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(int_value=2)])),
            AnyValue(string_value=""),
            AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(string_value="v"))])),
        ]))),
    ]
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if span.name == "POST /photos":
                    span.attributes.extend(extra)
    return request


def hex_ids(obj):
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants hex trace and span ids."""
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                import base64
                obj[k] = base64.b64decode(v).hex()
            else:
                hex_ids(v)
    elif isinstance(obj, list):
        for v in obj:
            hex_ids(v)
    return obj


def otlp_json(request, integer_enums):
    doc = json_format.MessageToDict(request, use_integers_for_enums=integer_enums)
    return json.dumps(hex_ids(doc), ensure_ascii=False, separators=(",", ":")).encode()


def any_value(v):
    which = v.WhichOneof("value")
    if which is None:
        return {"empty": True}
    # Lists and maps also carry their exact encoding: a decoder keeps them as the bytes of the
    # ArrayValue / KeyValueList message, which must be these.
    if which == "array_value":
        return {"array": [any_value(x) for x in v.array_value.values],
                "encoded": v.array_value.SerializeToString(deterministic=True).hex()}
    if which == "kvlist_value":
        return {"kvlist": {kv.key: any_value(kv.value) for kv in v.kvlist_value.values},
                "encoded": v.kvlist_value.SerializeToString(deterministic=True).hex()}
    if which == "bytes_value":
        return {"bytes": v.bytes_value.hex()}
    if which == "double_value":
        return {"double": v.double_value}
    if which == "int_value":
        return {"int": str(v.int_value)}
    if which == "bool_value":
        return {"bool": v.bool_value}
    return {"string": v.string_value}


def expectations(request_bytes):
    """Every span in wire order, read back with the official protobuf runtime."""
    request = ExportTraceServiceRequest.FromString(request_bytes)
    spans = []
    for rs in request.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append({
                    "traceId": s.trace_id.hex(), "spanId": s.span_id.hex(), "parentSpanId": s.parent_span_id.hex(),
                    "traceState": s.trace_state, "flags": s.flags, "name": s.name, "kind": s.kind,
                    "startTimeUnixNano": str(s.start_time_unix_nano), "endTimeUnixNano": str(s.end_time_unix_nano),
                    "statusCode": s.status.code, "statusMessage": s.status.message,
                    "serviceName": resource.get("service.name", {}).get("string", ""),
                    "scopeName": ss.scope.name, "resourceSchemaUrl": rs.schema_url, "scopeSchemaUrl": ss.schema_url,
                    "attributes": {kv.key: any_value(kv.value) for kv in s.attributes},
                    "resourceAttributes": resource,
                    "events": len(s.events), "links": len(s.links),
                    "encodedSize": s.ByteSize(),
                })
    return spans


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=here, help="output directory (default: next to this script)")
    parser.add_argument("--corpus-traces", type=int, default=100, help="traces in the benchmark corpus")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    def write(name, data):
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)

    # 1. One trace per message, as the collector's kafka exporter writes with partition_traces_by_id.
    dogbook = DogBook(seed=2)
    dogbook.feed_request(T0, error=True, rich=True)
    single = encode_spans(dogbook.take()).SerializeToString(deterministic=True)
    write("single_trace.pb", single)
    write("single_trace.json", otlp_json(ExportTraceServiceRequest.FromString(single), integer_enums=True))
    write("single_trace.expected.json", json.dumps(expectations(single), indent=1, ensure_ascii=False).encode())

    # 2. Many traces in one message (exporter without partition_traces_by_id), plus every-field showcase.
    dogbook = DogBook(seed=3)
    dogbook.feed_request(T0 + 1000 * MS)
    dogbook.feed_request(T0 + 2000 * MS, slow=True)
    dogbook.showcase(T0 + 3000 * MS)
    many = add_values_sdks_send(encode_spans(dogbook.take())).SerializeToString(deterministic=True)
    write("many_traces.pb", many)
    # Enum names instead of numbers: OTLP/JSON receivers see both in the wild.
    write("many_traces.json", otlp_json(ExportTraceServiceRequest.FromString(many), integer_enums=False))
    write("many_traces.expected.json", json.dumps(expectations(many), indent=1, ensure_ascii=False).encode())

    # 3. A head-sampled trace (OTEP 235 tracestate), one message.
    dogbook = DogBook(seed=6)
    dogbook.head_sampled(T0 + 4000 * MS)
    head = encode_spans(dogbook.take()).SerializeToString(deterministic=True)
    write("head_sampled.pb", head)
    write("head_sampled.expected.json", json.dumps(expectations(head), indent=1, ensure_ascii=False).encode())

    # 4. Benchmark corpus: one trace per message, length-prefixed (4-byte big-endian) records.
    dogbook = DogBook(seed=4)
    corpus = bytearray()
    rng = random.Random(5)
    calls, edges = {}, {}
    for i in range(args.corpus_traces):
        dogbook.feed_request(T0 + i * 50 * MS, error=rng.random() < 0.05, slow=rng.random() < 0.05, rich=i % 10 == 0)
        spans = dogbook.take()
        tally_red(spans, calls, edges)
        message = encode_spans(spans).SerializeToString(deterministic=True)
        corpus += struct.pack(">I", len(message)) + message
    write("dogbook_corpus.pbl", bytes(corpus))
    # The oracle for the RED and service-graph tests, counted from the SDK's own span objects (not from
    # any decoding of ours): spans per service|name|kind|status, and client|server|connection_type
    # pairs of CLIENT→SERVER and PRODUCER→CONSUMER parent/child spans.
    write("dogbook_corpus.red.json", json.dumps({"calls": calls, "edges": edges}, indent=1, sort_keys=True).encode())


def tally_red(spans, calls, edges):
    by_id = {span.context.span_id: span for span in spans}
    for span in spans:
        service = span.resource.attributes.get("service.name", "")
        key = "|".join([service, span.name, "SPAN_KIND_" + span.kind.name, "STATUS_CODE_" + span.status.status_code.name])
        calls[key] = calls.get(key, 0) + 1
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        if parent is None:
            continue
        pair = (parent.kind, span.kind)
        if pair in ((SpanKind.CLIENT, SpanKind.SERVER), (SpanKind.PRODUCER, SpanKind.CONSUMER)):
            edge = "|".join([parent.resource.attributes.get("service.name", ""), service,
                             "messaging_system" if span.kind == SpanKind.CONSUMER else ""])
            edges[edge] = edges.get(edge, 0) + 1


if __name__ == "__main__":
    main()
