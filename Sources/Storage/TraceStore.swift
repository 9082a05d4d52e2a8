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

/// Why the store cannot do what was asked, naming the file.
public struct TraceStoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
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
public final class TraceStore: @unchecked Sendable {
    public let directory: URL
    public let options: TraceStoreOptions
    private let readOnly: Bool
    private let lock = NSLock()
    /// `fdatasync`, replaceable in tests to see a failing disk.
    var syncFile: @Sendable (Int32) -> Int32 = { fdatasync($0) }
    // Guarded by `lock`:
    private var index: [TraceID: [BlockLocation]] = [:]
    private var segments: [Segment] = []
    private var active: Int32 = -1
    private let codec: ZstdCodec
    private let readCodec: ZstdCodec

    struct BlockLocation: Hashable {
        var segment: UInt64
        var offset: Int64
    }

    struct Segment {
        var number: UInt64
        var path: String
        var size: Int64
        var created: Date
    }

    static let magic: [UInt8] = Array("TGB1".utf8)
    static let headerSize = 24

    /// Opens (creating if needed) the store in `directory`. Read-only opens never modify files.
    public init(directory: URL, options: TraceStoreOptions = TraceStoreOptions(), readOnly: Bool = false) throws(TraceStoreError) {
        self.directory = directory
        self.options = options
        self.readOnly = readOnly
        codec = ZstdCodec(level: options.compressionLevel)
        readCodec = ZstdCodec()
        let fm = FileManager.default
        if !readOnly {
            do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
                throw TraceStoreError(message: "cannot create the store directory \(directory.path): \(error.localizedDescription)")
            }
        }
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else {
            throw TraceStoreError(message: "cannot read the store directory \(directory.path)")
        }
        let numbers = names.compactMap { name -> UInt64? in
            guard name.hasSuffix(".tgs") else { return nil }
            return UInt64(name.dropLast(4))
        }.sorted()
        for (position, number) in numbers.enumerated() {
            let path = directory.appendingPathComponent(Self.segmentName(number)).path
            let isLast = position == numbers.count - 1
            let size = try scan(path: path, number: number, verify: isLast)
            let created = (try? fm.attributesOfItem(atPath: path)[.creationDate] as? Date) ?? nil
            let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? nil
            segments.append(Segment(number: number, path: path, size: size, created: created ?? modified ?? Date()))
        }
    }

    static func segmentName(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".tgs"
    }

    /// Reads block headers of a segment into the index; with `verify`, checks every block's checksum
    /// and cuts the file after the last good block. Returns the good size.
    private func scan(path: String, number: UInt64, verify: Bool) throws(TraceStoreError) -> Int64 {
        let fd = open(path, readOnly ? O_RDONLY : O_RDWR)
        guard fd >= 0 else { throw TraceStoreError(message: "cannot open segment \(path): \(String(cString: strerror(errno)))") }
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
            guard count > 0, offset + total <= fileSize else { break }
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
                index[id, default: []].append(BlockLocation(segment: number, offset: offset))
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
    public func write(_ traces: [StoredTrace], now: Date = Date()) throws(TraceStoreError) {
        guard !traces.isEmpty else { return }
        guard !readOnly else { throw TraceStoreError(message: "the store at \(directory.path) is open read-only") }
        var payload: [UInt8] = []
        payload.reserveCapacity(traces.reduce(0) { $0 + $1.request.count + 32 })
        for trace in traces {
            let policy = Array(trace.policy.utf8.prefix(255))
            Self.put32(UInt32(16 + 1 + policy.count + trace.request.count), into: &payload)
            payload += trace.traceID.bytes
            payload.append(UInt8(policy.count))
            payload += policy
            payload += trace.request
        }
        let frame = codec.compress(payload)
        var block: [UInt8] = Self.magic
        block.reserveCapacity(Self.headerSize + traces.count * 16 + frame.count + 4)
        Self.put32(UInt32(traces.count), into: &block)
        Self.put32(UInt32(frame.count), into: &block)
        Self.put32(UInt32(payload.count), into: &block)
        let millis = UInt64(now.timeIntervalSince1970 * 1000)
        Self.put32(UInt32(millis & 0xFFFF_FFFF), into: &block)
        Self.put32(UInt32(millis >> 32), into: &block)
        for trace in traces { block += trace.traceID.bytes }
        block += frame
        Self.put32(CRC32C.checksum(block), into: &block)

        lock.lock()
        defer { lock.unlock() }
        let segment = try activeSegment(now: now, adding: block.count)
        let fd = open(segments[segment].path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw TraceStoreError(message: "cannot open \(segments[segment].path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let offset = segments[segment].size
        var written = 0
        while written < block.count {
            let n = block[written...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                // Leave no half block behind for the next append; recovery would cut it anyway.
                _ = ftruncate(fd, off_t(offset))
                throw TraceStoreError(message: "writing \(segments[segment].path) failed: \(String(cString: strerror(errno)))")
            }
            written += n
        }
        guard syncFile(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            // The block is in the file but not durable: cut it off, so the segment's size (and the
            // offsets of the blocks written next) stay true; the writer retries the whole block.
            _ = ftruncate(fd, off_t(offset))
            throw TraceStoreError(message: "fdatasync of \(segments[segment].path) failed: \(reason)")
        }
        segments[segment].size += Int64(block.count)
        for trace in traces {
            index[trace.traceID, default: []].append(BlockLocation(segment: segments[segment].number, offset: offset))
        }
        applyRetention(now: now)
    }

    private func activeSegment(now: Date, adding bytes: Int) throws(TraceStoreError) -> Int {
        if let last = segments.indices.last {
            let segment = segments[last]
            let young = now.timeIntervalSince(segment.created) < options.segmentAge.seconds
            if young && (segment.size == 0 || segment.size + Int64(bytes) <= Int64(options.segmentBytes)) { return last }
        }
        let number = (segments.last?.number ?? 0) + 1
        let path = directory.appendingPathComponent(Self.segmentName(number)).path
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw TraceStoreError(message: "cannot create segment \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        segments.append(Segment(number: number, path: path, size: 0, created: now))
        return segments.count - 1
    }

    /// Applies retention now: an idle store (nothing written for a while) expires its segments too.
    /// The writer calls it on a timer.
    public func expire(now: Date = Date()) {
        guard !readOnly else { return }
        lock.lock()
        defer { lock.unlock() }
        applyRetention(now: now)
    }

    /// Deletes the oldest segments past the age or size bound. The active segment goes too once even
    /// its newest block must be older than the retention age (it rolls at `segmentAge` when written to,
    /// so that is `created` + `segmentAge` ago); the next write starts a new one.
    private func applyRetention(now: Date) {
        var removed: Set<UInt64> = []
        while let oldest = segments.first {
            let age = now.timeIntervalSince(oldest.created)
            if segments.count == 1 {
                guard let limit = options.retentionAge, age > limit.seconds + options.segmentAge.seconds else { break }
                unlink(oldest.path)
                removed.insert(oldest.number)
                segments.removeFirst()
                break
            }
            let tooOld = options.retentionAge.map { age > $0.seconds } ?? false
            let tooBig = options.retentionBytes.map { segments.reduce(0) { $0 + $1.size } > Int64($0) } ?? false
            guard tooOld || tooBig else { break }
            unlink(oldest.path)
            removed.insert(oldest.number)
            segments.removeFirst()
        }
        guard !removed.isEmpty else { return }
        for (id, locations) in index {
            let kept = locations.filter { !removed.contains($0.segment) }
            index[id] = kept.isEmpty ? nil : kept
        }
    }

    // MARK: Reading

    /// Every stored piece of `traceID`, oldest first; empty when unknown.
    public func read(_ traceID: TraceID) throws(TraceStoreError) -> [StoredTrace] {
        lock.lock()
        let locations = index[traceID] ?? []
        let paths = Dictionary(uniqueKeysWithValues: segments.map { ($0.number, $0.path) })
        lock.unlock()
        var pieces: [StoredTrace] = []
        for location in Set(locations).sorted(by: { ($0.segment, $0.offset) < ($1.segment, $1.offset) }) {
            guard let path = paths[location.segment] else { continue }
            for record in try readBlock(path: path, offset: location.offset) where record.traceID == traceID {
                pieces.append(record)
            }
        }
        return pieces
    }

    /// The whole trace as one OTLP `ExportTraceServiceRequest` (duplicates removed); nil when unknown.
    public func trace(_ traceID: TraceID, policyAttribute: Bool = true) throws(TraceStoreError) -> [UInt8]? {
        let pieces = try read(traceID)
        guard !pieces.isEmpty else { return nil }
        do {
            return try TraceMerger.merge(pieces, policyAttribute: policyAttribute)
        } catch {
            throw TraceStoreError(message: "stored trace \(traceID.hex) does not decode: \(error)")
        }
    }

    private func readBlock(path: String, offset: Int64) throws(TraceStoreError) -> [StoredTrace] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TraceStoreError(message: "cannot open \(path)") }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        guard pread(fd, &header, Self.headerSize, off_t(offset)) == Self.headerSize, Array(header[0..<4]) == Self.magic else {
            throw TraceStoreError(message: "\(path): no block at offset \(offset)")
        }
        let count = Int(Self.u32(header, 4))
        let compressed = Int(Self.u32(header, 8))
        var block = [UInt8](repeating: 0, count: Self.headerSize + count * 16 + compressed + 4)
        guard pread(fd, &block, block.count, off_t(offset)) == block.count else {
            throw TraceStoreError(message: "\(path): block at offset \(offset) is truncated")
        }
        let body = block.count - 4
        let crc = block.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
        guard crc == Self.u32(block, body) else { throw TraceStoreError(message: "\(path): block at offset \(offset) fails its checksum") }
        let frameStart = Self.headerSize + count * 16
        let payload: [UInt8]
        do {
            payload = try block.withUnsafeBytes { (raw) throws(ZstdError) -> [UInt8] in
                try readCodec.decompress(UnsafeRawBufferPointer(rebasing: raw[frameStart..<body]))
            }
        } catch {
            throw TraceStoreError(message: "\(path): block at offset \(offset): \(error)")
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

    /// Trace ids stored (for tests and tooling).
    public var traceCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return index.count
    }

    /// Segment files, oldest first.
    public var segmentPaths: [String] {
        lock.lock()
        defer { lock.unlock() }
        return segments.map(\.path)
    }
}

