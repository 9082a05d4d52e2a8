public import OTLP

/// Where a span came from: its lane (one assignment of one Kafka partition, numbered by the ingest
/// front) and offset; the window only keeps these to tell which offsets are no longer needed.
public struct SourcePosition: Sendable, Hashable {
    public var lane: UInt32
    public var offset: Int64
    public init(lane: UInt32, offset: Int64) {
        self.lane = lane
        self.offset = offset
    }
}

/// Why a trace left the window.
public enum DecisionReason: String, Sendable, CaseIterable {
    /// `decision_wait` after its first span.
    case decisionWait = "decision_wait"
    /// `decision_wait_after_root_received` after its root span.
    case rootReceived = "root_received"
    /// It reached `max_spans_per_trace`.
    case maxSpans = "max_spans"
    /// Decided early to bring memory back under the limit.
    case memoryPressure = "memory_pressure"
    /// The engine is stopping or the partition was revoked.
    case flush
}

/// A trace ready to be decided.
public struct ReadyTrace: Sendable {
    public var trace: TraceData
    public var reason: DecisionReason
    /// When its first span arrived (window clock, nanoseconds).
    public var firstSeen: UInt64
    /// The positions its trace holds (one per partition it has spans from, the lowest offset there):
    /// what must stay uncommitted until a kept trace is stored. The first inline; others only for
    /// traces spread over partitions, so a decision allocates nothing for keyed topics.
    public var firstSource: SourcePosition
    public var otherSources: [SourcePosition]?

    /// All of them (allocates: ask only for kept traces).
    public var sources: [SourcePosition] { [firstSource] + (otherSources ?? []) }
}

/// What happened to a span offered to the window.
public enum SpanDisposition: Sendable, Equatable {
    /// Added to its trace, whose holds already cover its offset.
    case buffered
    /// Added to its trace, which now holds the span's position (a new trace, or the trace's first span
    /// from that partition): the caller records the hold with the delivery ledger.
    case holding
    /// Its trace was decided before: follow that decision.
    case late(DecisionCache.Remembered)
}

/// What a run of spans of one trace (consecutive in one poll, usually one message) adds to it.
public struct TraceRun: Sendable, Equatable {
    public var spans = 0
    public var attributes = 0
    public var payloadBytes = 0
    /// Resource and scope pairs it brings (each a new envelope of the trace).
    public var envelopes = 0

    public init() {}

    /// Measures the run of spans of `batch` at `indices` that starts at `start` (the spans after it
    /// with the same trace id); returns it with the index just past it.
    public static func measure(_ indices: [Int32], from start: Int, in batch: SpanBatch) -> (run: TraceRun, end: Int) {
        indices.withUnsafeBufferPointer { indices in measure(count: indices.count, from: start, in: batch) { Int(indices[$0]) } }
    }

    /// ``measure(_:from:in:)`` over spans `start...` of the batch itself.
    public static func measure(_ indices: Range<Int>, from start: Int, in batch: SpanBatch) -> (run: TraceRun, end: Int) {
        measure(count: indices.upperBound, from: start, in: batch) { $0 }
    }

    // Not generic over the index collection: unspecialised across modules, a generic version boxed
    // its indices and allocated once per span.
    @inline(__always)
    private static func measure(count: Int, from start: Int, in batch: SpanBatch, span index: (Int) -> Int) -> (run: TraceRun, end: Int) {
        var run = TraceRun()
        let traceID = batch.spans[index(start)].traceID
        var position = start
        var lastScope = UInt32.max
        while position < count {
            let span = batch.spans[index(position)]
            guard span.traceID == traceID else { break }
            let newEnvelope = span.scopeIndex != lastScope
            let cost = TraceData.appendCost(of: span, from: batch, newEnvelope: newEnvelope, sharingEnvelopes: true)
            lastScope = span.scopeIndex
            if newEnvelope { run.envelopes += 1 }
            run.spans += 1
            run.attributes += cost.attributes
            run.payloadBytes += cost.payloadBytes
            position += 1
        }
        return (run, position)
    }
}

