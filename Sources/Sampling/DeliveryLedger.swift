/// The at-least-once rule, in one place: per partition, what still holds each uncommitted offset, and
/// from that the exact offset that may be committed.
///
/// Kafka is tailgate's buffer. A consumed span may be forgotten by Kafka (its offset committed) only
/// once nothing can be lost by it: it is in a trace that was dropped, or in a trace (or late span)
/// that every sink has acknowledged. Until then something holds its offset — an *obligation*:
///
/// - a poll handed to the shards and not yet in every shard's window (``dispatch(poll:messages:shards:)``
///   until ``inserted(poll:)`` from each shard);
/// - an undecided trace in a window (``hold(_:)`` when its first span from a partition arrives,
///   ``release(_:)`` when it is dropped);
/// - a kept trace or a late span of one, handed to the sinks (``deliver(_:_:)`` moves the holds to
///   a delivery; ``acknowledge(_:sink:)`` from *every* sink releases it).
///
/// An obligation needs only the *lowest* offset it holds per partition: committing `c` means every
/// offset below `c` is done, so an obligation at `o` forbids every commit past `o`, its higher offsets
/// included. The committable offset of a partition is therefore the lowest offset any obligation holds,
/// or, when none is left, the end of what was received there. That is all the rule there is.
///
/// Partitions come and go with the consumer group. Each assignment of a partition is a *lane* of its
/// own (the engine numbers them; a partition assigned again gets a new lane), so an obligation taken
/// under an old assignment and released after a revoke can never disturb the new one: events for a
/// lane that is not (or no longer) assigned are ignored.
///
/// Pure and single-threaded: no clock, no I/O. Shard threads and sink callbacks record
/// ``DeliveryEvent``s that the owner applies in order. Costs: O(log n) per new held offset, O(1)
/// amortised per release; memory proportional to what is pending (held offsets, deliveries, polls in
/// flight), never to what was processed.
public struct DeliveryLedger: Sendable {
    /// One assignment of one partition.
    public typealias Lane = UInt32

    /// Names one delivery (a kept trace or late span handed to the sinks). Its top 16 bits name the
    /// issuer (the engine: a shard), whose tokens increase and whose deliveries reach the ledger in
    /// that order: so an acknowledgement for a token at or below the issuer's last delivery, and not
    /// pending, is a duplicate or names nothing — an anomaly, not an early acknowledgement to keep.
    public struct Token: Hashable, Sendable, CustomStringConvertible {
        public var raw: UInt64
        public init(_ raw: UInt64) { self.raw = raw }
        public var description: String { "#\(raw)" }
        var issuer: UInt16 { UInt16(truncatingIfNeeded: raw >> 48) }
    }

    /// How many sinks must acknowledge a delivery (at least one; the engine's "no sink" acknowledges
    /// at once).
    public let sinks: Int

    private var lanes = LaneStates()
    private var deliveries: [Token: Delivery] = [:]
    /// Per issuer, the highest token delivered so far.
    private var lastDelivered: [UInt16: UInt64] = [:]
    /// Acknowledgements that arrived before their delivery was recorded (a sink can answer before the
    /// shard's events reach the owner); consumed when it is.
    private var early: [Token: (acknowledged: UInt64, at: UInt64)] = [:]
    private var polls: [UInt64: Poll] = [:]
    /// Whether a suspect lane's gap is gone back for at all (off: every gap is accepted at once). On
    /// in the engine under either protocol (see ``suspectSkips(sincePoll:)``).
    public var refetchesGaps = true

    /// Events that named something unknown (a lane no longer assigned is not one of them): should stay 0.
    public private(set) var anomalies = 0

    public init(sinks: Int) {
        precondition(sinks >= 1 && sinks <= 64, "a delivery is acknowledged by 1 to 64 sinks")
        self.sinks = sinks
    }

    // MARK: Assignment

    /// `lane` is now consumed. `committed`: the offset consumption starts from, when known (the
    /// committable offset before anything arrives).
    public mutating func assign(_ lane: Lane, committed: Int64? = nil) {
        lanes.insert(lane, LaneState(end: committed))
    }

    /// `lane` is taken away in an orderly rebalance: returns the offset to commit for it now (nil:
    /// nothing received, nothing to commit) and forgets the lane. Obligations on it are released with
    /// it: the partition's next owner replays from the returned offset, so whatever was undecided or
    /// unacknowledged here is consumed again there. Deliveries that also hold other lanes keep holding
    /// those.
    public mutating func revoke(_ lane: Lane) -> Int64? {
        let offset = committable(lane)
        lanes.remove(lane)
        return offset
    }

