public import Foundation
public import OTLP
import Synchronization

/// Settings of the file store.
public struct TraceStoreOptions: Sendable {
    /// Roll to a new segment past this size…
    public var segmentBytes = 64 << 20
    /// …or this age.
    public var segmentAge: Duration = .seconds(3600)
    /// Delete segments older than this (nil: keep).
    public var retentionAge: Duration? = .seconds(72 * 3600)
    /// Delete the oldest segments while the store is larger than this (nil: no bound).
    public var retentionBytes: Int? = nil
    /// zstd level for blocks.
    public var compressionLevel: Int32 = 3
    public init() {}
}

/// The embedded store of kept traces: append-only segment files of zstd-compressed, checksummed
/// blocks, with an in-memory index from trace id to the blocks holding it (rebuilt on open from the
/// blocks' uncompressed id lists). Spans of one trace written at different times all come back,
/// each once.
///
/// Block layout (little-endian): magic `TGB1`, u32 trace count, u32 compressed size, u32 raw size,
/// u64 unix milliseconds, 16-byte ids × count, the zstd frame, and a CRC-32C of everything before it.
/// On open, the last segment is verified block by block and cut at the first torn or corrupt block,
/// so a crash mid-write never damages what was written before.
///
/// The index is one ``SegmentIndex`` per segment: 12 bytes per (trace, block) pair, so its memory is
/// bounded by what retention keeps (``indexBytes``), and retention drops a segment's index with the
/// file, without touching the others. Reads take the lock only to copy the block locations; the disk
/// work and decompression run outside it, each reader with its own zstd context.
public final class TraceStore: Sendable {
    public let directory: URL
    public let options: TraceStoreOptions
    private let readOnly: Bool
    /// `fdatasync`, replaceable in tests to see a failing disk.
    let syncFile: Mutex<@Sendable (Int32) -> Int32> = Mutex({ fdatasync($0) })
    private let state: Mutex<State>
    /// The writer's compression context (one writer at a time, serialised by its own lock).
    private let writeCodec: Mutex<ZstdCodec>

    struct State {
        var segments: [Segment] = []
    }

    struct Segment {
        var number: UInt64
        var path: String
        var size: Int64
        var created: Date
        var index = SegmentIndex()
        /// Search summaries of its blocks, by offset (loaded from the sidecar, or built when first needed).
        var summaries: [UInt32: BlockSummary] = [:]
        var summaryPath: String { path + ".summary" }
    }

    static let magic: [UInt8] = Array("TGB1".utf8)
    static let headerSize = 24

