import Foundation
import OTLP
@testable import Storage
import Synchronization
import Testing
import TestSupport

/// The file store: write, read, late pieces, duplicates, rollover, retention, torn-tail recovery.
@Suite struct TraceStoreTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-store-\(UUID().uuidString)")
    }

    /// The SDK-made request for one trace, split in two halves by span.
    func sdkTrace() throws -> (id: TraceID, whole: [UInt8], spans: [SpanID]) {
        let bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("single_trace.pb")))
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(bytes, into: &batch)
        return (batch.spans[0].traceID, bytes, batch.spans.map(\.spanID))
    }

    func spanIDs(_ request: [UInt8]) throws -> [SpanID] {
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        return batch.spans.map(\.spanID)
    }

    /// A request with `count` small spans of trace `id`.
    func spanCount(_ request: [UInt8]?) throws -> Int? {
        guard let request else { return nil }
        var batch = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(request, into: &batch)
        return batch.spans.count
    }

    func smallTrace(_ id: TraceID, spans: ClosedRange<UInt64>) -> [UInt8] {
        otlpTrace(id, spans: spans)
    }

    @Test func writesReadsAndMergesLatePiecesAndDuplicates() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try TraceStore(directory: directory)
        let sdk = try sdkTrace()
        let other = TraceID(high: 7, low: 7)
        try store.write([StoredTrace(traceID: sdk.id, policy: "errors", request: sdk.whole),
                         StoredTrace(traceID: other, policy: "baseline", request: smallTrace(other, spans: 1...3))])
        // A late span, and a replay of the whole trace after a crash.
        try store.write([StoredTrace(traceID: other, policy: "baseline", request: smallTrace(other, spans: 4...4))])
        try store.write([StoredTrace(traceID: sdk.id, policy: "errors", request: sdk.whole)])

        let merged = try #require(try store.trace(sdk.id, policyAttribute: false))
        #expect(try spanIDs(merged) == sdk.spans, "each span once, in order")
        // Byte for byte: every span's encoding is unchanged.
        var original = SpanBatch()
        var back = SpanBatch()
        _ = try SpanDecoder(encoding: .otlpProto).decode(sdk.whole, into: &original)
        _ = try SpanDecoder(encoding: .otlpProto).decode(merged, into: &back)
        for (a, b) in zip(original.spans, back.spans) {
            #expect(original.withBytes(a.encoded) { Array($0) } == back.withBytes(b.encoded) { Array($0) })
            #expect(original.string(original.serviceName(of: a)) == back.string(back.serviceName(of: b)))
        }
        let late = try #require(try store.trace(other))
        #expect(try spanIDs(late).map(\.rawValue) == [1, 2, 3, 4])
        #expect(try store.trace(TraceID(high: 9, low: 9)) == nil)

        // tailgate.policy, appended to each span when asked.
        var withPolicy = SpanBatch(selection: AttributeSelection(keys: ["tailgate.policy"]))
        _ = try SpanDecoder(encoding: .otlpProto).decode(late, into: &withPolicy)
        #expect(withPolicy.spans.allSatisfy { span in
            if case .string(let range) = withPolicy.value(of: AttributeKeyID(rawValue: 0), for: span) { return withPolicy.string(range) == "baseline" }
            return false
        })

        // Reopened: the index is rebuilt from the blocks.
        let reopened = try TraceStore(directory: directory)
        #expect(reopened.traceCount == 2)
        #expect(try spanIDs(try #require(try reopened.trace(sdk.id))) == sdk.spans)
    }

    /// Search summaries: written beside the segment with each block, read back on open (no block
    /// decoded again), a torn line rebuilt from its block, and deleted with the segment.
    @Test func blockSummariesPersistAndGoWithTheirSegment() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let trace = try sdkTrace()
        var options = TraceStoreOptions()
        options.retentionAge = .seconds(3600)
        options.segmentAge = .seconds(60)
        let start = Date(timeIntervalSince1970: 1_764_000_000)
        do {
            let store = try TraceStore(directory: directory, options: options)
            try store.write([StoredTrace(traceID: trace.id, policy: "p", request: trace.whole)], now: start)
            try store.write([StoredTrace(traceID: trace.id, policy: "p", request: trace.whole)], now: start.addingTimeInterval(1))
        }
        let sidecar = directory.appendingPathComponent("000000000001.tgs.summary")
        let lines = try String(contentsOf: sidecar, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let reopened = try TraceStore(directory: directory, options: options, readOnly: true)
        let summaries = try reopened.allSummaries()
        #expect(summaries.count == 2)
        #expect(summaries.allSatisfy { $0.traces == 1 && $0.hasError && $0.rootServices == ["frontend"] }, "\(summaries.map(\.rootServices))")
        // A torn last line: that block is summarised again from its data.
        try (lines[0] + "\n" + lines[1].prefix(20)).write(to: sidecar, atomically: true, encoding: .utf8)
        let rebuilt = try TraceStore(directory: directory, options: options)
        #expect(try rebuilt.allSummaries().count == 2)
        #expect(try String(contentsOf: sidecar, encoding: .utf8).split(separator: "\n").count == 3, "the rebuilt summary on a line of its own")
        #expect(try TraceStore(directory: directory, options: options, readOnly: true).allSummaries().count == 2)

        // Retention takes the sidecar with its segment.
        let other = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: other) }
        let store = try TraceStore(directory: other, options: options)
        let now = Date()
        try store.write([StoredTrace(traceID: trace.id, policy: "p", request: trace.whole)], now: now)
        let first = other.appendingPathComponent("000000000001.tgs.summary")
        #expect(FileManager.default.fileExists(atPath: first.path))
        try store.write([StoredTrace(traceID: trace.id, policy: "p", request: trace.whole)], now: now.addingTimeInterval(7200))
        #expect(!FileManager.default.fileExists(atPath: first.path))
    }

    @Test func rollsSegmentsBySizeAndAppliesRetention() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = TraceStoreOptions()
        options.segmentBytes = 1000
        options.retentionBytes = 3000
        let store = try TraceStore(directory: directory, options: options)
        var ids: [TraceID] = []
        for i in 0..<40 {
            let id = TraceID(high: 1, low: UInt64(i))
            ids.append(id)
            // Random-looking names so blocks do not compress to nothing.
            try store.write([StoredTrace(traceID: id, policy: "all", request: smallTrace(id, spans: UInt64(i * 50 + 1)...UInt64(i * 50 + 30)))])
        }
        let sizes = store.segmentPaths.map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }
        #expect(store.segmentPaths.count >= 2, "rolled")
        #expect(sizes.reduce(0, +) <= 3000 + 1000, "retention bounds the total size: \(sizes)")
        #expect(try store.trace(ids.last!) != nil, "the newest trace is kept")
        #expect(try store.trace(ids.first!) == nil, "the oldest segment was deleted")

        var byAge = TraceStoreOptions()
        byAge.segmentAge = .seconds(60)
        byAge.retentionAge = .seconds(3600)
        let aged = try TraceStore(directory: temporaryDirectory(), options: byAge)
        let t0 = Date(timeIntervalSince1970: 1_764_000_000)
        try aged.write([StoredTrace(traceID: ids[0], policy: "p", request: smallTrace(ids[0], spans: 1...1))], now: t0)
        try aged.write([StoredTrace(traceID: ids[1], policy: "p", request: smallTrace(ids[1], spans: 1...1))], now: t0 + 120)
        #expect(aged.segmentPaths.count == 2, "a segment older than segmentAge rolls")
        try aged.write([StoredTrace(traceID: ids[2], policy: "p", request: smallTrace(ids[2], spans: 1...1))], now: t0 + 7200)
        #expect(try aged.trace(ids[0]) == nil, "older than the retention age")
        #expect(try aged.trace(ids[2]) != nil)
        try? FileManager.default.removeItem(at: aged.directory)
    }

    /// The index holds 12 bytes per (trace, block) pair once a segment is sealed, finds every trace
    /// across the sorted part and the unsorted tail, tells apart two ids that share a 64-bit key, and
    /// retention drops exactly the expired segment's pairs.
    @Test func theIndexIsCompactFindsEveryTraceAndShrinksWithRetention() throws {
        var options = TraceStoreOptions()
        options.segmentBytes = 20_000
        let store = try TraceStore(directory: temporaryDirectory(), options: options)
        defer { try? FileManager.default.removeItem(at: store.directory) }
        // 3 000 traces in blocks of 10 (more than the 1 024-pair tail limit per segment), then two ids
        // whose halves are swapped: high ^ low is the same key.
        var ids: [TraceID] = []
        for block in 0..<300 {
            var traces: [StoredTrace] = []
            for i in 0..<10 {
                let id = TraceID(high: 0x5EED_0000 + UInt64(block), low: UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
                ids.append(id)
                traces.append(StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 1...UInt64(1 + i % 3))))
            }
            try store.write(traces)
        }
        let twinA = TraceID(high: 0xAAAA, low: 0x5555), twinB = TraceID(high: 0x5555, low: 0xAAAA)
        try store.write([StoredTrace(traceID: twinA, policy: "p", request: smallTrace(twinA, spans: 1...2))])
        try store.write([StoredTrace(traceID: twinB, policy: "p", request: smallTrace(twinB, spans: 1...5))])
        #expect(store.segmentPaths.count >= 2, "several segments")
        #expect(store.indexSize.entries == 3002)
        for (n, id) in ids.enumerated() where n % 7 == 0 {
            #expect(try spanCount(store.trace(id, policyAttribute: false)) == 1 + (n % 10) % 3, "trace \(n)")
        }
        #expect(try spanCount(store.trace(twinA, policyAttribute: false)) == 2, "a shared key does not mix traces")
        #expect(try spanCount(store.trace(twinB, policyAttribute: false)) == 5)
        #expect(try store.trace(TraceID(high: 1, low: 1)) == nil)

        let reopened = try TraceStore(directory: store.directory, options: options)
        #expect(reopened.indexSize.entries == 3002)
        #expect(reopened.indexSize.bytes <= 3002 * 12 + 64 * reopened.segmentPaths.count, "sealed on open: 12 bytes a pair")
        #expect(reopened.traceCount == 3001, "the twins count once: traceCount counts keys")
        #expect(try spanCount(reopened.trace(ids[2999], policyAttribute: false)) == 1 + 9 % 3)

        // Retention by size: the oldest segment goes, and only its pairs leave the index.
        let firstSegment = reopened.segmentPaths[0]
        var shrinking = options
        shrinking.retentionBytes = 1
        let small = try TraceStore(directory: store.directory, options: shrinking)
        let before = small.indexSize.entries
        small.expire()
        #expect(!FileManager.default.fileExists(atPath: firstSegment))
        #expect(small.indexSize.entries < before)
        #expect(try small.trace(ids[0]) == nil, "the first trace was in the first segment")
        #expect(try small.trace(twinB) != nil, "the newest segment stays")
    }

    /// Readers run in parallel with the writer and with each other, each with its own zstd context.
    @Test func readersRunInParallelWithTheWriter() throws {
        let store = try TraceStore(directory: temporaryDirectory())
        defer { try? FileManager.default.removeItem(at: store.directory) }
        let ids = (0..<50).map { TraceID(high: 0xFEED, low: UInt64($0)) }
        for id in ids { try store.write([StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 1...4))]) }
        let wrong = Mutex(0)
        // The race must happen: the writer starts once every reader is reading, and the readers go
        // on until it is done; reads that start and end while it writes are counted.
        let readersStarted = Atomic<Int>(0)
        let writerDone = Atomic<Bool>(false)
        let readsDuringWrites = Atomic<Int>(0)
        let written = Atomic<Int>(0)
        let finished = DispatchSemaphore(value: 0)
        for worker in 1...4 {
            Thread {
                readersStarted.add(1, ordering: .relaxed)
                var round = 0
                while round < 200 || !writerDone.load(ordering: .acquiring) {
                    let writing = !writerDone.load(ordering: .acquiring) && written.load(ordering: .acquiring) > 0
                    let id = ids[(round * worker) % ids.count]
                    if (try? spanCount(store.trace(id, policyAttribute: false))) != 4 { wrong.withLock { $0 += 1 } }
                    // One of the writer's traces written so far reads back whole too.
                    let done = written.load(ordering: .acquiring)
                    if done > 0 {
                        let fresh = TraceID(high: 0xBEEF, low: UInt64(round % done))
                        if (try? spanCount(store.trace(fresh, policyAttribute: false))) != 2 { wrong.withLock { $0 += 1 } }
                    }
                    if writing && !writerDone.load(ordering: .acquiring) { readsDuringWrites.add(1, ordering: .relaxed) }
                    round += 1
                }
                finished.signal()
            }.start()
        }
        #expect(waitUntil(.seconds(10)) { readersStarted.load(ordering: .relaxed) == 4 })
        for n in 0..<100 {
            let id = TraceID(high: 0xBEEF, low: UInt64(n))
            try store.write([StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 1...2))])
            written.store(n + 1, ordering: .releasing)
        }
        writerDone.store(true, ordering: .releasing)
        for _ in 1...4 { finished.wait() }
        #expect(wrong.withLock { $0 } == 0)
        #expect(readsDuringWrites.load(ordering: .relaxed) > 0, "reads ran while the writer wrote")
        #expect(store.traceCount == 150)
    }

    /// What the README says the store does by default: segments roll at 64 MiB or one hour, traces
    /// are kept 72 h; and a segment older than the hour rolls at the next write (clock injected).
    @Test func segmentsRollAtTheREADMEsSizeAndAge() throws {
        let defaults = TraceStoreOptions()
        #expect(defaults.segmentBytes == 64 * 1024 * 1024)
        #expect(defaults.segmentAge == .seconds(3600))
        #expect(defaults.retentionAge == .seconds(72 * 3600) && defaults.retentionBytes == nil)
        let store = try TraceStore(directory: temporaryDirectory())
        defer { try? FileManager.default.removeItem(at: store.directory) }
        let t0 = Date(timeIntervalSince1970: 1_764_000_000)
        for (n, offset) in [0.0, 1800, 3599].enumerated() {
            let id = TraceID(high: 0xA9E, low: UInt64(n))
            try store.write([StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 1...2))], now: t0 + offset)
        }
        #expect(store.segmentPaths.count == 1, "within the hour: one segment")
        let late = TraceID(high: 0xA9E, low: 9)
        try store.write([StoredTrace(traceID: late, policy: "p", request: smallTrace(late, spans: 1...2))], now: t0 + 3601)
        #expect(store.segmentPaths.count == 2, "past the hour: a new segment")
        // The index of a sealed segment: 12 bytes a (trace, block) pair, as tailgate_store_index_bytes says.
        let index = store.indexSize
        #expect(index.entries == 4)
        #expect(index.bytes >= 3 * 12, "\(index)")
    }

    /// A store nothing is written to still expires: retention runs on the writer's timer, and the
    /// active segment goes once even its newest block is past the retention age.
    @Test func anIdleStoreExpires() throws {
        var options = TraceStoreOptions()
        options.segmentAge = .seconds(60)
        options.retentionAge = .seconds(3600)
        let store = try TraceStore(directory: temporaryDirectory(), options: options)
        defer { try? FileManager.default.removeItem(at: store.directory) }
        let id = TraceID(high: 7, low: 7)
        let t0 = Date(timeIntervalSince1970: 1_764_000_000)
        try store.write([StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 1...2))], now: t0)
        store.expire(now: t0 + 3600)
        #expect(try store.trace(id) != nil, "within the retention age")
        store.expire(now: t0 + 3600 + 60 + 1)
        #expect(try store.trace(id) == nil, "past the retention age, with nothing written since")
        #expect(store.segmentPaths.isEmpty)
        let next = TraceID(high: 7, low: 8)
        try store.write([StoredTrace(traceID: next, policy: "p", request: smallTrace(next, spans: 1...1))], now: t0 + 7200)
        #expect(try store.trace(next) != nil, "the next write starts a new segment")
    }

    /// A new segment's directory entry is made durable before its first block (issue 26): the sync
    /// hook sees the store's directory synced, before the segment file is.
    @Test func aNewSegmentSyncsItsDirectoryFirst() throws {
        let store = try TraceStore(directory: temporaryDirectory())
        defer { try? FileManager.default.removeItem(at: store.directory) }
        let synced = Mutex<[String]>([])
        store.syncFile.withLock {
            $0 = { fd in
                var info = stat()
                fstat(fd, &info)
                synced.withLock { $0.append((info.st_mode & S_IFMT) == S_IFDIR ? "directory" : "file") }
                return fdatasync(fd)
            }
        }
        let id = TraceID(high: 11, low: 1)
        try store.write([StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 1...2))])
        try store.write([StoredTrace(traceID: id, policy: "p", request: smallTrace(id, spans: 3...4))])
        #expect(synced.withLock { $0 } == ["directory", "file", "file"], "one segment: its directory entry once, then each block")
    }

    /// A failed fdatasync leaves no block behind: the next block's offset is still right.
    @Test func aFailedSyncLeavesTheSegmentAsItWas() throws {
        let store = try TraceStore(directory: temporaryDirectory())
        defer { try? FileManager.default.removeItem(at: store.directory) }
        let failures = Mutex(1)
        store.syncFile.withLock {
            $0 = { fd in
                if failures.withLock({ remaining in defer { remaining = max(0, remaining - 1) }; return remaining > 0 }) {
                    errno = EIO
                    return -1
                }
                return fdatasync(fd)
            }
        }
        let first = TraceID(high: 9, low: 1), second = TraceID(high: 9, low: 2)
        #expect(throws: StorageError.self) {
            try store.write([StoredTrace(traceID: first, policy: "p", request: smallTrace(first, spans: 1...3))])
        }
        #expect(try store.trace(first) == nil)
        try store.write([StoredTrace(traceID: first, policy: "p", request: smallTrace(first, spans: 1...3))])
        try store.write([StoredTrace(traceID: second, policy: "p", request: smallTrace(second, spans: 4...5))])
        #expect(try spanCount(store.trace(first, policyAttribute: false)) == 3)
        #expect(try spanCount(store.trace(second, policyAttribute: false)) == 2)
        // Reopened (the index rebuilt from the file): the same.
        let reopened = try TraceStore(directory: store.directory, readOnly: true)
        #expect(try spanCount(reopened.trace(second, policyAttribute: false)) == 2)
    }

    @Test func tornTailIsCutAndEverythingBeforeSurvives() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = TraceID(high: 2, low: 1)
        let second = TraceID(high: 2, low: 2)
        do {
            let store = try TraceStore(directory: directory)
            try store.write([StoredTrace(traceID: first, policy: "p", request: smallTrace(first, spans: 1...5))])
            try store.write([StoredTrace(traceID: second, policy: "p", request: smallTrace(second, spans: 1...5))])
        }
        let segment = directory.appendingPathComponent("000000000001.tgs").path
        let goodSize = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        // A crash mid-write: half of a third block at the end.
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data("TGB1".utf8) + Data([1, 0, 0, 0, 200, 0, 0, 0]) + Data(repeating: 0xAB, count: 40))
        try handle.close()

        let readOnly = try TraceStore(directory: directory, readOnly: true)
        #expect(readOnly.traceCount == 2, "a read-only open skips the torn tail")
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int != goodSize, "and does not modify the file")

        let recovered = try TraceStore(directory: directory)
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int == goodSize)
        #expect(try recovered.trace(first) != nil && recovered.trace(second) != nil)
        let third = TraceID(high: 2, low: 3)
        try recovered.write([StoredTrace(traceID: third, policy: "p", request: smallTrace(third, spans: 1...2))])
        #expect(try TraceStore(directory: directory).trace(third) != nil, "appends after the cut are readable")
    }

    @Test func corruptLastBlockIsDetectedByItsChecksum() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = TraceID(high: 3, low: 1)
        let second = TraceID(high: 3, low: 2)
        do {
            let store = try TraceStore(directory: directory)
            try store.write([StoredTrace(traceID: first, policy: "p", request: smallTrace(first, spans: 1...5))])
            try store.write([StoredTrace(traceID: second, policy: "p", request: smallTrace(second, spans: 1...5))])
        }
        let segment = directory.appendingPathComponent("000000000001.tgs").path
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: segment)))
        bytes[bytes.count - 10] ^= 0x40  // a flipped bit inside the last block's zstd frame
        try Data(bytes).write(to: URL(fileURLWithPath: segment))
        let recovered = try TraceStore(directory: directory)
        #expect(try recovered.trace(first) != nil)
        #expect(try recovered.trace(second) == nil, "the damaged block is cut, never served")
    }
}