/// Timing and size bounds of a window.
public struct WindowLimits: Sendable, Equatable {
    public var decisionWait: Duration
    public var decisionWaitAfterRoot: Duration
    public var maxSpansPerTrace: Int
    public var maxTraces: Int

    public init(decisionWait: Duration = .seconds(10), decisionWaitAfterRoot: Duration = .seconds(2), maxSpansPerTrace: Int = 0, maxTraces: Int = 1_000_000) {
        self.decisionWait = decisionWait
        self.decisionWaitAfterRoot = decisionWaitAfterRoot
        self.maxSpansPerTrace = maxSpansPerTrace
        self.maxTraces = maxTraces
    }

    public init(_ settings: SamplingSettings) {
        self.init(
            decisionWait: settings.decisionWait, decisionWaitAfterRoot: settings.decisionWaitAfterRootReceived,
            maxSpansPerTrace: settings.maxSpansPerTrace, maxTraces: settings.numTraces)
    }
}

/// One shard's buffered traces: trace id → spans so far, with a deadline per trace kept in a timing
/// wheel (10 ms ticks), so expiry costs O(1) amortised per trace, never a scan. Single-threaded and
/// clock-free: the caller passes `now` (monotonic nanoseconds) — tests drive it by hand.
public struct TraceWindow: Sendable {
    struct Entry {
        var trace: TraceData
        var firstSeen: UInt64
        var deadline: UInt64
        var rootSeen: Bool
        var generation: UInt32
        var residentBytes: Int
        /// The positions this trace holds in the delivery ledger (first one inline; more only for
        /// traces spread over partitions, which keyed topics never do).
        var firstSource: SourcePosition
        var otherSources: [SourcePosition]?

        /// Records that the trace has a span from `source`; true when that needs a new hold (the
        /// trace's first span from that partition, or — rare — one older than any it holds there).
        /// Every position recorded is held exactly once, and released or delivered with the trace.
        mutating func note(_ source: SourcePosition) -> Bool {
            if source.lane == firstSource.lane && source.offset >= firstSource.offset { return false }
            if let otherSources, otherSources.contains(where: { $0.lane == source.lane && $0.offset <= source.offset }) {
                return false
            }
            otherSources = (otherSources ?? []) + [source]
            return true
        }
    }

    public var limits: WindowLimits {
        didSet { waits = Waits(limits) }
    }
    /// The limits' waits in nanoseconds, converted once (a `Duration` divides 128-bit attoseconds
    /// each time it is read as seconds and attoseconds: hundreds of instructions, three times a trace).
    private struct Waits {
        var decision: UInt64
        var afterRoot: UInt64
        init(_ limits: WindowLimits) {
            decision = nanoseconds(limits.decisionWait)
            afterRoot = nanoseconds(limits.decisionWaitAfterRoot)
        }
    }
    private var waits: Waits
    public private(set) var cache: DecisionCache

    /// Applies new decision-cache capacities (a reload changed `decision_cache`).
    public mutating func resizeCache(keptCapacity: Int, droppedCapacity: Int) {
        guard keptCapacity != cache.keptCapacity || droppedCapacity != cache.droppedCapacity else { return }
        cache.resize(keptCapacity: keptCapacity, droppedCapacity: droppedCapacity)
    }
    private var slots: [Entry?] = []
    private var freeSlots: [Int32] = []
    private var index = TraceIDTable()
    private var generations: [UInt32] = []
    private var wheel: DeadlineWheel
    private var due: [DeadlineWheel.Item] = []
    private var pool: [TraceData] = []
    /// The resources and scopes of the buffered traces, each held once (see ``SharedEnvelope``).
    private var sharedEnvelopes = SharedEnvelopes()
    /// The buffered traces' own bytes (what releasing them frees).
    public private(set) var bufferedBytes = 0
    /// Everything the window keeps resident: the traces, and the envelopes they share (an envelope
    /// no trace holds any more counts until the table's next sweep).
    public var residentBytes: Int { bufferedBytes + sharedEnvelopes.residentBytes }
    public private(set) var bufferedSpans = 0

