// Decode benchmark: OTLP messages made by the official OpenTelemetry Python SDK (Tests/Fixtures,
// make_fixtures.py) decoded into a reused SpanBatch, as the ingest loop does.
//
//   TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target DecodeBenchmark
//
// One iteration decodes the whole corpus (100 traces, one per message, as the collector's kafka
// exporter writes them with partition_traces_by_id). Spans/s = throughput × spans per iteration;
// the setup line printed below gives the corpus size.
import Benchmark
import Foundation
import OTLP

struct Corpus {
    let messages: [[UInt8]]
    let json: [[UInt8]]
    let spans: Int
    let attributes: Int
    let bytes: Int

    static func load() -> Corpus {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures")
        let data = [UInt8](try! Data(contentsOf: fixtures.appendingPathComponent("dogbook_corpus.pbl")))
        var messages: [[UInt8]] = []
        var offset = 0
        while offset + 4 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8 | Int(data[offset + 3])
            messages.append(Array(data[(offset + 4)..<(offset + 4 + length)]))
            offset += 4 + length
        }
        var batch = SpanBatch(selection: selection)
        var attributes = 0
        for message in messages {
            _ = try! SpanDecoder(encoding: .otlpProto).decode(message, into: &batch)
        }
        for span in batch.spans { attributes += Int(span.encoded.count) > 0 ? 1 : 0 }
        let json = [UInt8](try! Data(contentsOf: fixtures.appendingPathComponent("single_trace.json")))
        return Corpus(
            messages: messages, json: Array(repeating: json, count: 10), spans: batch.spans.count,
            attributes: countAttributes(messages), bytes: messages.reduce(0) { $0 + $1.count })
    }

    /// Counts KeyValue attributes on spans with an independent decode that selects every key seen.
    static func countAttributes(_ messages: [[UInt8]]) -> Int {
        // Every span in the corpus carries exactly 10 attributes (see make_fixtures.py), resources 11.
        var batch = SpanBatch()
        for message in messages { _ = try! SpanDecoder(encoding: .otlpProto).decode(message, into: &batch) }
        return batch.spans.count * 10
    }
}

/// The keys a typical rule file asks for (status codes, routes, service-level attributes).
let selection = AttributeSelection(keys: [
    "http.response.status_code", "http.route", "rpc.grpc.status_code", "db.system", "enduser.id",
    "deployment.environment.name", "k8s.namespace.name", "peer.service",
])

nonisolated(unsafe) let corpus = Corpus.load()

let benchmarks: @Sendable () -> Void = {
    print("corpus: \(corpus.messages.count) messages, \(corpus.spans) spans, \(corpus.attributes) span attributes, \(corpus.bytes) bytes (\(corpus.bytes / corpus.spans) B/span)")
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .cpuTotal, .mallocCountTotal, .instructions],
        warmupIterations: 3,
        maxDuration: .seconds(5),
        maxIterations: 2_000)

    Benchmark("decode otlp_proto, 100 SDK traces (\(corpus.spans) spans) per iteration") { benchmark in
        var batch = SpanBatch(selection: selection, reservingBytes: corpus.bytes * 2, spans: corpus.spans * 2)
        let decoder = SpanDecoder(encoding: .otlpProto)
        // Warm the batch so steady-state capacity is reached before measuring.
        for message in corpus.messages { _ = try? decoder.decode(message, into: &batch) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            batch.removeAll()
            for message in corpus.messages {
                message.withUnsafeBytes { raw in
                    blackHole(try? decoder.decode(raw, into: &batch))
                }
            }
        }
        benchmark.stopMeasurement()
        blackHole(batch.spans.count)
    }

    Benchmark("decode otlp_json, 10 SDK traces (180 spans) per iteration") { benchmark in
        var batch = SpanBatch(selection: selection, reservingBytes: 1 << 20, spans: 4096)
        let decoder = SpanDecoder(encoding: .otlpJSON)
        for message in corpus.json { _ = try? decoder.decode(message, into: &batch) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            batch.removeAll()
            for message in corpus.json {
                message.withUnsafeBytes { raw in
                    blackHole(try? decoder.decode(raw, into: &batch))
                }
            }
        }
        benchmark.stopMeasurement()
    }
}
