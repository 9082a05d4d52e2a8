// Search benchmark: Tempo's search over the embedded store, ≥ 1 M stored spans of DogBook traffic
// (the traffic generator's traces, 10% errors, 10% slow) spread over the last hour, written in
// blocks of 200 traces as the store writer writes them (each block with its search summary).
//
//   TAILGATE_BENCHMARKS=1 swift package --scratch-path .build-bench benchmark --target SearchBenchmark
import Benchmark
import Foundation
import OTLP
import Storage
import Traffic

struct StoredTraffic {
    let store: TraceStore
    let spans: Int
    let traces: Int
    let directory: URL

    static func make(spans wanted: Int) -> StoredTraffic {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-search-bench-\(UUID().uuidString)")
        var options = TraceStoreOptions()
        options.segmentAge = .seconds(600)  // six segments over the hour
        let store = try! TraceStore(directory: directory, options: options)
        var generator = DogBookTraffic(seed: 5, errorRate: 0.1, slowRate: 0.1)
        let now = Date()
        var spans = 0, traces = 0
        var block: [StoredTrace] = []
        // Every trace gets a start in the last hour, in order; a block is written when it fills, at
        // the time its newest trace ended (plus a decision wait).
        let total = wanted / 12 + 1
        while spans < wanted {
            let age = 3600.0 * Double(total - traces) / Double(total)
            let start = now.addingTimeInterval(-age)
            let trace = generator.nextTrace(startUnixNano: UInt64(start.timeIntervalSince1970 * 1e9))
            block.append(StoredTrace(traceID: trace.traceID, policy: "bench", request: DogBookTraffic.protobuf([trace])))
            spans += trace.spanCount
            traces += 1
            if block.count == 200 {
                try! store.write(block, now: start.addingTimeInterval(10))
                block.removeAll(keepingCapacity: true)
            }
        }
        if !block.isEmpty { try! store.write(block, now: now) }
        return StoredTraffic(store: store, spans: spans, traces: traces, directory: directory)
    }
}

nonisolated(unsafe) let stored = StoredTraffic.make(spans: 1_000_000)

func request(_ query: String, window: TimeInterval, limit: Int) -> TraceSearchRequest {
    var request = TraceSearchRequest(query: try! TraceQL.parse(query))
    let now = UInt64(Date().timeIntervalSince1970)
    request.start = now - UInt64(window)
    request.end = now + 60
    request.limit = limit
    return request
}

let selective = request(#"{ resource.service.name = "feed-service" && status = error && duration > 1s }"#, window: 900, limit: 1000)
let broad = request(#"{ status = error }"#, window: 3600, limit: 1000)
let recent = request(#"{ status = error }"#, window: 3600, limit: 20)
// One user's traces over the hour: a value in a few blocks only, which the Bloom filters find.
let needle = request(#"{ span.enduser.id = "dog-lover-4242" }"#, window: 3600, limit: 1000)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock], warmupIterations: 1, maxDuration: .seconds(10), maxIterations: 50)
    print("store: \(stored.traces) traces, \(stored.spans) spans, \(stored.store.segmentPaths.count) segments")
    for (name, search) in [("selective", selective), ("broad", broad), ("recent", recent), ("needle", needle)] {
        let response = try! stored.store.search(search)
        print("\(name): \(response.traces.count) traces; blocks: \(response.inspectedBlocks) read, \(response.skippedBlocks) skipped; \(response.inspectedTraces) traces and \(response.inspectedBytes) bytes of OTLP decoded")
    }

    Benchmark("selective: feed-service && error && duration > 1s, last 15 min (all matches)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! stored.store.search(selective)) }
    }
    Benchmark("broad: status = error, last hour, limit 1000") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! stored.store.search(broad)) }
    }
    Benchmark("Grafana's default: status = error, last hour, limit 20 (newest first)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! stored.store.search(recent)) }
    }
    Benchmark("needle: one enduser.id over the last hour (Bloom filters)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! stored.store.search(needle)) }
    }
}