    public init(limits: WindowLimits, cache: DecisionCache) {
        self.limits = limits
        waits = Waits(limits)
        self.cache = cache
        wheel = DeadlineWheel()
    }

    public var traceCount: Int { index.count }

    /// Offers one span. New traces get their deadline; a root span may bring it forward; a trace at
    /// `max_spans_per_trace` is returned at once in `ready`.
    /// - Parameter expected: what this span and the ones after it of the same trace (a run of one
    ///   message) will add (see ``TraceData/appendCost(of:from:newEnvelope:)``): a new trace is sized
    ///   for them exactly, once. Absent, buffers grow as they fill.
    /// - Parameter series: the span's span-metrics series, when its owner found it on arrival (kept
    ///   with the span, see ``BufferedSpan/series``).
    public mutating func insert(
        _ span: SpanRecord, from batch: SpanBatch, batchGeneration: UInt64, source: SourcePosition, now: UInt64,
        ready: inout [ReadyTrace], expected: TraceRun? = nil, series: Int32 = -1
    ) -> SpanDisposition {
        let slot: Int32
        var disposition = SpanDisposition.buffered
        if let existing = index[span.traceID] {
            slot = existing
        } else {
            if let remembered = cache.lookup(span.traceID) { return .late(remembered) }
            slot = allocate(reusedTrace(span.traceID), source: source, now: now)
            index[span.traceID] = slot
            wheel.schedule(slot: slot, generation: generations[Int(slot)], at: slots[Int(slot)]!.deadline, now: now)
            disposition = .holding
        }
        let i = Int(slot)
        let rootWait = waits.afterRoot
        let maxSpans = limits.maxSpansPerTrace
        // The entry is changed where it lies: reading its fields through `slots[i]!` one by one
        // retained and released every array in it, and moving it out and back copied it twice, per
        // span.
        // Moved out for the append (an empty table allocates nothing): the trace is changed in place
        // below, and the table is another part of this window.
        var shared = SharedEnvelopes()
        swap(&shared, &sharedEnvelopes)
        defer { swap(&shared, &sharedEnvelopes) }
        let (grown, rescheduled, full) = withUnsafeMutablePointer(to: &slots[i]!) { entry -> (Int, UInt64?, Bool) in
            let before = entry.pointee.residentBytes
            if disposition == .holding, let expected {
                entry.pointee.trace.reserve(
                    spans: expected.spans, attributes: expected.attributes, payloadBytes: expected.payloadBytes, envelopes: expected.envelopes)
            }
            entry.pointee.trace.append(span, from: batch, batchGeneration: batchGeneration, sharing: &shared, series: series)
            let after = entry.pointee.trace.residentBytes
            entry.pointee.residentBytes = after
            if disposition == .buffered && entry.pointee.note(source) { disposition = .holding }
            var rescheduled: UInt64?
            if span.isRoot && !entry.pointee.rootSeen {
                entry.pointee.rootSeen = true
                let rootDeadline = now &+ rootWait
                if rootDeadline < entry.pointee.deadline {
                    entry.pointee.deadline = rootDeadline
                    rescheduled = rootDeadline
                }
            }
            return (after - before, rescheduled, maxSpans > 0 && entry.pointee.trace.spans.count >= maxSpans)
        }
        bufferedBytes += grown
        bufferedSpans += 1
        if let rescheduled { wheel.schedule(slot: slot, generation: generations[i], at: rescheduled, now: now) }
        if full { ready.append(release(slot, reason: .maxSpans)) }
        return disposition
    }

