// Span-metrics benchmark: RED + service-graph aggregation of decided traces, on OTLP traces made by
// the official OpenTelemetry Python SDK (Tests/Fixtures/dogbook_corpus.pbl), and one scrape.
//
//   TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target SpanMetricsBenchmark
import Benchmark
import Foundation
import OTLP
import SpanMetrics

struct Corpus {
    let traces: [TraceData]
    let spans: Int

    static func load(selection: AttributeSelection) -> Corpus {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = [UInt8](try! Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/dogbook_corpus.pbl")))
        var traces: [TraceData] = []
        var offset = 0
        while offset + 4 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8 | Int(data[offset + 3])
            var batch = SpanBatch(selection: selection)
            _ = try! SpanDecoder(encoding: .otlpProto).decode(Array(data[(offset + 4)..<(offset + 4 + length)]), into: &batch)
            var trace = TraceData(traceID: batch.spans[0].traceID)
            for span in batch.spans { trace.append(span, from: batch, batchGeneration: UInt64(traces.count)) }
            traces.append(trace)
            offset += 4 + length
        }
        return Corpus(traces: traces, spans: traces.reduce(0) { $0 + $1.spans.count })
    }
}

// Tempo's defaults (intrinsic labels, default buckets), and the same with two extra dimensions (one
// span attribute, one resource attribute).
let defaults = SpanMetricsConfiguration()
let configuration = SpanMetricsConfiguration(dimensions: ["http.response.status_code", "deployment.environment.name"])
let selection = AttributeSelection(keys: configuration.attributeKeys)
nonisolated(unsafe) let corpus = Corpus.load(selection: selection)

let benchmarks: @Sendable () -> Void = {
    print("corpus: \(corpus.traces.count) traces, \(corpus.spans) spans per iteration")
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions], warmupIterations: 5,
        maxDuration: .seconds(5), maxIterations: 5_000)

    for (kept, setup, name) in [(false, defaults, "default labels"), (false, configuration, "+2 dimensions"), (true, configuration, "+2 dimensions")] {
        Benchmark("RED + service graph, \(corpus.spans) spans per iteration, \(name), \(kept ? "kept (exemplars)" : "dropped")") { benchmark in
            let hub = SpanMetricsHub(configuration: setup, selection: selection, shards: 1)
            // Steady state: every series exists before measuring.
            hub.withShard(0) { metrics in
                for trace in corpus.traces { metrics.record(trace, kept: kept, wallClockMillis: 1) }
            }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                hub.withShard(0) { metrics in
                    for trace in corpus.traces { metrics.record(trace, kept: kept, wallClockMillis: 2) }
                }
            }
            benchmark.stopMeasurement()
        }
    }

    Benchmark("scrape: OpenMetrics exposition of every series") { benchmark in
        let hub = SpanMetricsHub(configuration: configuration, selection: selection, shards: 2)
        hub.withShard(0) { metrics in for trace in corpus.traces { metrics.record(trace, kept: true, wallClockMillis: 1) } }
        hub.withShard(1) { metrics in for trace in corpus.traces { metrics.record(trace, kept: false, wallClockMillis: 1) } }
        for _ in benchmark.scaledIterations {
            var out = MetricsWriter(format: .openMetrics)
            hub.write(into: &out)
            blackHole(out.text.utf8.count)
        }
    }
}