    /// Opens (creating if needed) the store in `directory`. Read-only opens never modify files.
    public init(directory: URL, options: TraceStoreOptions = TraceStoreOptions(), readOnly: Bool = false) throws(StorageError) {
        guard options.segmentBytes <= Int(UInt32.max) else {
            throw StorageError(message: "segment size \(options.segmentBytes) is over the store's 4 GiB limit per segment")
        }
        self.directory = directory
        self.options = options
        self.readOnly = readOnly
        writeCodec = Mutex(ZstdCodec(level: options.compressionLevel))
        let fm = FileManager.default
        if !readOnly {
            do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
                throw StorageError(message: "cannot create the store directory \(directory.path): \(error.localizedDescription)")
            }
        }
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else {
            throw StorageError(message: "cannot read the store directory \(directory.path)")
        }
        let numbers = names.compactMap { name -> UInt64? in
            guard name.hasSuffix(".tgs") else { return nil }
            return UInt64(name.dropLast(4))
        }.sorted()
        var segments: [Segment] = []
        for (position, number) in numbers.enumerated() {
            let path = directory.appendingPathComponent(Self.segmentName(number)).path
            let isLast = position == numbers.count - 1
            var index = SegmentIndex()
            let size = try Self.scan(path: path, verify: isLast, readOnly: readOnly, into: &index)
            index.seal()
            let created = (try? fm.attributesOfItem(atPath: path)[.creationDate] as? Date) ?? nil
            let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? nil
            var segment = Segment(number: number, path: path, size: size, created: created ?? modified ?? Date(), index: index)
            segment.summaries = Self.loadSummaries(segment.summaryPath, size: size)
            segments.append(segment)
        }
        state = Mutex(State(segments: segments))
    }

    static func segmentName(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".tgs"
    }

    /// Reads block headers of a segment into `index`; with `verify`, checks every block's checksum
    /// and cuts the file after the last good block. Returns the good size.
    private static func scan(path: String, verify: Bool, readOnly: Bool, into index: inout SegmentIndex) throws(StorageError) -> Int64 {
        let fd = open(path, readOnly ? O_RDONLY : O_RDWR)
        guard fd >= 0 else { throw StorageError(message: "cannot open segment \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        let fileSize = Int64(info.st_size)
        var offset: Int64 = 0
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        while offset + Int64(Self.headerSize) + 4 <= fileSize {
            guard pread(fd, &header, Self.headerSize, off_t(offset)) == Self.headerSize, Array(header[0..<4]) == Self.magic else { break }
            let count = Int(Self.u32(header, 4))
            let compressed = Int(Self.u32(header, 8))
            let total = Int64(Self.headerSize + count * 16 + compressed + 4)
            guard count > 0, offset + total <= fileSize, offset <= Int64(UInt32.max) else { break }
            var block = [UInt8](repeating: 0, count: Int(verify ? total : Int64(Self.headerSize + count * 16)))
            guard pread(fd, &block, block.count, off_t(offset)) == block.count else { break }
            if verify {
                let body = block.count - 4
                let stored = Self.u32(block, body)
                let actual = block.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
                guard stored == actual else { break }
            }
            for i in 0..<count {
                let id = block.withUnsafeBytes { TraceID(bytes: $0, at: Self.headerSize + i * 16) }
                index.append(id, block: UInt32(offset))
            }
            offset += total
        }
        if offset < fileSize && !readOnly {
            // A torn tail (crash mid-write) or a corrupt block: cut it off.
            _ = ftruncate(fd, off_t(offset))
        }
        return offset
    }

    static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    static func put32(_ value: UInt32, into bytes: inout [UInt8]) {
        bytes += [UInt8(value & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 24)]
    }

    // MARK: Writing

    /// Writes `traces` as one block, durably (fdatasync) before returning: once it returns they
    /// survive a crash. Rolls segments and applies retention as needed.
    public func write(_ traces: [StoredTrace], now: Date = Date()) throws(StorageError) {
        guard !traces.isEmpty else { return }
        guard !readOnly else { throw StorageError(message: "the store at \(directory.path) is open read-only") }
        var payload: [UInt8] = []
        payload.reserveCapacity(traces.reduce(0) { $0 + $1.request.count + 32 })
        for trace in traces {
            let policy = trace.policy.utf8.prefix(255)
            Self.put32(UInt32(16 + 1 + policy.count + trace.request.count), into: &payload)
            trace.traceID.append(to: &payload)
            payload.append(UInt8(policy.count))
            payload.append(contentsOf: policy)
            payload += trace.request
        }
        let frame = writeCodec.withLock { $0.compress(payload) }
        var block: [UInt8] = Self.magic
        block.reserveCapacity(Self.headerSize + traces.count * 16 + frame.count + 4)
        Self.put32(UInt32(traces.count), into: &block)
        Self.put32(UInt32(frame.count), into: &block)
        Self.put32(UInt32(payload.count), into: &block)
        let millis = UInt64(now.timeIntervalSince1970 * 1000)
        Self.put32(UInt32(millis & 0xFFFF_FFFF), into: &block)
        Self.put32(UInt32(millis >> 32), into: &block)
        for trace in traces { trace.traceID.append(to: &block) }
        block += frame
        Self.put32(CRC32C.checksum(block), into: &block)
        let sync = syncFile.withLock { $0 }
        // The block's search summary, built before the lock (it decodes every trace of the block).
        var summary = BlockSummary.build(offset: 0, requests: traces.map(\.request))

        let expired = try state.withLock { (state) throws(StorageError) -> [String] in
            let segment = try activeSegment(&state, now: now, adding: block.count, sync: sync)
            let path = state.segments[segment].path
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
            guard fd >= 0 else { throw StorageError(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let offset = state.segments[segment].size
            var written = 0
            while written < block.count {
                let n = block[written...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                if n <= 0 {
                    // Leave no half block behind for the next append; recovery would cut it anyway.
                    let reason = String(cString: strerror(errno))
                    _ = ftruncate(fd, off_t(offset))
                    throw StorageError(message: "writing \(path) failed: \(reason)")
                }
                written += n
            }
            guard sync(fd) == 0 else {
                let reason = String(cString: strerror(errno))
                // The block is in the file but not durable: cut it off, so the segment's size (and the
                // offsets of the blocks written next) stay true; the writer retries the whole block.
                _ = ftruncate(fd, off_t(offset))
                throw StorageError(message: "fdatasync of \(path) failed: \(reason)")
            }
            state.segments[segment].size += Int64(block.count)
            for trace in traces {
                state.segments[segment].index.append(trace.traceID, block: UInt32(offset))
            }
            summary.offset = UInt32(offset)
            state.segments[segment].summaries[UInt32(offset)] = summary
            Self.appendSummary(summary, to: state.segments[segment].summaryPath)
            return Self.retire(&state, options: options, now: now)
        }
        Self.unlink(expired)
    }

    /// The segment to append `bytes` to: the last one while it is young and has room (an empty one
    /// always has room), else a new one. The segment left behind has its index sealed (sorted, tight).
    /// A new segment's directory entry is synced before anything is written to it: a block synced
    /// into a file whose name a crash then loses would be lost with it.
    private func activeSegment(
        _ state: inout State, now: Date, adding bytes: Int, sync: (Int32) -> Int32
    ) throws(StorageError) -> Int {
        if let last = state.segments.indices.last {
            let segment = state.segments[last]
            let young = now.timeIntervalSince(segment.created) < options.segmentAge.seconds
            if young && (segment.size == 0 || segment.size + Int64(bytes) <= Int64(options.segmentBytes)) { return last }
            state.segments[last].index.seal()
        }
        let number = (state.segments.last?.number ?? 0) + 1
        let path = directory.appendingPathComponent(Self.segmentName(number)).path
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw StorageError(message: "cannot create segment \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        let directoryFD = open(directory.path, O_RDONLY | O_DIRECTORY)
        let synced = directoryFD >= 0 && sync(directoryFD) == 0
        let reason = String(cString: strerror(errno))
        if directoryFD >= 0 { close(directoryFD) }
        guard synced else {
            _ = Foundation.unlink(path)
            throw StorageError(message: "syncing the directory \(directory.path) after creating \(path) failed: \(reason)")
        }
        state.segments.append(Segment(number: number, path: path, size: 0, created: now))
        return state.segments.count - 1
    }

    /// Applies retention now: an idle store (nothing written for a while) expires its segments too.
    /// The writer calls it on a timer.
    public func expire(now: Date = Date()) {
        guard !readOnly else { return }
        let expired = state.withLock { Self.retire(&$0, options: options, now: now) }
        Self.unlink(expired)
    }

    /// Takes the oldest segments past the age or size bound out of the state (with their indexes) and
    /// returns their paths, to delete outside the lock. The active segment goes too once even its
    /// newest block must be older than the retention age (it rolls at `segmentAge` when written to, so
    /// that is `created` + `segmentAge` ago); the next write starts a new one.
    private static func retire(_ state: inout State, options: TraceStoreOptions, now: Date) -> [String] {
        var expired: [String] = []
        var total = state.segments.reduce(Int64(0)) { $0 + $1.size }
        while let oldest = state.segments.first {
            let age = now.timeIntervalSince(oldest.created)
            if state.segments.count == 1 {
                guard let limit = options.retentionAge, age > limit.seconds + options.segmentAge.seconds else { break }
            } else {
                let tooOld = options.retentionAge.map { age > $0.seconds } ?? false
                let tooBig = options.retentionBytes.map { total > Int64($0) } ?? false
                guard tooOld || tooBig else { break }
            }
            expired.append(oldest.path)
            total -= oldest.size
            state.segments.removeFirst()
        }
        return expired
    }

    private static func unlink(_ paths: [String]) {
        for path in paths {
            _ = Foundation.unlink(path)
            _ = Foundation.unlink(path + ".summary")
        }
    }

    /// The summaries in a segment's sidecar (one JSON line per block; a torn or foreign line is
    /// skipped, its block summarised again when a search needs it). Blocks past `size` (cut off by
    /// recovery) are dropped.
    static func loadSummaries(_ path: String, size: Int64) -> [UInt32: BlockSummary] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        var result: [UInt32: BlockSummary] = [:]
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let summary = try? decoder.decode(BlockSummary.self, from: Data(line)), Int64(summary.offset) < size else { continue }
            result[summary.offset] = summary
        }
        return result
    }

    /// Appends a summary line to the sidecar (not synced: a lost line is rebuilt from its block).
    static func appendSummary(_ summary: BlockSummary, to path: String) {
        var line = summary.jsonLine()
        line.append(UInt8(ascii: "\n"))
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        // After a torn last line (a crash mid-append), start on a line of its own.
        var info = stat()
        if fstat(fd, &info) == 0, info.st_size > 0 {
            var last: UInt8 = 0
            if pread(fd, &last, 1, info.st_size - 1) == 1, last != UInt8(ascii: "\n") { line.insert(UInt8(ascii: "\n"), at: 0) }
        }
        _ = line.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    }

    // MARK: Reading

    /// Every stored piece of `traceID`, oldest first; empty when unknown. Blocks of a segment that
    /// retention deleted while this read ran are skipped (their traces are past retention).
    public func read(_ traceID: TraceID) throws(StorageError) -> [StoredTrace] {
        let locations = state.withLock { state in
            state.segments.flatMap { segment in segment.index.blocks(of: traceID).map { (segment.path, Int64($0)) } }
        }
        guard !locations.isEmpty else { return [] }
        let codec = ZstdCodec()
        var pieces: [StoredTrace] = []
        for (path, offset) in locations {
            guard let records = try readBlock(path: path, offset: offset, codec: codec) else { continue }
            for record in records where record.traceID == traceID {
                pieces.append(record)
            }
        }
        return pieces
    }

    /// The whole trace as one OTLP `ExportTraceServiceRequest` (duplicates removed); nil when unknown.
    public func trace(_ traceID: TraceID, policyAttribute: Bool = true) throws(StorageError) -> [UInt8]? {
        let pieces = try read(traceID)
        guard !pieces.isEmpty else { return nil }
        do {
            return try TraceMerger.merge(pieces, policyAttribute: policyAttribute)
        } catch {
            throw StorageError(message: "stored trace \(traceID.hex) does not decode: \(error)")
        }
    }

    /// The records of the block at `offset`; nil when the segment is gone (expired meanwhile).
    private func readBlock(path: String, offset: Int64, codec: ZstdCodec) throws(StorageError) -> [StoredTrace]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StorageError(message: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        guard pread(fd, &header, Self.headerSize, off_t(offset)) == Self.headerSize, Array(header[0..<4]) == Self.magic else {
            throw StorageError(message: "\(path): no block at offset \(offset)")
        }
        let count = Int(Self.u32(header, 4))
        let compressed = Int(Self.u32(header, 8))
        var block = [UInt8](repeating: 0, count: Self.headerSize + count * 16 + compressed + 4)
        guard pread(fd, &block, block.count, off_t(offset)) == block.count else {
            throw StorageError(message: "\(path): block at offset \(offset) is truncated")
        }
        let body = block.count - 4
        let crc = block.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
        guard crc == Self.u32(block, body) else { throw StorageError(message: "\(path): block at offset \(offset) fails its checksum") }
        let frameStart = Self.headerSize + count * 16
        let payload: [UInt8]
        do {
            payload = try block.withUnsafeBytes { (raw) throws(StorageError) -> [UInt8] in
                try codec.decompress(UnsafeRawBufferPointer(rebasing: raw[frameStart..<body]))
            }
        } catch {
            throw StorageError(message: "\(path): block at offset \(offset): \(error)")
        }
        var records: [StoredTrace] = []
        var position = 0
        while position + 4 <= payload.count {
            let length = Int(Self.u32(payload, position))
            position += 4
            guard length >= 17, position + length <= payload.count else { break }
            let id = payload.withUnsafeBytes { TraceID(bytes: $0, at: position) }
            let policyLength = Int(payload[position + 16])
            let policy = String(decoding: payload[(position + 17)..<(position + 17 + policyLength)], as: UTF8.self)
            let request = Array(payload[(position + 17 + policyLength)..<(position + length)])
            records.append(StoredTrace(traceID: id, policy: policy, request: request))
            position += length
        }
        return records
    }

    /// Distinct trace ids stored (by their 64-bit index key; for tests and tooling, O(n)).
    public var traceCount: Int {
        state.withLock { state in
            var keys = Set<UInt64>()
            for segment in state.segments { segment.index.forEachKey { keys.insert($0) } }
            return keys.count
        }
    }

    /// (trace, block) pairs in the index, and the bytes the index holds for them.
    public var indexSize: (entries: Int, bytes: Int) {
        state.withLock { state in
            state.segments.reduce((0, 0)) { ($0.0 + $1.index.count, $0.1 + $1.index.bytes) }
        }
    }

    /// Segment files, oldest first.
    public var segmentPaths: [String] {
        state.withLock { $0.segments.map(\.path) }
    }
}

/// The index of one segment: which blocks (by offset in the segment) hold which trace ids, as two
/// parallel arrays — a 64-bit key from the trace id and a 32-bit block offset, 12 bytes a pair. A
/// sealed prefix is sorted by (key, offset) and searched in O(log n); pairs appended since (the
/// active segment's newest blocks) sit in a short unsorted tail, merged into the sorted prefix every
/// ``tailLimit`` pairs. Keys may collide (two ids, one key): a read filters the block's records by the
/// full id, so a collision costs one extra block read, never a wrong trace.
struct SegmentIndex {
    private(set) var keys: [UInt64] = []
    private(set) var offsets: [UInt32] = []
    /// How many leading pairs are sorted.
    private var sorted = 0
    static let tailLimit = 1024

    static func key(_ id: TraceID) -> UInt64 { id.high ^ id.low }

    var count: Int { keys.count }
    /// Bytes held (capacity, so slack from growth counts too).
    var bytes: Int { keys.capacity * 8 + offsets.capacity * 4 }

    mutating func append(_ id: TraceID, block offset: UInt32) {
        keys.append(Self.key(id))
        offsets.append(offset)
        if keys.count - sorted >= Self.tailLimit { merge() }
    }

    /// Sorts everything and gives back growth slack: for a segment nobody appends to any more.
    mutating func seal() {
        merge()
        if keys.capacity > keys.count {
            keys = keys.withUnsafeBufferPointer { Array($0) }
            offsets = offsets.withUnsafeBufferPointer { Array($0) }
        }
    }

    /// The distinct block offsets that may hold `id`, ascending.
    func blocks(of id: TraceID) -> [UInt32] {
        let key = Self.key(id)
        var found: [UInt32] = []
        // Lower bound of `key` in the sorted prefix.
        var low = 0, high = sorted
        while low < high {
            let middle = (low + high) / 2
            if keys[middle] < key { low = middle + 1 } else { high = middle }
        }
        var i = low
        while i < sorted && keys[i] == key {
            if found.last != offsets[i] { found.append(offsets[i]) }
            i += 1
        }
        for j in sorted..<keys.count where keys[j] == key && !found.contains(offsets[j]) {
            found.append(offsets[j])
        }
        return found.sorted()
    }

    func forEachKey(_ body: (UInt64) -> Void) {
        for key in keys { body(key) }
    }

    /// Sorts the tail and merges it into the sorted prefix (linear in the index size).
    private mutating func merge() {
        guard sorted < keys.count else { return }
        var tail = (sorted..<keys.count).map { (keys[$0], offsets[$0]) }
        tail.sort { $0 < $1 }
        var mergedKeys: [UInt64] = []
        var mergedOffsets: [UInt32] = []
        mergedKeys.reserveCapacity(keys.capacity)
        mergedOffsets.reserveCapacity(offsets.capacity)
        var i = 0, j = 0
        while i < sorted || j < tail.count {
            if j == tail.count || (i < sorted && (keys[i], offsets[i]) <= tail[j]) {
                mergedKeys.append(keys[i])
                mergedOffsets.append(offsets[i])
                i += 1
            } else {
                mergedKeys.append(tail[j].0)
                mergedOffsets.append(tail[j].1)
                j += 1
            }
        }
        keys = mergedKeys
        offsets = mergedOffsets
        sorted = keys.count
    }
}

extension SegmentIndex {
    /// The distinct block offsets of the segment, ascending.
    var blockOffsets: [UInt32] { Array(Set(offsets)).sorted() }
}

// MARK: Search

extension TraceStore {
    /// Tempo's search over the stored traces: blocks newest first, each trace merged from all its
    /// pieces and matched against the query; stops at `limit` hits or at the request's budget (then
    /// the response says it is partial). Blocks written before the window's start are skipped
    /// unread (their traces ended before it).
    public func search(_ request: TraceSearchRequest, clock: ContinuousClock = ContinuousClock()) throws(StorageError) -> TraceSearchResponse {
        let deadline = clock.now + request.budget
        let matcher = TraceQLMatcher(query: request.effectiveQuery)
        let blocks = state.withLock { state in
            state.segments.reversed().flatMap { segment in
                segment.index.blockOffsets.reversed().map { (segment.path, Int64($0), segment.summaries[$0]) }
            }
        }
        var response = TraceSearchResponse()
        var seen = Set<TraceID>()
        let codec = ZstdCodec()
        let windowStartMillis = request.start.map { $0 * 1000 }
        let query = request.effectiveQuery
        for (path, offset, known) in blocks {
            if response.traces.count >= request.limit { break }
            if clock.now >= deadline {
                response.partial = true
                break
            }
            if let windowStartMillis, let written = try blockTime(path: path, offset: offset), written < windowStartMillis {
                response.skippedBlocks += 1
                continue
            }
            if let known, !known.mayMatch(request, query: query) {
                response.skippedBlocks += 1
                continue
            }
            guard let records = try readBlock(path: path, offset: offset, codec: codec) else { continue }
            response.inspectedBlocks += 1
            if known == nil {
                // A block from before summaries (or whose line was lost): summarise it now, for next time.
                let summary = BlockSummary.build(offset: UInt32(offset), requests: records.map(\.request))
                remember(summary, path: path)
                if !summary.mayMatch(request, query: query) { continue }
            }
            var pieces: [TraceID: [StoredTrace]] = [:]
            for record in records { pieces[record.traceID, default: []].append(record) }
            for record in records where seen.insert(record.traceID).inserted {
                if response.traces.count >= request.limit { break }
                // The whole trace: from this block when it is all here (the common case), else merged
                // with its pieces in other blocks (late spans).
                let here = pieces[record.traceID] ?? [record]
                let elsewhere = state.withLock { state in
                    state.segments.reduce(0) { $0 + $1.index.blocks(of: record.traceID).count }
                } > 1
                let merged: [UInt8]
                if elsewhere {
                    guard let whole = try trace(record.traceID, policyAttribute: false) else { continue }
                    merged = whole
                } else if here.count == 1 {
                    merged = here[0].request
                } else {
                    do { merged = try TraceMerger.merge(here, policyAttribute: false) } catch { continue }
                }
                response.inspectedTraces += 1
                response.inspectedBytes += merged.count
                if let hit = matcher.hit(merged, traceID: record.traceID, search: request) { response.traces.append(hit) }
            }
        }
        response.traces.sort { $0.startTimeUnixNano > $1.startTimeUnixNano }
        return response
    }

    /// Keeps a summary built on demand (and appends it to the sidecar, unless read-only).
    private func remember(_ summary: BlockSummary, path: String) {
        let sidecar = state.withLock { state -> String? in
            guard let index = state.segments.firstIndex(where: { $0.path == path }) else { return nil }
            state.segments[index].summaries[summary.offset] = summary
            return state.segments[index].summaryPath
        }
        if let sidecar, !readOnly { Self.appendSummary(summary, to: sidecar) }
    }

    /// Every block's summary, building the missing ones (the tag lists need them all).
    public func allSummaries() throws(StorageError) -> [BlockSummary] {
        let blocks = state.withLock { state in
            state.segments.flatMap { segment in segment.index.blockOffsets.map { (segment.path, Int64($0), segment.summaries[$0]) } }
        }
        let codec = ZstdCodec()
        var result: [BlockSummary] = []
        for (path, offset, known) in blocks {
            if let known {
                result.append(known)
                continue
            }
            guard let records = try readBlock(path: path, offset: offset, codec: codec) else { continue }
            let summary = BlockSummary.build(offset: UInt32(offset), requests: records.map(\.request))
            remember(summary, path: path)
            result.append(summary)
        }
        return result
    }

    /// The unix milliseconds a block was written at (its header), nil when the segment is gone.
    private func blockTime(path: String, offset: Int64) throws(StorageError) -> UInt64? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        guard pread(fd, &header, Self.headerSize, off_t(offset)) == Self.headerSize, Array(header[0..<4]) == Self.magic else {
            throw StorageError(message: "\(path): no block at offset \(offset)")
        }
        return header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian }
    }
}

extension Duration {
    /// Seconds as a `Double` (for `Date` arithmetic).
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