    /// `lane`'s assignment was lost (the session timed out): nothing may be committed for it any more.
    public mutating func lose(_ lane: Lane) { lanes.remove(lane) }

    /// Lanes assigned now.
    public var assignedLanes: [Lane] { lanes.keys }

    // MARK: Obligations

    /// A poll was handed to `shards` shards: its messages are received (the lanes' ends move past them)
    /// and held until every shard has put them in its window.
    ///
    /// Offsets skipped between a lane's end and its next message are a *gap*: legitimate on compacted
    /// or transactional topics (removed records, transaction markers), otherwise messages the client
    /// never delivered (librdkafka 2.0 does, in cooperative rebalances) — committing past them would
    /// lose them. So a gap holds its lowest missing offset, and the consumer is asked to go back there
    /// (``OffsetGap/Kind/refetch``; a gap found before that re-read starts is covered by it:
    /// ``OffsetGap/Kind/extended``). Missing offsets that arrive fill the gap (the hold moves to the
    /// next missing one); it ends when none is missing (`refetched`). When the stream read again
    /// passes missing offsets without delivering them, the consumer goes back once more
    /// (``OffsetGap/Kind/again``: a re-read can skip too); after that second look they are taken not
    /// to exist (`absent`). Messages received before and delivered again are repeats: not held, not
    /// processed again. Only a suspect lane's gaps are read again (``suspectSkips(sincePoll:)``): the
    /// others are the topic's own (`accepted`).
    @discardableResult
    public mutating func dispatch(poll: UInt64, messages: [SourcePosition], shards: Int) -> [OffsetGap] {
        var lowest: [SourcePosition] = []
        var gaps: [OffsetGap] = []
        for message in messages {
            // Lane state is reached through the values view by index: mutated in place, never copied.
            guard let index = lanes.index(forKey: message.lane) else { continue }
            let lane = message.lane
            let offset = message.offset
            // Received before (the consumer went back for a gap): already held or done. Its offset is
            // below the lane's end, so holding it for the poll would move the committable offset back.
            let repeated = isRepeat(message)
            if !repeated, let end = lanes.values[index].end, offset < end {
                // A missing offset came (on a re-read, or late in the stream it was skipped in).
                fill(offset, index: index, lane: lane, into: &gaps)
            }
            if let refetch = lanes.values[index].refetch, poll > refetch.poll, offset >= refetch.from {
                // The stream read again from `refetch.from` is at `offset`: what it passed is not there.
                pass(offset, index: index, lane: lane, poll: poll, into: &gaps)
            }
            if let end = lanes.values[index].end, offset > end {
                open(from: end, to: offset, index: index, lane: lane, poll: poll, into: &gaps)
            }
            // A message of a poll after the one the event came in: a skip shows by then or not at all.
            if let since = lanes.values[index].suspectSince, poll > since { lanes.values[index].suspectSince = nil }
            if repeated { continue }
            lanes.values[index].received(offset)
            if let i = lowest.firstIndex(where: { $0.lane == lane }) {
                lowest[i].offset = min(lowest[i].offset, offset)
            } else {
                lowest.append(message)
            }
        }
        guard shards > 0, !lowest.isEmpty else { return gaps }
        for position in lowest { hold(position) }
        polls[poll] = Poll(positions: lowest, remaining: shards)
        return gaps
    }

    /// How many times a gap's missing offsets are read again before the ones that never come are
    /// taken not to exist: a re-read can skip too (the client's fault that made the gap), so one look
    /// is not enough; transaction markers and compacted records take the second look to let go.
    static let looksPerGap = 2
    /// A skip: offsets `from..<to` did not arrive before `to`. Held at `from` and read again when the
    /// lane is suspect (see ``suspectSkips(sincePoll:)``); otherwise the topic's own (a transaction marker,
    /// aborted or compacted records) and accepted. Learning from the gaps themselves is no way to
    /// tell: a skipped message looks just like a marker (the model test showed a lane that had learnt
    /// to accept one-offset gaps lose a skipped message).
    private mutating func open(from: Int64, to: Int64, index: Int, lane: Lane, poll: UInt64, into reports: inout [OffsetGap]) {
        var gap = OffsetGap(lane: lane, from: from, to: to, kind: .accepted)
        if !refetchesGaps || lanes.values[index].suspectSince == nil {
            reports.append(gap)
            return
        }
        hold(SourcePosition(lane: lane, offset: from))
        lanes.values[index].gaps.append(OpenGap(from: from, to: to))
        if let refetch = lanes.values[index].refetch, refetch.poll == poll {
            // The consumer is about to go back below it (a gap this poll found, or a second look):
            // that re-read covers this one too.
            gap.kind = .extended
        } else {
            gap.kind = .refetch
            lanes.values[index].refetch = (poll, from)
        }
        reports.append(gap)
    }

