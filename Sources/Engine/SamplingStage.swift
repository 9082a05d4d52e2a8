import Dispatch
import Foundation
public import Ingest
public import Kafka
public import Logging
public import OTLP
public import Sampling
public import SpanMetrics
import Synchronization

/// The sampling stage: routes each decoded span to the shard that owns its trace (a well-mixed hash
/// of the trace id), where a single thread holds the trace window, expires deadlines, decides with
/// the current rules and hands kept traces to the sinks. Work crosses threads in whole polls; nothing
/// on the per-span path takes a shared lock.
///
/// Which offsets may be committed is the ``DeliveryLedger``'s answer alone. The stage owns it on the
/// ingest thread (every ``IngestSink`` call arrives there): it records each poll it dispatches, and
/// applies the events the shards and sinks post (holds of new traces, releases of dropped ones,
/// deliveries, acknowledgements) before it asks.
public final class SamplingStage: IngestSink, @unchecked Sendable {
    public let rules: RuleStore
    public let metrics: SamplingMetrics
    public let bufferLimit: Int
    /// RED and service-graph metrics of every decided trace.
    public let spanMetrics: SpanMetricsHub
    let shards: [Shard]
    let fanOut: KeptTraceFanOut
    let logger: Logger
    /// Sinks' acknowledgements, posted from their threads.
    private let acknowledgements = DeliveryEvents()
    /// How long ``drain()`` waits for the sinks.
    public var drainTimeout: Duration = .seconds(30)
    /// Spans of messages delivered again after the consumer went back for a gap, not processed twice.
    public var rereadSpans: Int { reread.load(ordering: .relaxed) }
    private let reread = Atomic<Int>(0)
    /// The longest a revoke waits for the sinks (the whole group waits with it).
    static let revokeFlushLimit: Duration = .seconds(10)
    /// What a revoke does with the traces only revoked partitions hold.
    public var revokePolicy = RevokePolicy.decide
    /// Whether offset gaps are read again to check them (see ``DeliveryLedger/refetchesGaps``): on,
    /// under either assignment protocol.
    public var refetchesGaps: Bool {
        get { ledger.refetchesGaps }
        set { ledger.refetchesGaps = newValue }
    }

    // Ingest-thread state (every IngestSink call is made on the polling thread).
    private var ledger: DeliveryLedger
    private var scratch: [DeliveryEvent] = []
    private var completed: [DeliveryLedger.Completed] = []
    private let clock: any MonotonicClock
    private let stored = Atomic<Int>(0)
    /// Each assigned lane's partition (for log lines); lanes come from the ingest front's assignments.
    private var partitionOf: [Lane: TopicPartition] = [:]
    private var sequence: UInt64 = 0
    var inFlight = PollsInFlight()
    var paused = false
    let pressureHandler: Mutex<(@Sendable (Bool) -> Void)?> = Mutex(nil)
    let pressureLog = LogThrottle(interval: .seconds(60))
    /// The ledger's last answer and size, for other threads (tests, metrics): the answer by lane, with
    /// the lanes' partitions as they were then, turned into offsets by partition only when read (a
    /// scrape), not after every poll — hashing each lane's topic name per poll was ~40 instructions
    /// per span.
    private let published = Mutex<(offsets: [Lane: Int64], partitions: [Lane: TopicPartition], size: DeliveryLedger.Size, anomalies: Int)>(([:], [:], .init(), 0))

