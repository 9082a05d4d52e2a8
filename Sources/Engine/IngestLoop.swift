public import Kafka
public import Logging
public import OTLP
import Synchronization

/// Where a message's spans sit in a ``SpanBatch``.
public struct IngestedMessage: Sendable {
    public var partition: TopicPartition
    public var offset: Int64
    /// Indices into ``SpanBatch/spans``; empty for a refused message.
    public var spans: Range<Int>
}

/// What takes decoded batches from the ingest loop and says which offsets may be committed.
/// Called on the polling thread.
public protocol IngestSink: AnyObject, Sendable {
    /// The attribute keys the decoder must extract (a rule reload may add keys).
    var attributeSelection: AttributeSelection { get }
    /// Takes the spans of one poll. The batch is the sink's to keep; the loop decodes into a new one.
    func ingest(_ batch: SpanBatch, messages: [IngestedMessage])
    /// Per partition, the next offset whose predecessors are all safely handled; stored for commit
    /// after every poll. Partitions absent are not advanced.
    func committableOffsets() -> [TopicPartition: Int64]
    /// These partitions were assigned to this member; consumption starts at `committed` (partitions
    /// absent: per `auto.offset.reset`).
    func assigned(_ partitions: [TopicPartition], committed: [TopicPartition: Int64])
    /// These partitions are being taken away: return the offsets safe to commit for them now and
    /// release their state (their next owner replays from there).
    func revoke(_ partitions: [TopicPartition]) -> [TopicPartition: Int64]
    /// This member owns `owned` of the `total` partitions of its topics (after every rebalance).
    func ownership(owned: Int, total: Int)
    /// The loop is stopping: decide and hand on everything buffered, so that
    /// ``committableOffsets()`` covers all that was consumed.
    func drain()
    /// Bytes the sink can still take before its buffer limit (nil: no limit). The loop takes smaller
    /// polls as it shrinks, so a pause lands close to the limit instead of one full poll past it.
    var headroom: Int? { get }
    /// Partitions to read again from an offset (messages the consumer skipped), asked once after each
    /// ``ingest(_:messages:)``.
    func takeSeeks() -> [TopicPartition: Int64]
    /// How many of the batches handed to ``ingest(_:messages:)`` (counted from 1) the sink has let go
    /// of: the loop decodes into those again, in place. nil: unknown (the loop keeps four back).
    var batchesReleased: UInt64? { get }
}

extension IngestSink {
    public var batchesReleased: UInt64? { nil }
    public var headroom: Int? { nil }
    public func takeSeeks() -> [TopicPartition: Int64] { [:] }
    public func ownership(owned: Int, total: Int) {}
}

/// Acknowledges each message as soon as it is decoded: for ingest-only runs, and the reference
/// against which the sampling stage is measured.
public final class AcknowledgeOnDecode: IngestSink {
    private let spans = Atomic<Int>(0)
    private let traces = Mutex<Set<TraceID>>([])
    private let next = Mutex<[TopicPartition: Int64]>([:])
    private let countsTraces: Bool

    /// - Parameter countTraces: also collect distinct trace ids (memory grows with traffic; for tests and demos).
    public init(countTraces: Bool = false) { self.countsTraces = countTraces }

    public var attributeSelection: AttributeSelection { .none }

    public func ingest(_ batch: SpanBatch, messages: [IngestedMessage]) {
        spans.add(batch.spans.count, ordering: .relaxed)
        if countsTraces {
            let ids = batch.spans.map(\.traceID)
            traces.withLock { $0.formUnion(ids) }
        }
        next.withLock { next in
            for message in messages { next[message.partition] = max(next[message.partition] ?? 0, message.offset + 1) }
        }
    }

    public func committableOffsets() -> [TopicPartition: Int64] { next.withLock { $0 } }
    public func assigned(_ partitions: [TopicPartition], committed: [TopicPartition: Int64]) {}
    public func revoke(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        next.withLock { next in
            var result: [TopicPartition: Int64] = [:]
            for partition in partitions { result[partition] = next.removeValue(forKey: partition) }
            return result
        }
    }
    public func drain() {}

    public var spanCount: Int { spans.load(ordering: .relaxed) }
    public var distinctTraces: Int { traces.withLock { $0.count } }
}

