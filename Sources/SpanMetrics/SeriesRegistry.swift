import Synchronization
import OTLP

/// The metric families whose series are counted against the cardinality limit.
public enum SeriesFamily: Int, Sendable, CaseIterable {
    case spanMetrics = 0
    case serviceGraph = 1
    case brokenPropagation = 2

    /// The `metric` label of `tailgate_metrics_series*`.
    public var metricName: String {
        switch self {
        case .spanMetrics: "traces_spanmetrics"
        case .serviceGraph: "traces_service_graph"
        case .brokenPropagation: "tailgate_broken_propagation"
        }
    }
}

/// The series every shard shares: label values → a global series index, assigned once, so shards
/// aggregate into arrays with the same layout and exposition sums them. Shards consult it only the
/// first time they meet a label combination (their own ``ByteKeyTable`` caches the answer), so its
/// lock is off the per-span path.
///
/// It enforces the cardinality limit exactly, across shards: series beyond `maxSeriesPerMetric`
/// fold into one whose labels all read `__overflow__`. Span-name rewrites run here, once per new name.
public final class SeriesRegistry: Sendable {
    public static let overflowValue = "__overflow__"

    struct Family {
        var names: [String] = []
        var labels: [[String]] = []
        /// Each series' labels rendered for the exposition, once, when the series is created.
        var rendered: [RenderedLabels] = []
        var index: [[String]: Int32] = [:]
        var overflow: Int32 = -1
    }

    struct State {
        var families = Array(repeating: Family(), count: SeriesFamily.allCases.count)
        var rewrites: [(regex: Regex<AnyRegexOutput>, replacement: String)]
    }

    public let maxSeriesPerMetric: Int
    private let state: Mutex<State>

    public init(configuration: SpanMetricsConfiguration) {
        maxSeriesPerMetric = configuration.maxSeriesPerMetric
        // Patterns were validated with the configuration; one that does not compile is skipped.
        let rewrites = configuration.spanNameRewrites.compactMap { rewrite -> (Regex<AnyRegexOutput>, String)? in
            (try? Regex(rewrite.pattern)).map { ($0, rewrite.replacement) }
        }
        var state = State(rewrites: rewrites)
        state.families[SeriesFamily.spanMetrics.rawValue].names =
            SpanMetricsConfiguration.intrinsicLabels + configuration.dimensions.map(SpanMetricsConfiguration.labelName(forAttribute:))
        state.families[SeriesFamily.serviceGraph.rawValue].names = ["client", "server", "connection_type"]
        state.families[SeriesFamily.brokenPropagation.rawValue].names = ["client", "server"]
        self.state = Mutex(state)
    }

    /// The global index for `labels` (the overflow series' once the family is full), and whether it
    /// is the overflow series. `rewriteIndex` names the label to put through the span-name rewrites.
    func resolve(_ family: SeriesFamily, labels: [String], rewriteIndex: Int? = nil) -> (index: Int32, overflow: Bool) {
        state.withLock { state in
            var labels = labels
            if let rewriteIndex {
                for rewrite in state.rewrites { labels[rewriteIndex] = labels[rewriteIndex].replacing(rewrite.regex, with: rewrite.replacement) }
            }
            if let index = state.families[family.rawValue].index[labels] { return (index, false) }
            if state.families[family.rawValue].index.count < maxSeriesPerMetric {
                let index = Int32(state.families[family.rawValue].labels.count)
                state.families[family.rawValue].labels.append(labels)
                state.families[family.rawValue].rendered.append(RenderedLabels(names: state.families[family.rawValue].names, values: labels))
                state.families[family.rawValue].index[labels] = index
                return (index, false)
            }
            if state.families[family.rawValue].overflow < 0 {
                state.families[family.rawValue].overflow = Int32(state.families[family.rawValue].labels.count)
                let overflow = Array(repeating: Self.overflowValue, count: labels.count)
                state.families[family.rawValue].labels.append(overflow)
                state.families[family.rawValue].rendered.append(RenderedLabels(names: state.families[family.rawValue].names, values: overflow))
            }
            return (state.families[family.rawValue].overflow, true)
        }
    }

    /// Label values of every series of `family`, by global index.
    public func labels(of family: SeriesFamily) -> [[String]] {
        state.withLock { $0.families[family.rawValue].labels }
    }