    /// `offset`, missing in one of the lane's gaps, arrived.
    private mutating func fill(_ offset: Int64, index: Int, lane: Lane, into reports: inout [OffsetGap]) {
        guard let g = lanes.values[index].gaps.firstIndex(where: { $0.missing.contains { $0.contains(offset) } }) else { return }
        let held = lanes.values[index].gaps[g].lowestMissing
        lanes.values[index].gaps[g].remove(offset..<(offset + 1))
        settle(g, heldAt: held, index: index, lane: lane, into: &reports)
    }

    /// The re-read stream reached `offset`: missing offsets below it did not come on this look. Each
    /// gap with some gets another look (the consumer goes back to the lowest of them), or, looked at
    /// enough, lets them go as not existing.
    private mutating func pass(_ offset: Int64, index: Int, lane: Lane, poll: UInt64, into reports: inout [OffsetGap]) {
        var again: Int64?
        var g = 0
        while g < lanes.values[index].gaps.count {
            let gap = lanes.values[index].gaps[g]
            guard gap.lowestMissing < offset else { break }  // sorted: the rest lie beyond
            // A look taken while the lane is suspect (a rebalance or resume since) does not count: the
            // client may have skipped in it again.
            if gap.looks < Self.looksPerGap || lanes.values[index].suspectSince != nil {
                lanes.values[index].gaps[g].looks += 1
                again = min(again ?? .max, gap.lowestMissing)
                g += 1
                continue
            }
            lanes.values[index].gaps[g].remove(gap.from..<offset)
            lanes.values[index].gaps[g].absent = true
            if settle(g, heldAt: gap.lowestMissing, index: index, lane: lane, into: &reports) { continue }
            g += 1
        }
        if let again {
            lanes.values[index].refetch = (poll, again)
            reports.append(OffsetGap(lane: lane, from: again, to: offset, kind: .again))
        } else if lanes.values[index].gaps.isEmpty {
            lanes.values[index].refetch = nil
        }
    }

    /// Moves gap `g`'s hold to its lowest missing offset, or ends it and reports it when nothing is
    /// missing any more. Returns whether the gap was removed.
    @discardableResult
    private mutating func settle(_ g: Int, heldAt held: Int64, index: Int, lane: Lane, into reports: inout [OffsetGap]) -> Bool {
        let gap = lanes.values[index].gaps[g]
        guard gap.missing.isEmpty else {
            if gap.lowestMissing != held {
                release(SourcePosition(lane: lane, offset: held))
                hold(SourcePosition(lane: lane, offset: gap.lowestMissing))
            }
            return false
        }
        release(SourcePosition(lane: lane, offset: held))
        lanes.values[index].gaps.remove(at: g)
        reports.append(OffsetGap(lane: lane, from: gap.from, to: gap.to, kind: gap.absent ? .absent : .refetched))
        if lanes.values[index].gaps.isEmpty { lanes.values[index].refetch = nil }
        return true
    }

    /// librdkafka skips messages at one moment: when it resumes fetching a partition after a
    /// rebalance (2.0 does, for the partitions a member keeps in a cooperative rebalance) — and a
    /// client that can skip there may skip after a pause and resume too. The engine calls this at
    /// every rebalance and every resume, with the poll it happens in (a rebalance runs inside the
    /// poll that collects messages from before and after it): each lane is *suspect* until it
    /// receives a message in a later poll, and a gap found meanwhile is read again. Gaps found
    /// anywhere else are the topic's own and accepted at once, so a transactional topic's markers
    /// cost nothing. A new lane is suspect until its first message.
    public mutating func suspectSkips(sincePoll poll: UInt64) {
        for index in lanes.indices { lanes.values[index].suspectSince = max(lanes.values[index].suspectSince ?? 0, poll) }
    }

    /// Whether `position` was received before on its lane and is not missing in one of its gaps: a
    /// message delivered again after the consumer went back for a gap, whose spans are already in a
    /// window or decided. Ask before ``dispatch(poll:messages:shards:)`` records the poll.
    public func isRepeat(_ position: SourcePosition) -> Bool { Self.isRepeat(position, lanes: lanes) }