/// The ingest stage: polls Kafka in batches, decodes each message in place into a reused
/// ``SpanBatch``, counts and sets aside bad input, hands the batch on, and stores the offsets the sink
/// says are safe. Runs on one dedicated thread (``run()`` blocks).
public final class IngestLoop: @unchecked Sendable {
    public let consumer: KafkaConsumer
    public let metrics: IngestMetrics
    private let decoder: SpanDecoder
    private let sink: any IngestSink
    private let deadLetter: DeadLetterTopic?
    private let logger: Logger
    private let throttle = LogThrottle(interval: .seconds(10))
    private let exitOnEOF: Bool
    private let stopRequested = Atomic<Bool>(false)
    private let pauseRequested = Atomic<Bool>(false)
    private var pausedApplied: Set<TopicPartition> = []
    private var batch: SpanBatch
    private var messages: [IngestedMessage] = []
    private let relay: RebalanceRelay
    /// Messages taken per poll: large enough to amortise, small enough to keep latency low.
    public var maxMessagesPerPoll = 2048
    /// Bytes of messages taken per poll (by the running average message size; the first poll, before
    /// there is one, takes 64 messages). Polled bytes are held in the batch being decoded and the
    /// batches kept for reuse, so this bounds them.
    public var maxBytesPerPoll = Int.max

    public init(
        consumer configuration: KafkaConsumerConfiguration, encoding: OTLPEncoding,
        sink: any IngestSink, deadLetter: DeadLetterTopic? = nil, metrics: IngestMetrics = IngestMetrics(),
        exitOnEOF: Bool = false, logger: Logger
    ) throws(KafkaError) {
        var configuration = configuration
        configuration.reportPartitionEOF = configuration.reportPartitionEOF || exitOnEOF
        let relay = RebalanceRelay(sink: sink, metrics: metrics)
        self.relay = relay
        consumer = try KafkaConsumer(
            configuration: configuration,
            events: KafkaConsumerEvents(
                assigned: { relay.assigned($0) },
                revoked: { relay.revoked($0) },
                statistics: { metrics.record(statistics: $0) },
                fatal: { relay.fatal($0) }),
            logger: logger)
        relay.consumer = consumer
        self.metrics = metrics
        decoder = SpanDecoder(encoding: encoding)
        self.sink = sink
        self.deadLetter = deadLetter
        self.logger = logger
        self.exitOnEOF = exitOnEOF
        batch = SpanBatch(selection: sink.attributeSelection, reservingBytes: 1 << 20, spans: 4096)
        messages.reserveCapacity(maxMessagesPerPoll)
    }

    private var firstMessageAt: ContinuousClock.Instant?
    /// A running average of message sizes (for poll sizes near the buffer limit).
    private var averageMessageBytes = 0
    private let processing = Mutex<Duration?>(nil)

    /// From the first message to the end of ``run()``'s drain (everything decided and stored): the
    /// time the work took, without the group join before it (the end-to-end harness's measure).
    public var processingTime: Duration? { processing.withLock { $0 } }

    /// Asks ``run()`` to finish: stop fetching, hand on what was polled, store offsets, leave the group.
    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    /// Backpressure: pause (true) or resume (false) every assigned partition. Thread-safe; applied by
    /// the polling thread, and re-applied to partitions assigned later.
    public func setPaused(_ paused: Bool) { pauseRequested.store(paused, ordering: .relaxed) }

    /// Why ``run()`` returned.
    public enum Outcome: Sendable, Equatable {
        case stopped
        case reachedEnd
        case fatal(KafkaError)
    }

    /// Polls until stopped, until every assigned partition is at its end (`exitOnEOF`), or a fatal
    /// Kafka error. Leaves the group before returning.
    @discardableResult
    public func run() -> Outcome {
        var outcome = Outcome.stopped
        while !stopRequested.load(ordering: .relaxed) {
            applyPause()
            pollOnce(timeout: .milliseconds(100))
            if let fatal = relay.fatalError {
                outcome = .fatal(fatal)
                break
            }
            if exitOnEOF && consumer.isAtEndOfAllPartitions {
                outcome = .reachedEnd
                break
            }
        }
        // Decide what is buffered, then store what that frees; close commits it and leaves the group.
        sink.drain()
        if let firstMessageAt { processing.withLock { $0 = ContinuousClock.now - firstMessageAt } }
        storeCommittableOffsets()
        consumer.close()
        if let deadLetter {
            do { try deadLetter.flush(timeout: .seconds(10)) } catch {
                logger.error("dead-letter topic not fully flushed: \(error)")
            }
        }
        return outcome
    }

