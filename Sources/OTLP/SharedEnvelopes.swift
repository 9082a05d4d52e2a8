/// The resource and scope a group of spans came under, held once for every buffered trace that came
/// under the same bytes: each service instance sends the same resource (its ten or so attributes,
/// about 400 bytes) and scope with every trace, a third of a keyed topic's bytes, which every trace
/// copied into its own payload until a window shared them.
public final class SharedEnvelope: Sendable {
    /// The resource, its schema URL, the scope and the scope's schema URL, one after another.
    public let bytes: [UInt8]
    public let resource: ByteRange
    public let resourceSchemaURL: ByteRange
    public let scope: ByteRange
    public let scopeSchemaURL: ByteRange
    let hash: UInt64

    init(bytes: [UInt8], resource: Int, resourceSchemaURL: Int, scope: Int, scopeSchemaURL: Int, hash: UInt64) {
        self.bytes = bytes
        self.resource = ByteRange(offset: 0, count: resource)
        self.resourceSchemaURL = ByteRange(offset: resource, count: resourceSchemaURL)
        self.scope = ByteRange(offset: resource + resourceSchemaURL, count: scope)
        self.scopeSchemaURL = ByteRange(offset: resource + resourceSchemaURL + scope, count: scopeSchemaURL)
        self.hash = hash
    }

    /// What it keeps resident (for a window's byte account).
    public var residentBytes: Int { bytes.capacity + 96 }

    /// Calls `body` with the bytes of `range` (one of this envelope's four).
    public func withBytes<R>(_ range: ByteRange, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range.lowerBound..<range.upperBound])) }
    }
}

/// A window's shared envelopes, found by their bytes (open addressing over a hash of them; equal
/// bytes checked). One thread uses it: the shard that owns the window. An envelope no buffered
/// trace holds any more is forgotten at the next sweep, which runs when the table has doubled since
/// the last one, so it holds at most about twice the envelopes in use.
public struct SharedEnvelopes: Sendable {
    /// Empty until the first envelope (an empty table allocates nothing).
    private var slots: [SharedEnvelope?] = []
    public private(set) var count = 0
    /// Bytes the table's envelopes keep resident.
    public private(set) var residentBytes = 0
    private var sweepAt = 0
    /// Envelopes found lately, by batch and by the index of the batch's first resource with the
    /// same bytes (see ``ResourceRecord/canonical``), direct-mapped: in a poll of many messages from
    /// few services, each resource is looked up by its bytes once, and its repeats only compare
    /// their scopes.
    private var recent: [(batch: UInt64, canonical: UInt32, envelope: SharedEnvelope?)] = []
    private static let recentSlots = 64

    public init() {}

    /// The shared envelope of `scope` of `batch` (generation `batchGeneration`), added when new;
    /// `grown` is how many bytes the table's account grew (a sweep may shrink it: negative).
    public mutating func envelope(
        of scopeIndex: UInt32, in batch: SpanBatch, batchGeneration: UInt64
    ) -> (envelope: SharedEnvelope, grown: Int) {
        if recent.isEmpty { recent = Array(repeating: (.max, 0, nil), count: Self.recentSlots) }
        let scope = batch.scopes[Int(scopeIndex)]
        let resource = batch.resources[Int(scope.resourceIndex)]
        let parts = Parts(resource.encoded, resource.schemaURL, scope.encoded, scope.schemaURL)
        let memo = Int(resource.canonical) & (Self.recentSlots - 1)
        if recent[memo].batch == batchGeneration, recent[memo].canonical == resource.canonical, let known = recent[memo].envelope,
            batch.bytes.withUnsafeBytes({ Self.equal(known, parts, $0, from: 1) })
        {
            return (known, 0)
        }
        let before = residentBytes
        let found = batch.bytes.withUnsafeBytes { all -> SharedEnvelope in
            var hash: UInt64 = 0x9E37_79B9_7F4A_7C15
            for index in 0..<4 {
                let part = parts[index]
                hash = Self.hash(UnsafeRawBufferPointer(rebasing: all[part.lowerBound..<part.upperBound]), continuing: hash ^ UInt64(part.count))
            }
            return find(hash: hash, parts: parts, in: all) ?? insert(hash: hash, parts: parts, from: all)
        }
        recent[memo] = (batchGeneration, resource.canonical, found)
        return (found, residentBytes - before)
    }

    /// An envelope's four ranges (a struct, not an array: no allocation per lookup).
    struct Parts {
        var resource, resourceSchemaURL, scope, scopeSchemaURL: ByteRange

        init(_ resource: ByteRange, _ resourceSchemaURL: ByteRange, _ scope: ByteRange, _ scopeSchemaURL: ByteRange) {
            self.resource = resource
            self.resourceSchemaURL = resourceSchemaURL
            self.scope = scope
            self.scopeSchemaURL = scopeSchemaURL
        }

