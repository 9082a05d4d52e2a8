public import Kafka
public import Logging
public import OTLP
import Synchronization

/// One assignment of one partition (``PartitionAssignment/id``): the unit the delivery ledger keeps
/// offsets for. A partition assigned again is a new lane, so nothing taken under the old assignment
/// can move the new one's commit.
public typealias Lane = UInt32

/// The lanes now current: one per partition assignment this member holds. Pure; the front keeps one
/// and asks it, for every polled message, whether the assignment it was fetched under is still
/// current — the rebalance-epoch check.
public struct LaneTable: Sendable, Equatable {
    private var partitions: [Lane: TopicPartition] = [:]

    public init() {}

    /// New assignments become lanes (the only way a lane comes to be).
    public mutating func assign(_ assignments: [PartitionAssignment]) {
        for assignment in assignments { partitions[assignment.id] = assignment.partition }
    }

    /// Assignments revoked or lost: their lanes end.
    public mutating func end(_ assignments: [PartitionAssignment]) {
        for assignment in assignments { partitions[assignment.id] = nil }
    }

    /// The lane of a message fetched under `assignment`, or nil when that assignment is not current
    /// (ended inside the poll that fetched it, or never this member's): such a message is neither
    /// processed nor committed.
    public func admit(_ assignment: UInt32) -> Lane? {
        partitions[assignment] != nil ? assignment : nil
    }

    public func partition(of lane: Lane) -> TopicPartition? { partitions[lane] }

    /// Offsets by lane as offsets by partition, for current lanes only.
    public func byPartition(_ offsets: [Lane: Int64]) -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for (lane, offset) in offsets { if let partition = partitions[lane] { result[partition] = offset } }
        return result
    }

    public var count: Int { partitions.count }
}

/// Where one message's spans sit in what its poll decoded.
public struct IngestedMessage: Sendable, Equatable {
    public var lane: Lane
    public var offset: Int64
    /// Indices into the decoded batch's spans (or the splitter's); empty for a refused message.
    public var spans: Range<Int>
    /// A refused message's copy to the dead-letter topic: its offset may be committed past only
    /// once the copy is acknowledged.
    public var deadLetterCopy: DeadLetterCopy?

    public init(lane: Lane, offset: Int64, spans: Range<Int>, deadLetterCopy: DeadLetterCopy? = nil) {
        self.lane = lane
        self.offset = offset
        self.spans = spans
        self.deadLetterCopy = deadLetterCopy
    }
}

/// What the front tells its owner about lanes; called on the polling thread, inside a poll or close.
public protocol RebalanceListener: AnyObject, Sendable {
    /// New lanes, each with its partition and the offset consumption starts from (absent: per
    /// `auto.offset.reset`).
    func assigned(_ lanes: [Lane: TopicPartition], committed: [Lane: Int64])
    /// Lanes taken away in an orderly rebalance: the offsets safe to commit for them now (committed
    /// before their partitions move).
    func revoked(_ lanes: [Lane]) -> [Lane: Int64]
    /// Lanes already lost (session timeout, fenced): another member may own them; commit nothing.
    func lost(_ lanes: [Lane])
    /// This member owns `owned` of the `total` partitions of its topics (after every rebalance).
    func ownership(owned: Int, total: Int)
}

extension RebalanceListener {
    public func ownership(owned: Int, total: Int) {}
}

/// The ingest front `tailgate run` and `tailgate route` share: polls Kafka in batches sized to the
/// running message size and the caller's headroom, drops what was fetched under an assignment that is
/// no longer current, decodes each message in place with the caller's decoder, counts and logs bad
/// input and copies it to the dead-letter topic, and hands back one entry per message, by lane.
///
/// It owns the *rebalance epochs*: lanes are created only when partitions are assigned (never because
/// a message arrived), a revoke asks the listener what to commit, a lost assignment commits nothing,
/// and a message whose assignment is not a current lane is neither processed nor committed (its
/// partition's current owner reads it again from the committed offset).
///
/// One thread polls (``poll(timeout:headroom:into:decode:)``); the rebalance callbacks run inside it.
public final class IngestFront: @unchecked Sendable {
    public let consumer: KafkaConsumer
    public let metrics: IngestMetrics
    public let deadLetter: DeadLetterTopic?
    private var deadLetterFailuresSeen = 0
    private let logger: Logger
    private let throttle = LogThrottle(interval: .seconds(10))
    private let relay: LaneRelay
    /// Messages taken per poll at most.
    public var maxMessagesPerPoll: Int
    /// Bytes of messages taken per poll, by the running average message size (the first poll, before
    /// there is one, takes 64 messages when this is set).
    public var maxBytesPerPoll = Int.max
    /// A running average of message sizes.
    private var averageMessageBytes = 0
    private let firstMessage = Mutex<ContinuousClock.Instant?>(nil)

