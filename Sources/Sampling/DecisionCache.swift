public import OTLP

/// Remembers decisions after a trace leaves the window, so late spans follow them: kept trace ids
/// exactly; dropped ones as 64-bit fingerprints in an open-addressing table (8 bytes per trace).
///
/// Every new trace is looked up (its first span might be a late one), so a false match would drop a
/// whole new trace — an error trace included. With 64-bit fingerprints that takes about
/// cached ÷ 2^64 per new trace: 5 × 10^-14 with a million dropped ids cached. (32-bit fingerprints
/// made it cached ÷ 2^32, one new trace in 4 300 at a million: measurably many.)
///
/// Each side holds two generations: when the young one is full the old one is forgotten — FIFO
/// eviction at the granularity of half the capacity, without per-entry bookkeeping.
public struct DecisionCache: Sendable {
    /// Kept ids with the policy that kept them and the threshold and rate it kept them at: late spans
    /// carry the same to the sinks.
    private var keptYoung: [TraceID: Kept] = [:]
    private var keptOld: [TraceID: Kept] = [:]

    struct Kept: Sendable {
        var policy: String
        var annotation: KeptAnnotation
    }
    private var droppedYoung = FingerprintSet()
    private var droppedOld = FingerprintSet()
    public private(set) var keptCapacity: Int
    public private(set) var droppedCapacity: Int

    /// Capacities in trace ids (the collector's `sampled_cache_size` / `non_sampled_cache_size`).
    public init(keptCapacity: Int, droppedCapacity: Int) {
        self.keptCapacity = keptCapacity
        self.droppedCapacity = droppedCapacity
    }

    /// New capacities (a rule reload changed `decision_cache`), keeping what is remembered where it
    /// fits: growing keeps everything; shrinking forgets the old generation, and a young generation
    /// over the new half-capacity becomes the old one (forgotten at the next turn), so the cache is
    /// back within 1.5 × the new capacity at once and within it after one turn.
    public mutating func resize(keptCapacity newKept: Int, droppedCapacity newDropped: Int) {
        if newKept < keptCapacity {
            keptOld = [:]
            if newKept == 0 {
                keptYoung = [:]
            } else if keptYoung.count >= max(1, newKept / 2) {
                keptOld = keptYoung
                keptYoung = [:]
            }
        }
        if newDropped < droppedCapacity {
            droppedOld.removeAll()
            if newDropped == 0 {
                droppedYoung.removeAll()
            } else if droppedYoung.count >= max(1, newDropped / 2) {
                swap(&droppedOld, &droppedYoung)
                droppedYoung.removeAll()
            }
        }
        keptCapacity = newKept
        droppedCapacity = newDropped
    }

    public enum Remembered: Sendable, Equatable {
        /// Kept, by this policy, with this threshold and rate (what its spans left with).
        case kept(String, annotation: KeptAnnotation = KeptAnnotation())
        case dropped
    }

    public mutating func remember(_ traceID: TraceID, kept: Bool, policy: String = "", annotation: KeptAnnotation = KeptAnnotation()) {
        if kept {
            guard keptCapacity > 0 else { return }
            keptYoung[traceID] = Kept(policy: policy, annotation: annotation)
            if keptYoung.count >= max(1, keptCapacity / 2) {
                keptOld = keptYoung
                keptYoung = Dictionary(minimumCapacity: keptCapacity / 2)
            }
        } else {
            guard droppedCapacity > 0 else { return }
            let generation = max(1, droppedCapacity / 2)
            droppedYoung.insert(Self.fingerprint(traceID), capacity: generation)
            if droppedYoung.count >= generation {
                // The old generation's table becomes the new young one: no allocation per turn.
                swap(&droppedOld, &droppedYoung)
                droppedYoung.removeAll()
            }
        }
    }

    public func lookup(_ traceID: TraceID) -> Remembered? {
        if !keptYoung.isEmpty || !keptOld.isEmpty {
            if let kept = keptYoung[traceID] ?? keptOld[traceID] { return .kept(kept.policy, annotation: kept.annotation) }
        }
        let print = Self.fingerprint(traceID)
        if droppedYoung.contains(print) || droppedOld.contains(print) { return .dropped }
        return nil
    }

    /// Ids remembered now (for gauges).
    public var count: (kept: Int, dropped: Int) {
        (keptYoung.count + keptOld.count, droppedYoung.count + droppedOld.count)
    }

    /// The routing hash: 64 well-mixed bits of the 128-bit id (never 0, the table's empty mark).
    static func fingerprint(_ id: TraceID) -> UInt64 {
        let mixed = TraceRouting.mix(id)
        return mixed == 0 ? 1 : mixed
    }
}

/// A set of non-zero 64-bit values by open addressing (linear probing, load ≤ 1/2); the values are
/// already well mixed, so their low bits index the table directly.
struct FingerprintSet: Sendable {
    private var slots: [UInt64] = []
    private(set) var count = 0

    func contains(_ value: UInt64) -> Bool {
        guard !slots.isEmpty else { return false }
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: value) & mask
        while true {
            let present = slots[slot]
            if present == value { return true }
            if present == 0 { return false }
            slot = (slot + 1) & mask
        }
    }

    /// Inserts `value`; the table is sized for `capacity` values, and grows (rehashing what it holds)
    /// when a reload raised the capacity past what it was sized for, or before it would fill past half.
    mutating func insert(_ value: UInt64, capacity: Int) {
        if slots.count < 2 * max(capacity, count + 1) { grow(toHold: max(capacity, count + 1)) }
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: value) & mask
        while slots[slot] != 0 {
            if slots[slot] == value { return }
            slot = (slot + 1) & mask
        }
        slots[slot] = value
        count += 1
    }

    private mutating func grow(toHold capacity: Int) {
        var size = max(16, slots.count)
        while size < capacity * 2 { size *= 2 }
        let old = slots
        slots = Array(repeating: 0, count: size)
        let mask = size - 1
        for value in old where value != 0 {
            var slot = Int(truncatingIfNeeded: value) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = value
        }
    }

    mutating func removeAll() {
        guard count > 0 else { return }
        for index in slots.indices { slots[index] = 0 }
        count = 0
    }
}

/// Where a trace id goes: a well-mixed hash, since real trace ids are not always random (some SDKs
/// and proxies put timestamps or constants in the high bytes), so no raw modulo of the id.
public enum TraceRouting {
    @inlinable
    public static func mix(_ id: TraceID) -> UInt64 { id.mixed }

    /// The shard (0..<count) that owns `id`.
    @inlinable
    public static func shard(of id: TraceID, count: Int) -> Int {
        // Lemire's multiply-shift range reduction over the mixed hash.
        Int((UInt128(mix(id)) * UInt128(count)) >> 64)
    }
}