    /// The indices of `positions` (one poll's messages) that are repeats (see ``isRepeat(_:)``); empty,
    /// without allocating, when none is — the usual poll. One call per poll: its owner keeps the
    /// ledger in a class, where each call of a non-mutating method copied the whole ledger (retaining
    /// every table in it), once per message.
    public mutating func repeats(among positions: [SourcePosition]) -> [Int] {
        var found: [Int] = []
        for (index, position) in positions.enumerated() where Self.isRepeat(position, lanes: lanes) { found.append(index) }
        return found
    }

    private static func isRepeat(_ position: SourcePosition, lanes: LaneStates) -> Bool {
        guard let index = lanes.index(forKey: position.lane), let end = lanes.values[index].end, position.offset < end else {
            return false
        }
        return !lanes.values[index].gaps.contains { gap in gap.missing.contains { $0.contains(position.offset) } }
    }

    /// Offsets `from..<to` of `lane` that did not arrive before its next message, and what became of them.
    public struct OffsetGap: Sendable, Equatable {
        public enum Kind: Sendable, Hashable {
            /// Just seen: held; the consumer must go back to `from`.
            case refetch
            /// Going back brought the missing messages.
            case refetched
            /// Going back found nothing there: the offsets do not exist.
            case absent
            /// Seen while the consumer is about to go back below it: that re-read covers it. Held.
            case extended
            /// Some of the lane's missing offsets did not come on a re-read: the consumer must go back
            /// to `from` once more (they are held still).
            case again
            /// Not gone back for (the lane's gaps are accepted, or another is being fetched): nothing
            /// to wait for.
            case accepted
        }
        public var lane: Lane
        public var from: Int64
        public var to: Int64
        public var kind: Kind
    }

    /// One shard has put poll `poll` in its window (after recording the holds of its new traces).
    public mutating func inserted(poll: UInt64) {
        guard var record = polls[poll] else { return }
        record.remaining -= 1
        if record.remaining > 0 {
            polls[poll] = record
            return
        }
        polls[poll] = nil
        for position in record.positions { release(position) }
    }

    /// Something (an undecided trace, a late span on its way) holds `position`.
    public mutating func hold(_ position: SourcePosition) {
        // Through the values array, in place: a copy of the lane's state out and back (as
        // `lanes[key]?.hold(…)` on a dictionary did) copied its count table and heap on every hold.
        guard let index = lanes.index(forKey: position.lane) else { return }
        lanes.values[index].hold(position.offset)
    }

    /// A hold on `position` ends (its trace was dropped).
    public mutating func release(_ position: SourcePosition) {
        guard let index = lanes.index(forKey: position.lane) else { return }
        if !lanes.values[index].release(position.offset) { anomalies += 1 }
    }

    /// A delivery every sink has acknowledged: the only place acknowledgements are counted. `note` is
    /// what the owner attached to it (the engine: when the trace was decided, to measure how long
    /// storing took; 0 for deliveries it does not count); `at`, the time the last acknowledgement
    /// carried (0: not given).
    public struct Completed: Sendable, Equatable {
        public var token: Token
        public var note: UInt64
        public var at: UInt64 = 0

        public init(token: Token, note: UInt64, at: UInt64 = 0) {
            self.token = token
            self.note = note
            self.at = at
        }
    }

    /// The holds on `positions` (a kept trace's lowest offset per partition, or a late span's) pass
    /// to delivery `token`: they end when every sink has acknowledged it. Returns the completion when
    /// every sink answered before the delivery was recorded.
    @discardableResult
    public mutating func deliver(_ token: Token, _ positions: some Collection<SourcePosition>, note: UInt64 = 0) -> Completed? {
        lastDelivered[token.issuer] = max(lastDelivered[token.issuer] ?? 0, token.raw)
        let (acknowledged, at) = early.removeValue(forKey: token) ?? (0, 0)
        if acknowledged == allSinks {
            // Every sink answered before the delivery was recorded.
            for position in positions { release(position) }
            return Completed(token: token, note: note, at: at)
        }
        if deliveries[token] != nil { anomalies += 1 }
        var delivery = Delivery(acknowledged: acknowledged, note: note)
        for position in positions { delivery.add(position) }
        deliveries[token] = delivery
        return nil
    }

