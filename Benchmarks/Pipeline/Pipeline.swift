// The core pipeline without Kafka, one thread: decode (otlp_proto) → route → trace window →
// expire → decide (Benchmarks/e2e/rules.yaml: errors, latency, 1% baseline) → RED and service-graph
// metrics → kept traces written to the file store (zstd, CRC, fdatasync) on tmpfs. The corpus is
// the 100 SDK-made traces of Tests/Fixtures/dogbook_corpus.pbl (1 800 spans, ~20-span traces,
// ~10 attributes per span). The same trace ids come back every pass, so the decision cache is off
// (with it, the second pass would be "late" spans of decided traces).
//
//   TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target PipelineBenchmark
import Benchmark
import Foundation
import OTLP
import Sampling
import SpanMetrics
import Storage

let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

struct Corpus {
    var messages: [[UInt8]] = []
    var spans = 0

    static func load() -> Corpus {
        let data = [UInt8](try! Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/dogbook_corpus.pbl")))
        var corpus = Corpus()
        var offset = 0
        while offset + 4 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8 | Int(data[offset + 3])
            corpus.messages.append(Array(data[(offset + 4)..<(offset + 4 + length)]))
            offset += 4 + length
        }
        var batch = SpanBatch()
        for message in corpus.messages { _ = try! SpanDecoder(encoding: .otlpProto).decode(message, into: &batch) }
        corpus.spans = batch.spans.count
        return corpus
    }
}

nonisolated(unsafe) let corpus = Corpus.load()

let benchmarks: @Sendable () -> Void = {
    let rules = RuleSet(
        configuration: try! RuleFile.parse(
            try! String(contentsOf: root.appendingPathComponent("Benchmarks/e2e/rules.yaml"), encoding: .utf8), file: "rules.yaml"),
        requiredKeys: SpanMetricsConfiguration().attributeKeys)
    let storeDirectory = URL(fileURLWithPath: FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
        .appendingPathComponent("tailgate-pipeline-bench-\(getpid())")
    print("corpus: \(corpus.messages.count) messages, \(corpus.spans) spans per iteration; store on \(storeDirectory.path)")

    // The CI gate (Benchmarks/gate.sh) holds the malloc count per iteration to the committed figure in
    // Benchmarks/Thresholds (exact: the same code allocates the same number of times on any machine),
    // within 2 %: an allocation added per span or per trace shows as hundreds or thousands more.
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions], warmupIterations: 5,
        maxDuration: .seconds(8), maxIterations: 2_000,
        thresholds: [.mallocCountTotal: .init(relative: [.p90: 2.0])])

    Benchmark("decode → window → decide → RED → store kept, \(corpus.spans) spans per iteration") { benchmark in
        try? FileManager.default.removeItem(at: storeDirectory)
        let store = try! TraceStore(directory: storeDirectory, options: TraceStoreOptions())
        defer { try? FileManager.default.removeItem(at: storeDirectory) }
        var window = TraceWindow(
            limits: WindowLimits(decisionWait: .seconds(2), decisionWaitAfterRoot: .seconds(1)),
            cache: DecisionCache(keptCapacity: 0, droppedCapacity: 0))
        let hub = SpanMetricsHub(configuration: SpanMetricsConfiguration(), selection: rules.selection, shards: 1)
        var batch = SpanBatch(selection: rules.selection, reservingBytes: 1 << 20, spans: 4096)
        var ready: [ReadyTrace] = []
        var keptTraces: [StoredTrace] = []
        var clock: UInt64 = 1_000_000_000
        var pass: UInt64 = 1
        // The delivery ledger, fed what the engine feeds it: a poll per message, holds, releases,
        // deliveries and (the store being synchronous here) acknowledgements.
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0)
        var offset: Int64 = 0
        var token: UInt64 = 0
        let decoder = SpanDecoder(encoding: .otlpProto)

        func iteration() {
            pass += 1
            batch.removeAll()
            var positions: [SourcePosition] = []
            var sources: [SourcePosition] = []
            for message in corpus.messages {
                let spans = try! decoder.decode(message, into: &batch).spans
                let position = SourcePosition(lane: 0, offset: offset)
                offset += 1
                positions.append(position)
                for _ in spans { sources.append(position) }
            }
            ledger.dispatch(poll: pass, messages: positions, shards: 1)
            // As a shard does: the spans of one trace that come together size its buffers once.
            var runEnd = 0
            for (index, (span, source)) in zip(batch.spans, sources).enumerated() {
                var expected: TraceRun?
                if index == runEnd {
                    let measured = TraceRun.measure(batch.spans.indices, from: index, in: batch)
                    expected = measured.run
                    runEnd = measured.end
                }
                if window.insert(span, from: batch, batchGeneration: pass, source: source, now: clock, ready: &ready, expected: expected)
                    == .holding
                {
                    ledger.hold(source)
                }
            }
            ledger.inserted(poll: pass)
            clock += 3_000_000_000
            window.expire(now: clock, into: &ready)
            hub.withShard(0) { metrics in
                for item in ready {
                    let kept = rules.decide(item.trace, now: clock).isKeep
                    metrics.record(item.trace, kept: kept, wallClockMillis: 1)
                    window.remember(item.trace.traceID, kept: kept)
                    if kept {
                        keptTraces.append(StoredTrace(traceID: item.trace.traceID, policy: "kept", request: item.trace.exportRequest(policy: "kept")))
                        token += 1
                        ledger.deliver(.init(token), CollectionOfOne(item.firstSource))
                        ledger.acknowledge(.init(token), sink: 0)
                    } else {
                        ledger.release(item.firstSource)
                    }
                    window.recycle(item.trace)
                }
            }
            ready.removeAll(keepingCapacity: true)
            if !keptTraces.isEmpty {
                try! store.write(keptTraces)
                keptTraces.removeAll(keepingCapacity: true)
            }
            blackHole(ledger.committable(0))
        }

        for _ in 0..<5 { iteration() }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { iteration() }
        benchmark.stopMeasurement()
    }
}
