// Sampling-stage benchmark: shard insert + deadline expiry + decision with the default rules, on
// OTLP traces made by the official OpenTelemetry Python SDK (Tests/Fixtures/dogbook_corpus.pbl),
// and the memory a buffered span costs against its OTLP wire size.
//
//   TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target SamplingBenchmark
import Benchmark
import Foundation
import OTLP
import Sampling

struct Corpus {
    let batches: [SpanBatch]
    let spans: Int
    let wireBytes: Int
    let spanBytes: Int
    let rules: RuleSet

    static func load() -> Corpus {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let rules = RuleSet(configuration: try! RuleFile.parse(
            try! String(contentsOf: root.appendingPathComponent("pipelines/default.yaml"), encoding: .utf8), file: "default.yaml"))
        let data = [UInt8](try! Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/dogbook_corpus.pbl")))
        var batches: [SpanBatch] = []
        var offset = 0
        var wire = 0
        while offset + 4 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8 | Int(data[offset + 3])
            var batch = SpanBatch(selection: rules.selection)
            _ = try! SpanDecoder(encoding: .otlpProto).decode(Array(data[(offset + 4)..<(offset + 4 + length)]), into: &batch)
            batches.append(batch)
            wire += length
            offset += 4 + length
        }
        let spans = batches.reduce(0) { $0 + $1.spans.count }
        let spanBytes = batches.reduce(0) { total, batch in total + batch.spans.reduce(0) { $0 + Int($1.encoded.count) } }
        return Corpus(batches: batches, spans: spans, wireBytes: wire, spanBytes: spanBytes, rules: rules)
    }
}

nonisolated(unsafe) let corpus = Corpus.load()

/// One pass: every span into the window, then every trace expired and decided; returns kept count.
/// Dropped traces' buffers are recycled (as the engine does); kept ones too when `recycleKept`
/// (a sink that copies kept spans into its own write buffer and hands the trace back).
func pass(_ window: inout TraceWindow, ready: inout [ReadyTrace], start: UInt64, recycleKept: Bool = false) -> Int {
    for (index, batch) in corpus.batches.enumerated() {
        for span in batch.spans {
            _ = window.insert(
                span, from: batch, batchGeneration: UInt64(index), source: SourcePosition(lane: 0, offset: Int64(index)),
                now: start, ready: &ready)
        }
    }
    window.expire(now: start + 20_000_000_000, into: &ready)
    var kept = 0
    for item in ready {
        if corpus.rules.decide(item.trace, now: start).isKeep {
            kept += 1
            if recycleKept { window.recycle(item.trace) }
        } else {
            window.recycle(item.trace)
        }
    }
    ready.removeAll(keepingCapacity: true)
    return kept
}

let benchmarks: @Sendable () -> Void = {
    // Memory per buffered span, measured once: everything buffered, nothing decided.
    var probe = TraceWindow(limits: WindowLimits(decisionWait: .seconds(3600)), cache: DecisionCache(keptCapacity: 0, droppedCapacity: 0))
    var none: [ReadyTrace] = []
    for (index, batch) in corpus.batches.enumerated() {
        for span in batch.spans {
            _ = probe.insert(span, from: batch, batchGeneration: UInt64(index), source: SourcePosition(lane: 0, offset: 0), now: 0, ready: &none)
        }
    }
    print("""
        corpus: \(corpus.batches.count) traces, \(corpus.spans) spans, \(corpus.wireBytes) wire bytes, \(corpus.spanBytes) span bytes
        resident while buffered: \(probe.bufferedBytes) bytes = \(String(format: "%.2f", Double(probe.bufferedBytes) / Double(corpus.wireBytes)))× the OTLP wire size, \
        \(probe.bufferedBytes / corpus.spans) bytes per span
        """)

    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions], warmupIterations: 5,
        maxDuration: .seconds(5), maxIterations: 2_000)

    Benchmark("insert + expire + decide, 100 SDK traces (\(corpus.spans) spans) per iteration") { benchmark in
        // No decision cache: the same trace ids come back every iteration.
        var window = TraceWindow(limits: WindowLimits(decisionWait: .seconds(10)), cache: DecisionCache(keptCapacity: 0, droppedCapacity: 0))
        var ready: [ReadyTrace] = []
        ready.reserveCapacity(256)
        var clock: UInt64 = 1_000_000_000
        for _ in 0..<5 {
            blackHole(pass(&window, ready: &ready, start: clock))
            clock += 30_000_000_000
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(pass(&window, ready: &ready, start: clock))
            clock += 30_000_000_000
        }
        benchmark.stopMeasurement()
    }

    Benchmark("insert + expire + decide, kept buffers returned too (\(corpus.spans) spans) per iteration") { benchmark in
        var window = TraceWindow(limits: WindowLimits(decisionWait: .seconds(10)), cache: DecisionCache(keptCapacity: 0, droppedCapacity: 0))
        var ready: [ReadyTrace] = []
        ready.reserveCapacity(256)
        var clock: UInt64 = 1_000_000_000
        for _ in 0..<5 {
            blackHole(pass(&window, ready: &ready, start: clock, recycleKept: true))
            clock += 30_000_000_000
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(pass(&window, ready: &ready, start: clock, recycleKept: true))
            clock += 30_000_000_000
        }
        benchmark.stopMeasurement()
    }
}