    /// Traces whose deadline is at or before `now`.
    public mutating func expire(now: UInt64, into ready: inout [ReadyTrace]) {
        // An empty window's shared envelopes are held only by traces released earlier and not yet
        // let go of (a kept one on its way to the sinks). A few are kept for the next traces (a
        // window that empties between bursts would otherwise make them again each time); more are
        // swept here, and a table that keeps growing sweeps itself as it doubles.
        if index.count == 0 && sharedEnvelopes.count > Self.envelopesKeptWhenEmpty {
            // Pooled traces are emptied when reused; here first, or they would hold envelopes (not
            // at recycling: the caller's copy of the ready trace still shares its buffers then, and
            // emptying made each of them again).
            for slot in pool.indices { pool[slot].reset(traceID: pool[slot].traceID) }
            sharedEnvelopes.sweep()
        }
        due.removeAll(keepingCapacity: true)
        wheel.advance(to: now, into: &due)
        for item in due {
            // Deadlines only move earlier, so a live entry of the same generation is due now.
            guard generations[Int(item.slot)] == item.generation, let (deadline, rootSeen, firstSeen) = timing(of: item.slot), deadline <= now
            else { continue }
            let reason: DecisionReason = rootSeen && deadline < firstSeen &+ waits.decision
                ? .rootReceived : .decisionWait
            ready.append(release(item.slot, reason: reason))
        }
    }

    /// Releases the heaviest traces (bytes × age) until `bufferedBytes` ≤ `target`: the answer to a
    /// single giant trace when pausing Kafka is not enough. Scans, but only under memory pressure.
    public mutating func releaseHeaviest(until target: Int, now: UInt64, into ready: inout [ReadyTrace]) {
        guard bufferedBytes > target else { return }
        var candidates: [(weight: Double, slot: Int32)] = []
        for (i, entry) in slots.enumerated() {
            guard let entry else { continue }
            candidates.append((Double(entry.residentBytes) * Double(max(1, now &- entry.firstSeen)), Int32(i)))
        }
        candidates.sort { $0.weight > $1.weight }
        for candidate in candidates where bufferedBytes > target {
            ready.append(release(candidate.slot, reason: .memoryPressure))
        }
    }

    /// Releases every trace (shutdown; or all spans of revoked partitions, see ``releaseAll(from:)``).
    public mutating func releaseAll(into ready: inout [ReadyTrace]) {
        // Sized once: at a drain the window may hold every trace of the last second, and doubling
        // would move them all again at each step.
        ready.reserveCapacity(ready.count + index.count)
        for i in slots.indices where slots[i] != nil { ready.append(release(Int32(i), reason: .flush)) }
    }

    /// Forgets (without deciding) every trace whose spans all came from `partitions` (revoked): their
    /// next owner replays them from the committed offset. A trace that also holds spans of partitions
    /// this member keeps stays, and is decided here as usual: forgetting it would let those partitions
    /// commit past spans nobody decided. (Its spans from the revoked partitions are then decided twice,
    /// here and by their next owner: at worst stored twice, never lost.) Returns how many were forgotten.
    @discardableResult
    public mutating func forget(lanes partitions: Set<UInt32>) -> Int {
        var forgotten = 0
        for i in slots.indices where onlyFrom(partitions, i) {
            recycle(release(Int32(i), reason: .flush).trace)
            forgotten += 1
        }
        return forgotten
    }

    /// Releases for a decision now every trace whose spans all came from `partitions` (revoked), so
    /// they are decided and stored before the partitions move and their offsets commit past them:
    /// the next owner replays nothing already decided. Traces that also hold partitions this member
    /// keeps stay, as with ``forget(lanes:)``. Returns how many were released.
    @discardableResult
    public mutating func release(lanes partitions: Set<UInt32>, into ready: inout [ReadyTrace]) -> Int {
        var released = 0
        for i in slots.indices where onlyFrom(partitions, i) {
            ready.append(release(Int32(i), reason: .flush))
            released += 1
        }
        return released
    }