    public init(
        rules: RuleStore, metrics: SamplingMetrics, shardCount: Int, bufferLimit: Int, fanOut: KeptTraceFanOut,
        decisionWaitOverride: Duration? = nil, spanMetrics: SpanMetricsConfiguration = SpanMetricsConfiguration(),
        dryRun: Bool = false, clock: any MonotonicClock = SystemMonotonicClock(), wallClock: any WallClock = SystemWallClock(),
        logger: Logger
    ) {
        self.rules = rules
        self.metrics = metrics
        self.bufferLimit = bufferLimit
        self.fanOut = fanOut
        self.logger = logger
        self.clock = clock
        ledger = DeliveryLedger(sinks: fanOut.acknowledgementsNeeded)
        let hub = SpanMetricsHub(configuration: spanMetrics, selection: rules.rules.selection, shards: max(1, shardCount))
        self.spanMetrics = hub
        let settings = rules.rules.configuration.settings
        let perShardCache = DecisionCache(
            keptCapacity: settings.sampledCacheSize / max(1, shardCount),
            droppedCapacity: settings.nonSampledCacheSize / max(1, shardCount))
        let acknowledgements = self.acknowledgements
        shards = (0..<max(1, shardCount)).map { index in
            Shard(
                index: index, window: TraceWindow(limits: WindowLimits(settings), cache: perShardCache), rules: rules,
                metrics: metrics, spanMetrics: hub, fanOut: fanOut, acknowledgements: acknowledgements, clock: clock,
                wallClock: wallClock, pressureTarget: bufferLimit / max(1, shardCount), decisionWaitOverride: decisionWaitOverride,
                shardCount: max(1, shardCount), dryRun: dryRun)
        }
        for shard in shards { shard.start() }
    }

    /// Called with true to pause Kafka consumption (buffer full), false to resume.
    public func onPressure(_ handler: @escaping @Sendable (Bool) -> Void) { pressureHandler.withLock { $0 = handler } }

    public var attributeSelection: AttributeSelection { rules.rules.selection }

    /// Consumption resumed after a pause: a resumed partition may skip too (see
    /// ``DeliveryLedger/suspectSkips(sincePoll:)``).
    public func consumptionResumed() { ledger.suspectSkips(sincePoll: sequence + 1) }

    /// Every shard has finished with the batches of this many polls (they hold none of them).
    public var batchesReleased: UInt64? { shards.map { $0.completedSequence.load(ordering: .acquiring) }.min() ?? 0 }

    /// Bytes waiting in the kept-trace sinks.
    public var queuedBytes: Int { fanOut.queuedBytes }

    public func ingest(_ batch: SpanBatch, messages: [IngestedMessage]) {
        sequence += 1
        var perShard = Array(repeating: ShardWork(batch: batch, sequence: sequence), count: shards.count)
        // Sized once for an even share (trace ids spread evenly): no regrowth and copy per poll.
        let share = batch.spans.count / max(1, shards.count) + batch.spans.count / 8 + 16
        for index in perShard.indices {
            perShard[index].spans.reserveCapacity(share)
            perShard[index].sources.reserveCapacity(share)
        }
        let positions = messages.map { SourcePosition(lane: $0.lane, offset: $0.offset) }
        // Read again because the consumer went back for a gap: their spans are here already.
        let repeats = ledger.repeats(among: positions)
        var nextRepeat = repeats.startIndex
        var repeated = 0
        var copies: [(SourcePosition, DeadLetterCopy)] = []
        for (index, message) in messages.enumerated() {
            let position = positions[index]
            if nextRepeat < repeats.endIndex && repeats[nextRepeat] == index {
                nextRepeat += 1
                repeated += message.spans.count
                continue
            }
            if let copy = message.deadLetterCopy { copies.append((position, copy)) }
            for spanIndex in message.spans {
                let shard = TraceRouting.shard(of: batch.spans[spanIndex].traceID, count: shards.count)
                perShard[shard].spans.append(Int32(spanIndex))
                perShard[shard].sources.append(position)
            }
        }
        if repeated > 0 { reread.add(repeated, ordering: .relaxed) }
        // Held until every shard has the poll in its window (each shard gets it, empty or not).
        let gaps = ledger.dispatch(poll: sequence, messages: positions, shards: shards.count)
        if !gaps.isEmpty { report(gaps) }
        holdUntilCopied(copies)
        inFlight.append(sequence: sequence, bytes: batch.bytes.count)
        for (shard, work) in zip(shards, perShard) { shard.send(.spans(work)) }
        applyPressure()
    }