    /// Sink `sink` (0-based) has durably accepted delivery `token` (at `at`, in the owner's clock, if
    /// given). Returns the completion when this was the last sink it waited for.
    @discardableResult
    public mutating func acknowledge(_ token: Token, sink: Int, at: UInt64 = 0) -> Completed? {
        precondition(sink >= 0 && sink < sinks, "sink \(sink) of \(sinks)")
        let bit = UInt64(1) << UInt64(sink)
        guard var delivery = deliveries[token] else {
            if let last = lastDelivered[token.issuer], token.raw <= last {
                // Completed already (a duplicate), or never delivered: remembering it would leak.
                anomalies += 1
                return nil
            }
            early[token, default: (0, 0)].acknowledged |= bit
            early[token]!.at = max(early[token]!.at, at)
            return nil
        }
        if delivery.acknowledged & bit != 0 {
            anomalies += 1
            return nil
        }
        delivery.acknowledged |= bit
        if delivery.acknowledged == allSinks {
            deliveries[token] = nil
            if let first = delivery.first { release(first) }
            for position in delivery.more ?? [] { release(position) }
            return Completed(token: token, note: delivery.note, at: at)
        }
        deliveries[token] = delivery
        return nil
    }

    /// Applies an event recorded elsewhere (a shard, a sink callback); returns a delivery it completed.
    @discardableResult
    public mutating func apply(_ event: DeliveryEvent) -> Completed? {
        switch event {
        case .hold(let position): hold(position)
        case .release(let position): release(position)
        case .deliver(let token, let first, let more, let note):
            if let more { return deliver(token, CollectionOfOne(first) + more, note: note) }
            return deliver(token, CollectionOfOne(first), note: note)
        case .acknowledge(let token, let sink, let at): return acknowledge(token, sink: sink, at: at)
        case .inserted(let poll): inserted(poll: poll)
        }
        return nil
    }

    // MARK: The answer

    /// The offset to commit for `lane`: the lowest offset an obligation holds there, or the end of
    /// what was received when nothing holds any. Nil when the lane is not assigned or nothing is known.
    public mutating func committable(_ lane: Lane) -> Int64? {
        guard let index = lanes.index(forKey: lane) else { return nil }
        return lanes.values[index].committable()
    }

    /// ``committable(_:)`` for every assigned lane that has an answer.
    public mutating func committableOffsets() -> [Lane: Int64] {
        var result: [Lane: Int64] = [:]
        for index in lanes.indices {
            if let offset = lanes.values[index].committable() { result[lanes.keys[index]] = offset }
        }
        return result
    }

    /// What the ledger holds now; all zero when nothing is pending.
    public struct Size: Sendable, Equatable {
        public var heldOffsets = 0
        public var deliveries = 0
        public var earlyAcknowledgements = 0
        public var pollsInFlight = 0
        public var total: Int { heldOffsets + deliveries + earlyAcknowledgements + pollsInFlight }
        public init(heldOffsets: Int = 0, deliveries: Int = 0, earlyAcknowledgements: Int = 0, pollsInFlight: Int = 0) {
            self.heldOffsets = heldOffsets
            self.deliveries = deliveries
            self.earlyAcknowledgements = earlyAcknowledgements
            self.pollsInFlight = pollsInFlight
        }
    }

    public var size: Size {
        var size = Size()
        size.heldOffsets = lanes.values.reduce(0) { $0 + $1.heldOffsets }
        size.deliveries = deliveries.count
        size.earlyAcknowledgements = early.count
        size.pollsInFlight = polls.count
        return size
    }

    /// Deliveries not yet acknowledged by every sink.
    public var pendingDeliveries: Int { deliveries.count }

    /// Deliveries not yet acknowledged by every sink that hold a position of one of `lanes`: what a
    /// revoke of those lanes waits for (not the sinks' whole backlog). O(pending deliveries).
    public func pendingDeliveries(holding lanes: Set<Lane>) -> Int {
        deliveries.values.reduce(0) { count, delivery in
            let holds = delivery.first.map { lanes.contains($0.lane) } ?? false
                || (delivery.more?.contains { lanes.contains($0.lane) } ?? false)
            return count + (holds ? 1 : 0)
        }
    }

    /// True when nothing holds any offset of any assigned lane: everything received may be committed.
    public var isSettled: Bool { polls.isEmpty && lanes.values.allSatisfy { $0.heldOffsets == 0 } }

    // MARK: Internals

    private var allSinks: UInt64 { sinks == 64 ? .max : (UInt64(1) << UInt64(sinks)) - 1 }

