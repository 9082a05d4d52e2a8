public import Ingest
public import Kafka
public import Logging
public import OTLP
import Synchronization

/// What takes decoded batches from the ingest loop and says which offsets may be committed, by lane
/// (one assignment of one partition: see ``Lane``). Called on the polling thread; the
/// ``RebalanceListener`` calls (lanes assigned, revoked, lost) arrive there too, inside a poll.
public protocol IngestSink: RebalanceListener {
    /// The attribute keys the decoder must extract (a rule reload may add keys).
    var attributeSelection: AttributeSelection { get }
    /// Takes the spans of one poll. The batch is the sink's to keep; the loop decodes into a new one.
    func ingest(_ batch: SpanBatch, messages: [IngestedMessage])
    /// Per lane, the next offset whose predecessors are all safely handled; stored for commit after
    /// every poll. Lanes absent are not advanced.
    func committableOffsets() -> [Lane: Int64]
    /// The loop is stopping: decide and hand on everything buffered, so that
    /// ``committableOffsets()`` covers all that was consumed.
    func drain()
    /// Bytes the sink can still take before its buffer limit (nil: no limit). The loop takes smaller
    /// polls as it shrinks, so a pause lands close to the limit instead of one full poll past it.
    var headroom: Int? { get }
    /// Lanes to read again from an offset (messages the consumer skipped), asked once after each
    /// ``ingest(_:messages:)``.
    func takeSeeks() -> [Lane: Int64]
    /// How many of the batches handed to ``ingest(_:messages:)`` (counted from 1) the sink has let go
    /// of: the loop decodes into those again, in place. nil: unknown (the loop keeps four back).
    var batchesReleased: UInt64? { get }
    /// Consumption of some partitions resumed after a pause (on the polling thread).
    func consumptionResumed()
}

extension IngestSink {
    public var batchesReleased: UInt64? { nil }
    public func consumptionResumed() {}
    public var headroom: Int? { nil }
    public func takeSeeks() -> [Lane: Int64] { [:] }
}

/// Acknowledges each message as soon as it is decoded: for ingest-only runs, and the reference
/// against which the sampling stage is measured.
public final class AcknowledgeOnDecode: IngestSink {
    private let spans = Atomic<Int>(0)
    private let traces = Mutex<Set<TraceID>>([])
    private let next = Mutex<[Lane: Int64]>([:])
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
            for message in messages { next[message.lane] = max(next[message.lane] ?? 0, message.offset + 1) }
        }
    }

    public func committableOffsets() -> [Lane: Int64] { next.withLock { $0 } }
    public func assigned(_ lanes: [Lane: TopicPartition], committed: [Lane: Int64]) {}
    public func revoked(_ lanes: [Lane]) -> [Lane: Int64] {
        next.withLock { next in
            var result: [Lane: Int64] = [:]
            for lane in lanes { result[lane] = next.removeValue(forKey: lane) }
            return result
        }
    }
    public func lost(_ lanes: [Lane]) {
        next.withLock { next in for lane in lanes { next[lane] = nil } }
    }
    public func drain() {}

    public var spanCount: Int { spans.load(ordering: .relaxed) }
    public var distinctTraces: Int { traces.withLock { $0.count } }
}

/// `tailgate run`'s ingest loop: the ``IngestFront`` decodes each poll into a reused ``SpanBatch``,
/// the loop hands the batch to the sink, applies backpressure, and stores the offsets the sink says
/// are safe. Runs on one dedicated thread (``run()`` blocks).
public final class IngestLoop: @unchecked Sendable {
    public let front: IngestFront
    public var consumer: KafkaConsumer { front.consumer }
    public var metrics: IngestMetrics { front.metrics }
    private let decoder: SpanDecoder
    private let sink: any IngestSink
    private let logger: Logger
    private let throttle = LogThrottle(interval: .seconds(10))
    private let exitOnEOF: Bool
    private let stopRequested = Atomic<Bool>(false)
    private let pauseRequested = Atomic<Bool>(false)
    private var pausedApplied: Set<TopicPartition> = []
    private var batch: SpanBatch
    private var messages: [IngestedMessage] = []
    /// Messages taken per poll: large enough to amortise, small enough to keep latency low.
    public var maxMessagesPerPoll: Int {
        get { front.maxMessagesPerPoll }
        set { front.maxMessagesPerPoll = newValue }
    }
    /// Bytes of messages taken per poll (see ``IngestFront/maxBytesPerPoll``). Polled bytes are held
    /// in the batch being decoded and the batches kept for reuse, so this bounds them.
    public var maxBytesPerPoll: Int {
        get { front.maxBytesPerPoll }
        set { front.maxBytesPerPoll = newValue }
    }