    public init(
        consumer configuration: KafkaConsumerConfiguration, deadLetter: DeadLetterTopic?, metrics: IngestMetrics,
        maxMessagesPerPoll: Int = 2048, logger: Logger
    ) throws(KafkaError) {
        let relay = LaneRelay(metrics: metrics)
        self.relay = relay
        consumer = try KafkaConsumer(
            configuration: configuration,
            events: KafkaConsumerEvents(
                assigned: { relay.assigned($0) },
                revoked: { relay.revoked($0) },
                lost: { relay.lost($0) },
                statistics: { metrics.record(statistics: $0) },
                fatal: { relay.fatal($0) }),
            logger: logger, maxBatch: maxMessagesPerPoll)
        relay.consumer = consumer
        metrics.record(prefetchLimit: configuration.prefetchLimitBytes)
        self.metrics = metrics
        self.deadLetter = deadLetter
        self.logger = logger
        self.maxMessagesPerPoll = maxMessagesPerPoll
    }

    /// Who hears about lanes (set before the first poll).
    public var listener: (any RebalanceListener)? {
        get { relay.listener }
        set { relay.listener = newValue }
    }

    /// An unrecoverable client error the consumer reported.
    public var fatalError: KafkaError? { relay.fatalError }

    /// When the first message arrived (nil: none yet).
    public var firstMessageAt: ContinuousClock.Instant? { firstMessage.withLock { $0 } }

    /// The partition of a current lane.
    public func partition(of lane: Lane) -> TopicPartition? { relay.partition(of: lane) }

    /// Offsets by lane as offsets by partition, for current lanes only.
    public func byPartition(_ offsets: [Lane: Int64]) -> [TopicPartition: Int64] { relay.byPartition(offsets) }

    /// Polls once: at most `timeout` for the first message, a batch sized to the running message size
    /// (and to `headroom`, the bytes the caller can still take: resident bytes run about twice the
    /// wire bytes). Appends one entry per message of a current lane to `messages`, refused ones with
    /// no spans. `decode` decodes one payload in place (it is valid only during the call).
    public func poll(
        timeout: Duration, headroom: Int? = nil, into messages: inout [IngestedMessage],
        decode: (UnsafeRawBufferPointer) throws(OTLPDecodeError) -> DecodeOutcome
    ) {
        var counts = IngestMetrics.Counts()
        var pollSize = maxMessagesPerPoll
        if averageMessageBytes > 0 {
            pollSize = max(16, min(pollSize, maxBytesPerPoll / averageMessageBytes))
            if let headroom { pollSize = max(16, min(pollSize, headroom / (2 * averageMessageBytes))) }
        } else if maxBytesPerPoll != .max {
            pollSize = min(pollSize, 64)
        }
        var polledBytes = 0
        var first = firstMessageAt
        // Read after the poll's rebalance callbacks ran (the body runs after librdkafka returns).
        var lanes: LaneTable?
        var admitted: Lane = 0  // the last assignment admitted (runs of one partition: one lookup)
        consumer.poll(maxMessages: pollSize, timeout: timeout) { message in
            if lanes == nil { lanes = relay.current }
            // Fetched under an assignment that is over (or none): its partition's current owner, this
            // member included under a new lane, reads it again from the committed offset.
            let lane: Lane
            if message.assignment != 0 && message.assignment == admitted {
                lane = admitted
            } else if let current = lanes?.admit(message.assignment) {
                lane = current
                admitted = current
            } else {
                counts.messagesStale += 1
                return
            }
            polledBytes += message.payload.count
            if first == nil {
                first = .now
                firstMessage.withLock { $0 = first }
            }
            counts.messagesReceived += 1
            counts.bytesReceived += message.payload.count
            do throws(OTLPDecodeError) {
                let outcome = try decode(message.payload)
                counts.spansReceived += outcome.spans.count
                messages.append(IngestedMessage(lane: lane, offset: message.offset, spans: outcome.spans))
                if outcome.rejectedSpans > 0, let first = outcome.firstSpanRejection {
                    counts.spansRejected[first.reason, default: 0] += outcome.rejectedSpans
                    throttle.log(
                        logger, level: .warning, key: "span-\(first.reason.rawValue)",
                        "refused \(outcome.rejectedSpans) span(s) of \(message.topic)[\(message.partition)]@\(message.offset): \(first)",
                        metadata: ["topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)"])
                }
            } catch {
                // Refused whole: counted, logged, optionally set aside (its offset advances once the
                // copy is acknowledged, at once without a dead-letter topic), so the partition never
                // stalls behind it.
                counts.messagesRejected[error.reason, default: 0] += 1
                let copy = deadLetter?.send(
                    key: message.key, payload: message.payload, source: message.topicPartition, offset: message.offset, error: error)
                if copy != nil { counts.messagesDeadLettered += 1 }
                messages.append(IngestedMessage(lane: lane, offset: message.offset, spans: 0..<0, deadLetterCopy: copy))
                throttle.log(
                    logger, level: .warning, key: "message-\(error.reason.rawValue)",
                    "refused message \(message.topic)[\(message.partition)]@\(message.offset) (\(message.payload.count) bytes): \(error)",
                    metadata: ["topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)"])
            }
        }
        if let deadLetter {
            let failures = deadLetter.failures
            counts.deadLetterFailures += failures - deadLetterFailuresSeen
            deadLetterFailuresSeen = failures
        }
        metrics.add(counts)
        if counts.messagesReceived > 0 {
            let average = polledBytes / counts.messagesReceived
            averageMessageBytes = averageMessageBytes == 0 ? average : (averageMessageBytes * 7 + average) / 8
        }
    }