        subscript(index: Int) -> ByteRange {
            switch index {
            case 0: resource
            case 1: resourceSchemaURL
            case 2: scope
            default: scopeSchemaURL
            }
        }

        var totalCount: Int { Int(resource.count) + Int(resourceSchemaURL.count) + Int(scope.count) + Int(scopeSchemaURL.count) }
    }

    private func find(hash: UInt64, parts: Parts, in all: UnsafeRawBufferPointer) -> SharedEnvelope? {
        guard !slots.isEmpty else { return nil }
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while let candidate = slots[slot] {
            if candidate.hash == hash, Self.equal(candidate, parts, all) { return candidate }
            slot = (slot + 1) & mask
        }
        return nil
    }

    /// Whether `candidate` holds the bytes of `parts`, from the part `first` on (1: its scope and
    /// schema URLs only, when the resource is known to be the same).
    private static func equal(_ candidate: SharedEnvelope, _ parts: Parts, _ all: UnsafeRawBufferPointer, from first: Int = 0) -> Bool {
        let mine = Parts(candidate.resource, candidate.resourceSchemaURL, candidate.scope, candidate.scopeSchemaURL)
        return candidate.bytes.withUnsafeBytes { held in
            for index in first..<4 {
                let have = mine[index], want = parts[index]
                guard have.count == want.count else { return false }
                if want.count > 0, !memcmpEqual(held.baseAddress! + have.lowerBound, all.baseAddress! + want.lowerBound, Int(want.count)) {
                    return false
                }
            }
            return true
        }
    }

    private mutating func insert(hash: UInt64, parts: Parts, from all: UnsafeRawBufferPointer) -> SharedEnvelope {
        if count + 1 >= sweepAt { sweep() }
        let bytes = [UInt8](unsafeUninitializedCapacity: parts.totalCount) { buffer, initialized in
            for index in 0..<4 {
                let part = parts[index]
                guard part.count > 0 else { continue }
                UnsafeMutableRawPointer(buffer.baseAddress! + initialized).copyMemory(from: all.baseAddress! + part.lowerBound, byteCount: Int(part.count))
                initialized += Int(part.count)
            }
        }
        let envelope = SharedEnvelope(
            bytes: bytes, resource: Int(parts.resource.count), resourceSchemaURL: Int(parts.resourceSchemaURL.count),
            scope: Int(parts.scope.count), scopeSchemaURL: Int(parts.scopeSchemaURL.count), hash: hash)
        place(envelope)
        count += 1
        residentBytes += envelope.residentBytes
        return envelope
    }

    private mutating func place(_ envelope: SharedEnvelope) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: envelope.hash) & mask
        while slots[slot] != nil { slot = (slot + 1) & mask }
        slots[slot] = envelope
    }

    /// Forgets the envelopes no trace holds (only this table refers to them), and makes room: the
    /// table stays at most half full.
    public mutating func sweep() {
        // The memo's references count: dropped first, so that what only it holds is forgotten too.
        for index in recent.indices { recent[index] = (.max, 0, nil) }
        var kept: [SharedEnvelope] = []
        kept.reserveCapacity(count)
        for index in slots.indices where slots[index] != nil {
            if isKnownUniquelyReferenced(&slots[index]) {
                residentBytes -= slots[index]!.residentBytes
            } else {
                kept.append(slots[index]!)
            }
            slots[index] = nil
        }
        count = kept.count
        var size = 64
        while size < 4 * max(count, 16) { size *= 2 }
        if size != slots.count { slots = Array(repeating: nil, count: size) }
        for envelope in kept { place(envelope) }
        sweepAt = size / 2
    }

    /// 64 bits of `bytes`, sixteen at a time in two lanes (the table's own hash; never stored).
    static func hash(_ bytes: UnsafeRawBufferPointer, continuing seed: UInt64) -> UInt64 {
        guard let base = bytes.baseAddress else { return seed &* 0xC4CE_B9FE_1A85_EC53 }
        var hash = seed
        var other = seed ^ 0x9E37_79B9_7F4A_7C15
        var offset = 0
        let count = bytes.count
        while offset &+ 16 <= count {
            hash = (hash ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            other = (other ^ base.loadUnaligned(fromByteOffset: offset &+ 8, as: UInt64.self)) &* 0xC4CE_B9FE_1A85_EC53
            hash = (hash ^ (hash >> 29)) ^ (other >> 31)
            offset &+= 16
        }
        hash ^= other
        while offset &+ 8 <= count {
            hash = (hash ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            hash ^= hash >> 29
            offset &+= 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while offset < count {
            tail |= UInt64(base.load(fromByteOffset: offset, as: UInt8.self)) << shift
            shift &+= 8
            offset &+= 1
        }
        hash = (hash ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        return hash ^ (hash >> 32)
    }
}
