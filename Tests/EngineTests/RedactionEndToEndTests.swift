import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Foundation
import Kafka
import OTLP
import Testing
import TestSupport

/// Kept traces are redacted before any sink: what the store holds has no PII; metrics are untouched.
/// (The limit counts from when the test is scheduled: with 2 cores, Swift Testing's cooperative pool has
/// two threads, and the blocking end-to-end tests hold them, so a test may wait minutes to run.)
@Suite(.timeLimit(.minutes(10))) struct RedactionEndToEndTests {
    @Test func storedTracesAreRedactedAndHashesCorrelate() throws {
        setenv("TAILGATE_REDACTION_KEY", "test-key-of-at-least-sixteen-bytes", 1)
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        func message(trace: UInt64, email: String) -> [UInt8] {
            var writer = ProtoWriter()
            writer.writeNested(1) { rs in
                rs.writeNested(1) { resource in
                    resource.writeNested(1) { kv in
                        kv.writeStringField(1, "service.name")
                        kv.writeNested(2) { $0.writeStringField(1, "checkout") }
                    }
                }
                rs.writeNested(2) { ss in
                    ss.writeNested(2) { span in
                        span.writeBytesField(1, TraceID(high: 7, low: trace).bytes)
                        span.writeBytesField(2, SpanID(rawValue: 1).bytes)
                        span.writeStringField(5, "POST /checkout")
                        span.writeVarintField(6, 2)
                        span.writeFixed64Field(7, 1)
                        span.writeFixed64Field(8, 2)
                        for (key, value) in [("user.email", email), ("http.request.header.authorization", "Bearer s3cr3t"), ("http.route", "/checkout")] {
                            span.writeNested(9) { kv in
                                kv.writeStringField(1, key)
                                kv.writeNested(2) { $0.writeStringField(1, value) }
                            }
                        }
                    }
                }
            }
            return writer.bytes
        }
        for (trace, email) in [(1 as UInt64, "rex@dogbook.example"), (2, "rex@dogbook.example"), (3, "bella@dogbook.example")] {
            try producer.send(topic: "spans", key: Array(TraceID(high: 7, low: trace).hex.utf8), value: message(trace: trace, email: email))
        }
        try producer.flush(timeout: .seconds(10))

        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-redaction-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.exitOnEOF = true
        configuration.dataDirectory = data.path
        configuration.spanMetrics.dimensions = ["user.email"]
        configuration.rulesPath = try writeRules("""
            decision_wait: 200ms
            policies: [{name: all, type: always_sample}]
            redaction:
              - {action: delete, keys: ["http.request.header.*"]}
              - {action: hash, keys: [user.email]}
            """)
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let summary = engine.run()
        #expect(summary.tracesKept == 3)

        var stored: [String] = []
        for trace in [1 as UInt64, 2, 3] {
            let request = try #require(try engine.store?.trace(TraceID(high: 7, low: trace)))
            stored.append(try OTLPJSONWriter.request(request, key: "resourceSpans"))
        }
        for json in stored {
            #expect(!json.contains("@dogbook.example") && !json.contains("s3cr3t") && !json.contains("authorization"))
            #expect(json.contains("/checkout") && json.contains("hmac:"))
        }
        func hash(_ json: String) -> String? { json.firstRange(of: /hmac:[0-9a-f]{32}/).map { String(json[$0]) } }
        #expect(hash(stored[0]) != nil && hash(stored[0]) == hash(stored[1]), "the same address hashes alike: traces still correlate")
        #expect(hash(stored[0]) != hash(stored[2]))
        let metrics = engine.prometheusText()
        #expect(metrics.contains("tailgate_redactions_total{action=\"delete\"} 3\n"))
        #expect(metrics.contains("tailgate_redactions_total{action=\"hash\"} 3\n"))
        // RED dimensions come from the spans as received (redaction applies to what is stored and sent).
        #expect(metrics.contains("user_email=\"rex@dogbook.example\""))
    }
}
