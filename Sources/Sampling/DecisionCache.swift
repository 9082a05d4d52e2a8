public import OTLP

/// Remembers decisions after a trace leaves the window, so late spans follow them: kept trace ids
/// exactly; dropped ones as 32-bit fingerprints (a few bytes per trace; a false match, about one in
/// four billion per lookup and cached id, drops a late span that had no decision).
///
/// Each side holds two generations: when the young one is full the old one is forgotten — FIFO
/// eviction at the granularity of half the capacity, without per-entry bookkeeping.
public struct DecisionCache: Sendable {
    private var keptYoung = Set<TraceID>()
    private var keptOld = Set<TraceID>()
    private var droppedYoung = Set<UInt32>()
    private var droppedOld = Set<UInt32>()
    public let keptCapacity: Int
    public let droppedCapacity: Int

    /// Capacities in trace ids (the collector's `sampled_cache_size` / `non_sampled_cache_size`).
    public init(keptCapacity: Int, droppedCapacity: Int) {
        self.keptCapacity = keptCapacity
        self.droppedCapacity = droppedCapacity
    }

    public enum Remembered: Sendable, Equatable { case kept, dropped }

    public mutating func remember(_ traceID: TraceID, kept: Bool) {
        if kept {
            guard keptCapacity > 0 else { return }
            keptYoung.insert(traceID)
            if keptYoung.count >= max(1, keptCapacity / 2) {
                keptOld = keptYoung
                keptYoung = Set(minimumCapacity: keptCapacity / 2)
            }
        } else {
            guard droppedCapacity > 0 else { return }
            droppedYoung.insert(Self.fingerprint(traceID))
            if droppedYoung.count >= max(1, droppedCapacity / 2) {
                droppedOld = droppedYoung
                droppedYoung = Set(minimumCapacity: droppedCapacity / 2)
            }
        }
    }

    public func lookup(_ traceID: TraceID) -> Remembered? {
        if keptYoung.contains(traceID) || keptOld.contains(traceID) { return .kept }
        let print = Self.fingerprint(traceID)
        if droppedYoung.contains(print) || droppedOld.contains(print) { return .dropped }
        return nil
    }

    /// Ids remembered now (for gauges).
    public var count: (kept: Int, dropped: Int) {
        (keptYoung.count + keptOld.count, droppedYoung.count + droppedOld.count)
    }

    static func fingerprint(_ id: TraceID) -> UInt32 {
        let mixed = TraceRouting.mix(id)
        return UInt32(truncatingIfNeeded: mixed >> 32) ^ UInt32(truncatingIfNeeded: mixed)
    }
}

/// Where a trace id goes: a well-mixed hash, since real trace ids are not always random (some SDKs
/// and proxies put timestamps or constants in the high bytes), so no raw modulo of the id.
public enum TraceRouting {
    @inlinable
    public static func mix(_ id: TraceID) -> UInt64 {
        // SplitMix64's finaliser over both halves.
        var z = id.high ^ (id.low &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The shard (0..<count) that owns `id`.
    @inlinable
    public static func shard(of id: TraceID, count: Int) -> Int {
        // Lemire's multiply-shift range reduction over the mixed hash.
        Int((UInt128(mix(id)) * UInt128(count)) >> 64)
    }
}