    /// A refused message copied to the dead-letter topic is a delivery of its own: its offset is
    /// held until the topic acknowledges the copy, which stands in for every sink's acknowledgement.
    private func holdUntilCopied(_ copies: [(SourcePosition, DeadLetterCopy)]) {
        for (position, copy) in copies {
            deadLetterTokens += 1
            let token = DeliveryLedger.Token(Self.deadLetterIssuer << 48 | deadLetterTokens)
            ledger.hold(position)
            ledger.deliver(token, [position])
            let sinks = ledger.sinks
            copy.whenAcknowledged { [acknowledgements, clock] in
                let now = clock.now()
                for sink in 0..<sinks { acknowledgements.post(.acknowledge(token, sink: sink, at: now)) }
            }
        }
    }

    /// The delivery tokens' issuer for dead-letter copies (shards issue under their index).
    static let deadLetterIssuer: UInt64 = 0xFFFF
    private var deadLetterTokens: UInt64 = 0

    /// This member owns `owned` of its topics' `total` partitions: adaptive samplers with a
    /// throughput goal aim at that share of it (no configured cluster size).
    public func ownership(owned: Int, total: Int) {
        guard total > 0 else { return }
        goalShare.withLock { $0 = Double(owned) / Double(total) }
        applyGoalShare()
    }

    /// This member's share of the group's throughput goals (1 until the first assignment is known).
    public var currentGoalShare: Double { goalShare.withLock { $0 } }
    private let goalShare = Mutex(1.0)
    private var sharedWith: (rules: RuleSet, share: Double)?

    /// Gives the running rules' adaptive samplers this member's share (again after a reload).
    private func applyGoalShare() {
        let rules = self.rules.rules
        let share = currentGoalShare
        if let sharedWith, sharedWith.rules === rules, sharedWith.share == share { return }
        for policy in rules.policies { for sampler in policy.allSamplers { sampler.setGoalShare(share) } }
        sharedWith = (rules, share)
    }

    public func committableOffsets() -> [Lane: Int64] {
        applyGoalShare()
        applyPressure()
        collectEvents()
        let result = ledger.committableOffsets()
        let size = ledger.size
        let anomalies = ledger.anomalies
        let partitions = partitionOf
        published.withLock { $0 = (result, partitions, size, anomalies) }
        return result
    }

    /// The ledger's last answer (safe to read from any thread; refreshed after every poll).
    public var lastCommittableOffsets: [TopicPartition: Int64] {
        let (offsets, partitions) = published.withLock { ($0.offsets, $0.partitions) }
        var byPartition: [TopicPartition: Int64] = [:]
        byPartition.reserveCapacity(offsets.count)
        for (lane, offset) in offsets { if let partition = partitions[lane] { byPartition[partition] = offset } }
        return byPartition
    }

    /// What the ledger held at its last answer.
    public var ledgerSize: DeliveryLedger.Size { published.withLock { $0.size } }

    /// Events the ledger found naming nothing it knew (a duplicate or stray acknowledgement, a release
    /// of an offset not held): 0 unless something upstream is wrong.
    public var ledgerAnomalies: Int { published.withLock { $0.anomalies } }

    /// New lanes: the ledger starts keeping their offsets (only here: a message of a lane it does not
    /// know is neither held nor committed).
    public func assigned(_ lanes: [Lane: TopicPartition], committed: [Lane: Int64]) {
        // A rebalance: the partitions kept through it may resume past a skip (librdkafka 2.0).
        ledger.suspectSkips(sincePoll: sequence + 1)
        for (lane, partition) in lanes {
            partitionOf[lane] = partition
            ledger.assign(lane, committed: committed[lane])
        }
    }

    /// Lanes another member may already own: their traces are forgotten (their new owner decides them
    /// from the committed offset) and nothing is committed for them.
    public func lost(_ lost: [Lane]) {
        ledger.suspectSkips(sincePoll: sequence + 1)
        let lanes = Set(lost.filter { partitionOf[$0] != nil })
        guard !lanes.isEmpty else { return }
        let done = DispatchSemaphore(value: 0)
        for shard in shards { shard.send(.revoke(lanes, decide: false, done)) }
        for _ in shards { done.wait() }
        collectEvents()
        for lane in lanes {
            partitionOf[lane] = nil
            ledger.lose(lane)
        }
    }