    /// Each series' rendered labels, by global index.
    public func renderedLabels(of family: SeriesFamily) -> [RenderedLabels] {
        state.withLock { $0.families[family.rawValue].rendered }
    }

    /// Series of `family` so far (the overflow series included once it exists).
    public func seriesCount(_ family: SeriesFamily) -> Int {
        state.withLock { $0.families[family.rawValue].labels.count }
    }
}

/// An open-addressing hash table from byte strings to `Int32`, with the keys in one arena: lookups
/// of keys already present allocate nothing.
struct ByteKeyTable {
    private var slots: [Int32] = Array(repeating: -1, count: 64)
    private var hashes: [UInt64] = []
    private var offsets: [Int32] = []
    private var lengths: [Int32] = []
    private var values: [Int32] = []
    private var arena: [UInt8] = []

    var count: Int { hashes.count }

    func find(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int32? {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = Int(slots[slot])
            if entry < 0 { return nil }
            if hashes[entry] == hash && Int(lengths[entry]) == key.count {
                let equal = arena.withUnsafeBytes { all in
                    bytesEqual(all.baseAddress! + Int(offsets[entry]), key.baseAddress, key.count)
                }
                if equal { return values[entry] }
            }
            slot = (slot + 1) & mask
        }
    }

    mutating func insert(_ key: UnsafeRawBufferPointer, hash: UInt64, value: Int32) {
        if (hashes.count + 1) * 2 > slots.count { grow() }
        let entry = Int32(hashes.count)
        hashes.append(hash)
        offsets.append(Int32(arena.count))
        lengths.append(Int32(key.count))
        values.append(value)
        arena.append(contentsOf: key)
        place(entry: entry, hash: hash)
    }

    /// The bytes of entry `entry` (entries are numbered in insertion order).
    func key(at entry: Int32) -> [UInt8] {
        let offset = Int(offsets[Int(entry)])
        return Array(arena[offset..<(offset + Int(lengths[Int(entry)]))])
    }

    /// Forgets every key (keeping capacity).
    mutating func removeAll() {
        for index in slots.indices { slots[index] = -1 }
        hashes.removeAll(keepingCapacity: true)
        offsets.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: true)
    }

    private mutating func place(entry: Int32, hash: UInt64) {
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = entry
    }

    private mutating func grow() {
        slots = Array(repeating: -1, count: slots.count * 2)
        for entry in hashes.indices { place(entry: Int32(entry), hash: hashes[entry]) }
    }
}

/// A fast, well-mixed 64-bit hash of bytes (8 at a time, a short tail in one or two overlapping
/// loads); not for adversarial keys — collisions only cost a comparison, since every hit is checked
/// byte for byte.
@inline(__always)
func hashBytes(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    let count = bytes.count
    var hash: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
    if let base = bytes.baseAddress, count > 0 {
        var tail: UInt64
        if count >= 8 {
            var index = 0
            while index &+ 8 <= count {
                hash = (hash ^ base.loadUnaligned(fromByteOffset: index, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
                hash ^= hash >> 32
                index &+= 8
            }
            // The last word again, overlapping what was read (or nothing, at a multiple of 8).
            tail = index == count ? 0 : base.loadUnaligned(fromByteOffset: count &- 8, as: UInt64.self)
        } else if count >= 4 {
            tail = UInt64(base.loadUnaligned(as: UInt32.self))
                | UInt64(base.loadUnaligned(fromByteOffset: count &- 4, as: UInt32.self)) << 32
        } else {
            tail = UInt64(base.load(as: UInt8.self)) | UInt64(base.load(fromByteOffset: count >> 1, as: UInt8.self)) << 8
                | UInt64(base.load(fromByteOffset: count &- 1, as: UInt8.self)) << 16
        }
        hash = (hash ^ tail) &* 0xC4CE_B9FE_1A85_EC53
    }
    hash ^= hash >> 29
    return hash
}

/// Whether `count` bytes at `a` and `b` are equal (OTLP's comparison; `b` nil only for no bytes).
@inline(__always)
func bytesEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer?, _ count: Int) -> Bool {
    guard let b else { return count == 0 }
    return memcmpEqual(a, b, count)
}