    /// One poll: decode, count, hand on, store offsets. Exposed for tests that drive the loop by hand.
    public func pollOnce(timeout: Duration) {
        batch.removeAll()
        messages.removeAll(keepingCapacity: true)
        var counts = IngestMetrics.Counts()
        // Near the buffer limit, take only what fits: resident bytes run about twice the wire bytes.
        var pollSize = maxMessagesPerPoll
        if averageMessageBytes > 0 {
            pollSize = max(16, min(pollSize, maxBytesPerPoll / averageMessageBytes))
            if let headroom = sink.headroom { pollSize = max(16, min(pollSize, headroom / (2 * averageMessageBytes))) }
        } else if maxBytesPerPoll != .max {
            pollSize = min(pollSize, 64)
        }
        var polledBytes = 0
        consumer.poll(maxMessages: pollSize, timeout: timeout) { message in
            polledBytes += message.payload.count
            if firstMessageAt == nil { firstMessageAt = .now }
            counts.messagesReceived += 1
            counts.bytesReceived += message.payload.count
            do throws(OTLPDecodeError) {
                let outcome = try decoder.decode(message.payload, into: &batch)
                counts.spansReceived += outcome.spans.count
                messages.append(IngestedMessage(partition: message.topicPartition, offset: message.offset, spans: outcome.spans))
                if outcome.rejectedSpans > 0, let first = outcome.firstSpanRejection {
                    counts.spansRejected[first.reason, default: 0] += outcome.rejectedSpans
                    throttle.log(
                        logger, level: .warning, key: "span-\(first.reason.rawValue)",
                        "refused \(outcome.rejectedSpans) span(s) of \(message.topic)[\(message.partition)]@\(message.offset): \(first)",
                        metadata: ["topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)"])
                }
            } catch {
                // Refused whole: counted, logged, optionally set aside; its offset still advances so the
                // partition never stalls behind it.
                counts.messagesRejected[error.reason, default: 0] += 1
                messages.append(IngestedMessage(partition: message.topicPartition, offset: message.offset, spans: 0..<0))
                throttle.log(
                    logger, level: .warning, key: "message-\(error.reason.rawValue)",
                    "refused message \(message.topic)[\(message.partition)]@\(message.offset) (\(message.payload.count) bytes): \(error)",
                    metadata: ["topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)"])
                if let deadLetter {
                    do {
                        try deadLetter.send(key: message.key, payload: message.payload, source: message.topicPartition, offset: message.offset, error: error)
                        counts.messagesDeadLettered += 1
                    } catch {
                        counts.deadLetterFailures += 1
                        throttle.log(logger, level: .error, key: "dead-letter", "could not copy a refused message to \(deadLetter.topic): \(error)")
                    }
                }
            }
        }
        metrics.add(counts)
        if counts.messagesReceived > 0 {
            let average = polledBytes / counts.messagesReceived
            averageMessageBytes = averageMessageBytes == 0 ? average : (averageMessageBytes * 7 + average) / 8
        }
        if !messages.isEmpty {
            sink.ingest(batch, messages: messages)
            handedOver += 1
            let seeks = sink.takeSeeks()
            if !seeks.isEmpty { consumer.seek(seeks) }
            // The sink holds the batch until its shards are through with it. Decode the next poll into
            // the oldest batch the sink has let go of, so its buffers are reused in place: fresh
            // buffers for every poll cost page faults, zeroing and regrowth per byte, and emptying a
            // batch a shard still holds allocates anew (copy on write). A sink that does not say
            // what it let go of gets the batch of four polls ago.
            retired.append((handedOver, batch))
            let released = sink.batchesReleased
            let reusable = released.map { released in retired.firstIndex { $0.sequence <= released } }
                ?? (retired.count > 3 ? 0 : nil)
            // A batch grown by an outsized poll (a burst of large messages) is let go, not kept.
            if let reusable, retired[reusable].batch.selection == sink.attributeSelection,
                maxBytesPerPoll == .max || retired[reusable].batch.bytes.capacity <= 2 * max(maxBytesPerPoll, 1 << 20)
            {
                batch = retired.remove(at: reusable).batch
            } else {
                if let reusable { retired.remove(at: reusable) }
                batch = SpanBatch(
                    selection: sink.attributeSelection, reservingBytes: batch.bytes.count, spans: batch.spans.count)
            }
            // Bounded: batches still held by the sink are its memory, not ours to keep twice.
            if retired.count > 8 { retired.removeFirst() }
        } else if batch.selection != sink.attributeSelection {
            batch = SpanBatch(selection: sink.attributeSelection)
            retired.removeAll()
        }
        storeCommittableOffsets()
    }