    /// Shards first finish what they were sent, then decide (``RevokePolicy/decide``: the sinks get
    /// up to 10 s, or ``drainTimeout`` if shorter, to acknowledge what is kept) or forget (``RevokePolicy/replay``) the
    /// traces that only revoked partitions hold; then the ledger answers for the revoked partitions
    /// and forgets them. Traces that also hold partitions this member keeps stay, and keep holding
    /// those (see ``TraceWindow/forget(partitions:)``).
    public func revoked(_ revoked: [Lane]) -> [Lane: Int64] {
        ledger.suspectSkips(sincePoll: sequence + 1)
        let lanes = Set(revoked.filter { partitionOf[$0] != nil })
        guard !lanes.isEmpty else { return [:] }
        let done = DispatchSemaphore(value: 0)
        let decide = revokePolicy == .decide
        for shard in shards { shard.send(.revoke(lanes, decide: decide, done)) }
        for _ in shards { done.wait() }
        // Waits for the deliveries that hold the revoked lanes only, not the sinks' whole backlog.
        // Bounded: a sink that is down holds the whole group's rebalance up for at most this long;
        // what it has not acknowledged by then stays uncommitted and is replayed by the next owner.
        let bound = min(drainTimeout, Self.revokeFlushLimit)
        collectEvents()
        if decide {
            let deadline = ContinuousClock.now + bound
            while ledger.pendingDeliveries(holding: lanes) > 0 && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.002)
                collectEvents()
            }
            let left = ledger.pendingDeliveries(holding: lanes)
            if left > 0 {
                logger.error("sinks did not acknowledge \(left) kept trace(s) of the revoked partitions within \(bound); the next owner replays them")
            }
        }
        var safe: [Lane: Int64] = [:]
        var described: [String] = []
        for lane in lanes.sorted() {
            guard let partition = partitionOf.removeValue(forKey: lane) else { continue }
            if let offset = ledger.revoke(lane) {
                safe[lane] = offset
                described.append("\(partition)@\(offset)")
            }
        }
        logger.info(
            decide ? "decided buffered traces of revoked partitions before handing them over" : "released buffered traces of revoked partitions; their next owner replays from the committed offset",
            metadata: ["commit": "\(described.joined(separator: ","))"])
        return safe
    }

    /// Decides everything buffered, hands it to the sinks, and waits for them (at most
    /// ``drainTimeout``); their acknowledgements reach the ledger at the next ``committableOffsets()``.
    public func drain() {
        let done = DispatchSemaphore(value: 0)
        for shard in shards { shard.send(.drain(done)) }
        for _ in shards { done.wait() }
        let deadline = ContinuousClock.now + drainTimeout
        if !fanOut.flush(timeout: drainTimeout) {
            logger.error("sinks did not acknowledge every kept trace within \(drainTimeout); their offsets stay uncommitted and will be replayed")
        }
        collectEvents()
        // Dead-letter copies are acknowledged by the dead-letter topic, not the sinks: waited for here
        // (only deliveries: a gap still open cannot close without more polls).
        while ledger.pendingDeliveries > 0 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.002)
            collectEvents()
        }
        let settled = ledger.isSettled
        settledAtDrain.withLock { $0 = settled }
    }

    /// After ``drain()``: true when everything received was decided and acknowledged by every sink,
    /// so the final commit covers all of it.
    public var isSettled: Bool { settledAtDrain.withLock { $0 } }
    private let settledAtDrain = Mutex(false)

    /// Stops the shard threads (after ``drain()``).
    public func stop() {
        for shard in shards { shard.send(.stop) }
    }

    private let gapLog = LogThrottle(interval: .seconds(10))
    /// Offset gaps seen, going back for them, and how they were settled (see ``DeliveryLedger/dispatch(poll:messages:shards:)``).
    private let gapCounts = Mutex(GapCounts())
    private var seeks: [Lane: Int64] = [:]

    /// Gaps in the offsets the consumer delivered, by how they ended.
    public struct GapCounts: Sendable, Equatable {
        /// The consumer was sent back and the missing messages came (a client fault, repaired).
        public var refetched = 0
        /// The offsets do not exist (compacted or transactional topic).
        public var accepted = 0
        /// Sent back, not yet settled.
        public var pending = 0
    }

    public var offsetGaps: GapCounts { gapCounts.withLock { $0 } }

    public func takeSeeks() -> [Lane: Int64] {
        defer { seeks.removeAll() }
        return seeks
    }

    private func report(_ gaps: [DeliveryLedger.OffsetGap]) {
        gapCounts.withLock { counts in
            for gap in gaps {
                switch gap.kind {
                case .refetch: counts.pending += 1
                case .refetched:
                    counts.pending -= 1
                    counts.refetched += 1
                case .absent:
                    counts.pending -= 1
                    counts.accepted += 1
                case .accepted: counts.accepted += 1
                case .extended: counts.pending += 1
                case .again: break
                }
            }
        }
        for gap in gaps {
            guard let partition = partitionOf[gap.lane] else { continue }
            switch gap.kind {
            case .refetch, .again:
                seeks[gap.lane] = min(seeks[gap.lane] ?? .max, gap.from)
                if gap.kind == .again {
                    gapLog.log(
                        logger, level: .warning, key: "again-\(partition)",
                        "offsets from \(gap.from) of \(partition) did not come when read again; going back once more before taking them not to exist")
                    continue
                }
                gapLog.log(
                    logger, level: .warning, key: "gap-\(partition)",
                    "offsets \(gap.from)..<\(gap.to) of \(partition) were not delivered by the consumer; going back for them (their offsets are held)")
            case .refetched:
                gapLog.log(logger, level: .info, key: "refetched-\(partition)", "offsets \(gap.from)..<\(gap.to) of \(partition) came on a second read")
            case .extended:
                gapLog.log(
                    logger, level: .warning, key: "gap-\(partition)",
                    "offsets \(gap.from)..<\(gap.to) of \(partition) were not delivered either; the consumer is about to go back before them")
            case .absent, .accepted:
                gapLog.log(
                    logger, level: .info, key: "accepted-\(partition)",
                    "offsets \(gap.from)..<\(gap.to) of \(partition) do not exist (compacted or transactional topic)")
            }
        }
    }

    /// Kept traces every sink has acknowledged (the ledger's count).
    public var storedTraces: Int { stored.load(ordering: .relaxed) }

    /// Acknowledgements first, then each shard's events: the ledger takes either order. Kept traces it
    /// reports complete are counted stored, with how long that took since their decision.
    private func collectEvents() {
        acknowledgements.apply(to: &ledger, scratch: &scratch, completed: &completed)
        for shard in shards { shard.outbox.apply(to: &ledger, scratch: &scratch, completed: &completed) }
        guard !completed.isEmpty else { return }
        let now = clock.now()
        var counted = 0
        for delivery in completed where delivery.note != 0 {
            let decidedAt = delivery.note - 1
            let storedAt = delivery.at != 0 ? delivery.at : now
            metrics.recordStored(afterSeconds: Double(storedAt > decidedAt ? storedAt - decidedAt : 0) / 1e9)
            counted += 1
        }
        stored.add(counted, ordering: .relaxed)
        completed.removeAll(keepingCapacity: true)
    }
}

/// What a member does at a rebalance with the buffered traces of the partitions it loses.
public enum RevokePolicy: String, Sendable, CaseIterable {
    /// Decide them now with the spans that arrived, store what is kept, commit past them: the next
    /// owner replays nothing, so nothing is stored or counted twice. A trace whose later spans arrive
    /// after the revoke is decided again by the next owner on those spans alone.
    case decide
    /// Forget them; the next owner replays them from the committed offset and decides whole traces.
    /// Traces decided here after that offset are then decided (and stored, counted) twice.
    case replay
}