    /// The first position inline, so that a keyed topic's deliveries allocate nothing.
    private struct Delivery {
        var first: SourcePosition?
        var more: [SourcePosition]?
        var acknowledged: UInt64
        var note: UInt64

        init(acknowledged: UInt64, note: UInt64) {
            self.acknowledged = acknowledged
            self.note = note
        }

        mutating func add(_ position: SourcePosition) {
            if first == nil { first = position } else { more = (more ?? []) + [position] }
        }
    }

    private struct Poll {
        var positions: [SourcePosition]
        var remaining: Int
    }
}

/// Something that happened elsewhere and changes what holds offsets; recorded by shard threads and
/// sink callbacks, applied in order by the ledger's owner.
public enum DeliveryEvent: Sendable, Equatable {
    case hold(SourcePosition)
    case release(SourcePosition)
    /// The first position inline; more only for a trace spread over partitions (keyed topics never).
    /// `note`: the owner's, returned with the completion (see ``DeliveryLedger/Completed``).
    case deliver(DeliveryLedger.Token, SourcePosition, more: [SourcePosition]?, note: UInt64 = 0)
    /// `at`: when the sink acknowledged, in the owner's clock (0: not given).
    case acknowledge(DeliveryLedger.Token, sink: Int, at: UInt64 = 0)
    case inserted(poll: UInt64)
}

/// One lane's obligations: a count per held offset, and a min-heap of held offsets whose stale
/// entries (offsets no longer held) are skipped at the top and compacted away once they outnumber the
/// live ones, so memory stays proportional to the offsets held.
struct LaneState: Sendable {
    /// The next offset after the highest received (nil: nothing received and no committed offset known).
    private(set) var end: Int64?
    /// Gaps with offsets still missing, in offset order; each holds its lowest missing offset.
    var gaps: [OpenGap] = []
    /// Where the consumer was sent back to, and the poll after which it reads from there.
    var refetch: (poll: UInt64, from: Int64)?
    /// The poll of the last rebalance or resume, until the lane receives a message in a later poll:
    /// a gap found meanwhile is checked (see ``DeliveryLedger/suspectSkips(sincePoll:)``). 0 for a
    /// new lane: its first message clears it.
    var suspectSince: UInt64? = 0
    private var counts = OffsetCounts()
    private var heap: [Int64] = []

    init(end: Int64?) { self.end = end }

    var heldOffsets: Int { counts.count }

    mutating func received(_ offset: Int64) {
        end = max(end ?? 0, offset + 1)
    }

    mutating func hold(_ offset: Int64) {
        if counts.increment(offset) == 0 { push(offset) }
    }

    /// False when `offset` was not held.
    mutating func release(_ offset: Int64) -> Bool {
        guard let left = counts.decrement(offset) else { return false }
        if left == 0, heap.count > 2 * counts.count + 32 { compact() }
        return true
    }

    mutating func committable() -> Int64? {
        while let top = heap.first, !counts.contains(top) { popTop() }
        guard let lowest = heap.first else { return end }
        return min(lowest, end ?? lowest)
    }

    private mutating func compact() {
        heap = counts.heldOffsets.sorted()  // a sorted array is a valid min-heap
    }

    private mutating func push(_ value: Int64) {
        heap.append(value)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child] < heap[parent] else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { break }
            var smallest = left
            if left + 1 < heap.count && heap[left + 1] < heap[left] { smallest = left + 1 }
            guard heap[smallest] < heap[parent] else { break }
            heap.swapAt(smallest, parent)
            parent = smallest
        }
    }
}

/// Offsets `from..<to` skipped on a lane, and those of them still missing.
struct OpenGap: Sendable {
    let from: Int64
    let to: Int64
    /// Still missing: sorted, disjoint, never empty while the gap is open.
    private(set) var missing: [Range<Int64>]
    /// Some offsets were let go as not existing.
    var absent = false
    /// Times the consumer has been sent back over it.
    var looks = 1

    init(from: Int64, to: Int64) {
        self.from = from
        self.to = to
        missing = [from..<to]
    }

    var lowestMissing: Int64 { missing[0].lowerBound }

    /// Takes `range` out of what is missing.
    mutating func remove(_ range: Range<Int64>) {
        var kept: [Range<Int64>] = []
        for part in missing {
            if part.lowerBound < range.lowerBound { kept.append(part.lowerBound..<min(part.upperBound, range.lowerBound)) }
            if part.upperBound > range.upperBound { kept.append(max(part.lowerBound, range.upperBound)..<part.upperBound) }
        }
        missing = kept
    }
}