    public init(
        consumer configuration: KafkaConsumerConfiguration, encoding: OTLPEncoding,
        sink: any IngestSink, deadLetter: DeadLetterTopic? = nil, metrics: IngestMetrics = IngestMetrics(),
        exitOnEOF: Bool = false, logger: Logger
    ) throws(KafkaError) {
        var configuration = configuration
        configuration.reportPartitionEOF = configuration.reportPartitionEOF || exitOnEOF
        front = try IngestFront(consumer: configuration, deadLetter: deadLetter, metrics: metrics, logger: logger)
        front.listener = sink
        decoder = SpanDecoder(encoding: encoding)
        self.sink = sink
        self.logger = logger
        self.exitOnEOF = exitOnEOF
        batch = SpanBatch(selection: sink.attributeSelection, reservingBytes: 1 << 20, spans: 4096)
        messages.reserveCapacity(front.maxMessagesPerPoll)
    }

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
            if let fatal = front.fatalError {
                outcome = .fatal(fatal)
                break
            }
            if exitOnEOF && front.isAtEndOfAllPartitions {
                outcome = .reachedEnd
                break
            }
        }
        // Decide what is buffered, then store what that frees; close commits it and leaves the group.
        sink.drain()
        if let firstMessageAt = front.firstMessageAt { processing.withLock { $0 = ContinuousClock.now - firstMessageAt } }
        storeCommittableOffsets()
        // Committed now, while this member still owns its partitions: the commit librdkafka makes
        // while closing can come after the member has begun leaving the group, be refused, and leave
        // the next owner to read again what was decided here (seen on the dev broker: the leaver's
        // partitions read again from their last background commit).
        do {
            try consumer.commit()
        } catch {
            logger.warning("final commit before leaving the group failed (the next owner reads the rest again): \(error)")
        }
        consumer.close()
        front.flushDeadLetters()
        return outcome
    }

    /// One poll: decode, count, hand on, store offsets. Exposed for tests that drive the loop by hand.
    public func pollOnce(timeout: Duration) {
        batch.removeAll()
        batch.reserve(recentShape)
        messages.removeAll(keepingCapacity: true)
        front.poll(timeout: timeout, headroom: sink.headroom, into: &messages) { (payload) throws(OTLPDecodeError) in
            try decoder.decode(payload, into: &batch)
        }
        if !messages.isEmpty {
            recentShape = batch.shape.union(recentShape.faded)
            sink.ingest(batch, messages: messages)
            handedOver += 1
            let seeks = sink.takeSeeks()
            if !seeks.isEmpty { front.seek(seeks) }
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
            let maxBytesPerPoll = front.maxBytesPerPoll
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

    private var lastStored: [Lane: Int64] = [:]
    /// The largest recent poll (fading): every batch is made that large before it decodes, so no
    /// poll grows its buffers by doubling — each growth a fresh allocation and a copy of all so far.
    private var recentShape = SpanBatch.Shape()
    /// Batches handed to the sink, oldest first, with their number, for reuse (see ``pollOnce(timeout:)``).
    private var retired: [(sequence: UInt64, batch: SpanBatch)] = []
    /// Batches handed to the sink so far.
    private var handedOver: UInt64 = 0

    private func storeCommittableOffsets() {
        let offsets = sink.committableOffsets().filter { lastStored[$0.key] != $0.value }
        guard !offsets.isEmpty else { return }
        front.storeOffsets(offsets)
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
            if !toResume.isEmpty { sink.consumptionResumed() }
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
