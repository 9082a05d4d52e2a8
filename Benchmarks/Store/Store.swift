// File-store benchmark: kept traces made by the official OpenTelemetry Python SDK
// (Tests/Fixtures/dogbook_corpus.pbl) written in blocks of 100 traces, as the store writer does —
// zstd level 3, CRC-32C, fdatasync per block — into a fresh store under the system temp directory.
//
//   TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target StoreBenchmark
import Benchmark
import Foundation
import OTLP
import Storage

struct Corpus {
    let traces: [StoredTrace]
    let bytes: Int

    static func load() -> Corpus {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = [UInt8](try! Data(contentsOf: root.appendingPathComponent("Tests/Fixtures/dogbook_corpus.pbl")))
        var traces: [StoredTrace] = []
        var offset = 0
        while offset + 4 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8 | Int(data[offset + 3])
            let request = Array(data[(offset + 4)..<(offset + 4 + length)])
            var batch = SpanBatch()
            _ = try! SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
            traces.append(StoredTrace(traceID: batch.spans[0].traceID, policy: "errors", request: request))
            offset += 4 + length
        }
        return Corpus(traces: traces, bytes: traces.reduce(0) { $0 + $1.request.count })
    }
}

nonisolated(unsafe) let corpus = Corpus.load()

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal], warmupIterations: 2, maxDuration: .seconds(5), maxIterations: 500)

    // Compression ratio, once.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-bench-\(UUID().uuidString)")
    let store = try! TraceStore(directory: directory)
    try! store.write(corpus.traces)
    let stored = (try? FileManager.default.attributesOfItem(atPath: store.segmentPaths[0])[.size] as? Int) ?? 0
    print("corpus: \(corpus.traces.count) traces, \(corpus.bytes) bytes of OTLP; one block on disk: \(stored) bytes, ratio \(String(format: "%.1f", Double(corpus.bytes) / Double(max(stored, 1))))×")
    try? FileManager.default.removeItem(at: directory)

    Benchmark("write 100 SDK traces (\(corpus.bytes / 1024) KiB of OTLP) as one block, fdatasync") { benchmark in
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try! TraceStore(directory: directory)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try! store.write(corpus.traces)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("read one trace back (block read, CRC, zstd, merge)") { benchmark in
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try! TraceStore(directory: directory)
        try! store.write(corpus.traces)
        let id = corpus.traces[50].traceID
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try! store.trace(id))
        }
        benchmark.stopMeasurement()
    }
}