    /// Stores offsets (by lane) for the background commit; lanes no longer current are ignored.
    public func storeOffsets(_ offsets: [Lane: Int64]) {
        let stored = relay.byPartition(offsets)
        if !stored.isEmpty { consumer.storeOffsets(stored) }
    }

    /// Reads lanes again from the given offsets.
    public func seek(_ offsets: [Lane: Int64]) {
        let partitions = relay.byPartition(offsets)
        if !partitions.isEmpty { consumer.seek(partitions) }
    }

    /// True when every assigned partition is at its end (with `reportPartitionEOF`).
    public var isAtEndOfAllPartitions: Bool { consumer.isAtEndOfAllPartitions }

    /// Flushes the dead-letter copies (at most 10 s). Call after the consumer is closed.
    public func flushDeadLetters() {
        guard let deadLetter else { return }
        do { try deadLetter.flush(timeout: .seconds(10)) } catch {
            logger.error("dead-letter topic not fully flushed: \(error)")
        }
    }
}

/// Turns the consumer's assignment events into lanes; the listener and the metrics hear of them.
final class LaneRelay: @unchecked Sendable {
    let metrics: IngestMetrics
    weak var consumer: KafkaConsumer?
    private let state = Mutex<(lanes: LaneTable, listener: (any RebalanceListener)?, fatal: KafkaError?)>((LaneTable(), nil, nil))
    private let partitionCounts = Mutex<[String: Int]>([:])

    init(metrics: IngestMetrics) { self.metrics = metrics }

    var listener: (any RebalanceListener)? {
        get { state.withLock { $0.listener } }
        set { state.withLock { $0.listener = newValue } }
    }

    var current: LaneTable { state.withLock { $0.lanes } }
    func partition(of lane: Lane) -> TopicPartition? { state.withLock { $0.lanes.partition(of: lane) } }
    func byPartition(_ offsets: [Lane: Int64]) -> [TopicPartition: Int64] { state.withLock { $0.lanes.byPartition(offsets) } }

    func assigned(_ assignments: [PartitionAssignment]) {
        var lanes: [Lane: TopicPartition] = [:]
        for assignment in assignments { lanes[assignment.id] = assignment.partition }
        let listener = state.withLock { state in
            state.lanes.assign(assignments)
            return state.listener
        }
        // Where consumption starts: the ledger then sees a message skipped even at the start.
        let committed = consumer?.committedOffsets(assignments.map(\.partition)) ?? [:]
        var committedByLane: [Lane: Int64] = [:]
        for assignment in assignments { if let offset = committed[assignment.partition] { committedByLane[assignment.id] = offset } }
        listener?.assigned(lanes, committed: committedByLane)
        metrics.record(assigned: assignments.map(\.partition))
        // The topics' partition counts, once each: this member's share of the group (throughput goals).
        for topic in Set(assignments.map(\.partition.topic)) where partitionCounts.withLock({ $0[topic] }) == nil {
            if let count = consumer?.partitionCount(of: topic) { partitionCounts.withLock { $0[topic] = count } }
        }
        reportOwnership(listener)
    }

    func revoked(_ assignments: [PartitionAssignment]) {
        let listener = self.listener
        let safe = listener?.revoked(assignments.map(\.id)) ?? [:]
        // Stored while the lanes are still known: committed by the consumer before the partitions move.
        consumer?.storeOffsets(byPartition(safe))
        forget(assignments)
        reportOwnership(listener)
    }

    func lost(_ assignments: [PartitionAssignment]) {
        let listener = self.listener
        state.withLock { $0.lanes.end(assignments) }
        metrics.record(lost: assignments.map(\.partition))
        listener?.lost(assignments.map(\.id))
        reportOwnership(listener)
    }

    private func forget(_ assignments: [PartitionAssignment]) {
        state.withLock { $0.lanes.end(assignments) }
        metrics.record(revoked: assignments.map(\.partition))
    }

    private func reportOwnership(_ listener: (any RebalanceListener)?) {
        listener?.ownership(owned: metrics.partitionsAssigned, total: partitionCounts.withLock { $0.values.reduce(0, +) })
    }

    func fatal(_ error: KafkaError) { state.withLock { $0.fatal = error } }

    var fatalError: KafkaError? { state.withLock { $0.fatal } }
}
