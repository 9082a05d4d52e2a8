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
        for message in messages {
            _ = try! SpanDecoder(encoding: .otlpProto).decode(message, into: &batch)
        }
        let json = [UInt8](try! Data(contentsOf: fixtures.appendingPathComponent("single_trace.json")))
        return Corpus(
            messages: messages, json: Array(repeating: json, count: 10), spans: batch.spans.count,
            bytes: messages.reduce(0) { $0 + $1.count })
    }
}

/// The keys a typical rule file asks for (status codes, routes, service-level attributes).
let selection = AttributeSelection(keys: [
    "http.response.status_code", "http.route", "rpc.grpc.status_code", "db.system", "enduser.id",
    "deployment.environment.name", "k8s.namespace.name", "peer.service",
])

nonisolated(unsafe) let corpus = Corpus.load()

let benchmarks: @Sendable () -> Void = {
    print("corpus: \(corpus.messages.count) messages, \(corpus.spans) spans, \(corpus.bytes) bytes (\(corpus.bytes / corpus.spans) B/span)")
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

    // Ten times the work per iteration: if mallocs stay flat, none are per span or per attribute.
    Benchmark("decode otlp_proto, corpus ×10 (\(corpus.spans * 10) spans) per iteration") { benchmark in
        var batch = SpanBatch(selection: selection, reservingBytes: corpus.bytes * 2, spans: corpus.spans * 2)
        let decoder = SpanDecoder(encoding: .otlpProto)
        for message in corpus.messages { _ = try? decoder.decode(message, into: &batch) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for _ in 0..<10 {
                batch.removeAll()
                for message in corpus.messages {
                    message.withUnsafeBytes { raw in blackHole(try? decoder.decode(raw, into: &batch)) }
                }
            }
        }
        benchmark.stopMeasurement()
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