    private func onlyFrom(_ partitions: Set<UInt32>, _ slot: Int) -> Bool {
        guard let entry = slots[slot], partitions.contains(entry.firstSource.lane) else { return false }
        return entry.otherSources?.allSatisfy({ partitions.contains($0.lane) }) ?? true
    }

    /// Gives a decided trace's buffers back for the next new trace (dropped traces: most of them),
    /// so that a steady stream allocates nothing per trace.
    /// The pool is bounded in bytes as well as in count, and keeps no outsized buffers: it is memory
    /// outside the buffer limit's account, so it stays small beside it.
    public mutating func recycle(_ trace: consuming TraceData) {
        let bytes = trace.residentBytes
        guard pool.count < Self.poolLimit, bytes <= Self.pooledTraceLimit, poolBytes + bytes <= Self.poolByteLimit else { return }
        poolBytes += bytes
        pool.append(trace)
    }

    /// Shared envelopes an empty window keeps for reuse (a few kilobytes; counted in `residentBytes`).
    static let envelopesKeptWhenEmpty = 64
    static let poolLimit = 256
    static let poolByteLimit = 2 << 20
    static let pooledTraceLimit = 32 << 10
    private var poolBytes = 0

    private mutating func reusedTrace(_ id: TraceID) -> TraceData {
        guard var trace = pool.popLast() else { return TraceData(traceID: id) }
        poolBytes -= trace.residentBytes
        trace.reset(traceID: id)
        return trace
    }

    /// Records a decision so late spans follow it.
    public mutating func remember(_ traceID: TraceID, kept: Bool, policy: String = "", annotation: KeptAnnotation = KeptAnnotation()) {
        cache.remember(traceID, kept: kept, policy: policy, annotation: annotation)
    }

    // MARK: Slots

    /// A live entry's deadline, whether its root came and when it began, read in place: binding the
    /// entry (or reading it through `slots[i]?`) copied it — a retain and release of each buffer.
    private func timing(of slot: Int32) -> (deadline: UInt64, rootSeen: Bool, firstSeen: UInt64)? {
        slots.withUnsafeBufferPointer { buffer in
            let entry = buffer.baseAddress! + Int(slot)
            guard let deadline = entry.pointee?.deadline else { return nil }
            return (deadline, entry.pointee?.rootSeen ?? false, entry.pointee?.firstSeen ?? 0)
        }
    }

    private mutating func allocate(_ trace: consuming TraceData, source: SourcePosition, now: UInt64) -> Int32 {
        let resident = trace.residentBytes
        let entry = Entry(
            trace: trace, firstSeen: now, deadline: now &+ waits.decision, rootSeen: false,
            generation: 0, residentBytes: resident, firstSource: source, otherSources: nil)
        bufferedBytes += entry.residentBytes
        if let slot = freeSlots.popLast() {
            generations[Int(slot)] &+= 1
            slots[Int(slot)] = entry
            return slot
        }
        slots.append(entry)
        generations.append(0)
        return Int32(slots.count - 1)
    }

    private mutating func release(_ slot: Int32, reason: DecisionReason) -> ReadyTrace {
        // Moved out, not copied (a copy retained and released every buffer of the trace).
        var entry = slots[Int(slot)].take()!
        generations[Int(slot)] &+= 1
        freeSlots.append(slot)
        index[entry.trace.traceID] = nil
        bufferedBytes -= entry.residentBytes
        bufferedSpans -= entry.trace.spans.count
        return ReadyTrace(
            trace: entry.trace.take(), reason: reason, firstSeen: entry.firstSeen, firstSource: entry.firstSource,
            otherSources: entry.otherSources)
    }
}

@inline(__always)
func nanoseconds(_ duration: Duration) -> UInt64 {
    // `components` divides 128-bit attoseconds (hundreds of instructions): read it once.
    let (seconds, attoseconds) = duration.components
    return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
}