    private var lastStored: [TopicPartition: Int64] = [:]
    /// Batches handed to the sink, oldest first, with their number, for reuse (see ``pollOnce(timeout:)``).
    private var retired: [(sequence: UInt64, batch: SpanBatch)] = []
    /// Batches handed to the sink so far.
    private var handedOver: UInt64 = 0

    private func storeCommittableOffsets() {
        let offsets = sink.committableOffsets().filter { lastStored[$0.key] != $0.value }
        guard !offsets.isEmpty else { return }
        consumer.storeOffsets(offsets)
        lastStored.merge(offsets) { $1 }
    }

    private func applyPause() {
        let wantPaused = pauseRequested.load(ordering: .relaxed)
        let assignment = consumer.assignment
        let target: Set<TopicPartition> = wantPaused ? assignment : []
        guard target != pausedApplied.intersection(assignment) || pausedApplied.subtracting(assignment).count > 0 else { return }
        do {
            let toPause = target.subtracting(pausedApplied)
            let toResume = pausedApplied.intersection(assignment).subtracting(target)
            try consumer.pause(Array(toPause))
            try consumer.resume(Array(toResume))
            pausedApplied = target
            metrics.record(paused: target.count)
            if !toPause.isEmpty || !toResume.isEmpty {
                logger.info(wantPaused ? "paused consumption (backpressure)" : "resumed consumption", metadata: ["partitions": "\(wantPaused ? toPause.count : toResume.count)"])
            }
        } catch {
            throttle.log(logger, level: .warning, key: "pause", "pause/resume failed: \(error)")
        }
    }
}

/// Connects consumer group events to the sink and metrics; set up before the consumer exists.
final class RebalanceRelay: @unchecked Sendable {
    let sink: any IngestSink
    let metrics: IngestMetrics
    weak var consumer: KafkaConsumer?
    private let fatalState = Mutex<KafkaError?>(nil)
    private let partitionCounts = Mutex<[String: Int]>([:])

    init(sink: any IngestSink, metrics: IngestMetrics) {
        self.sink = sink
        self.metrics = metrics
    }

    func assigned(_ partitions: [TopicPartition]) {
        // Where consumption starts: the ledger then sees a message skipped even at the start.
        sink.assigned(partitions, committed: consumer?.committedOffsets(partitions) ?? [:])
        metrics.record(assigned: partitions)
        // The topics' partition counts, once each: this member's share of the group (throughput goals).
        for topic in Set(partitions.map(\.topic)) where partitionCounts.withLock({ $0[topic] }) == nil {
            if let count = consumer?.partitionCount(of: topic) { partitionCounts.withLock { $0[topic] = count } }
        }
        sink.ownership(owned: metrics.partitionsAssigned, total: partitionCounts.withLock { $0.values.reduce(0, +) })
    }

    func revoked(_ partitions: [TopicPartition]) {
        let safe = sink.revoke(partitions)
        consumer?.storeOffsets(safe)
        metrics.record(revoked: partitions)
        sink.ownership(owned: metrics.partitionsAssigned, total: partitionCounts.withLock { $0.values.reduce(0, +) })
    }

    func fatal(_ error: KafkaError) { fatalState.withLock { $0 = error } }

    var fatalError: KafkaError? { fatalState.withLock { $0 } }
}
