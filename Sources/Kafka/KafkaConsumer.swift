internal import Crdkafka
import Foundation
public import Logging
import Synchronization

/// How to join the consumer group.
public struct KafkaConsumerConfiguration: Sendable {
    public var bootstrapServers: String
    public var groupID: String
    public var topics: [String]
    /// Extra librdkafka properties (TLS, SASL, timeouts, …); they override the defaults below, except
    /// `enable.auto.offset.store`, which must stay false for at-least-once delivery.
    public var properties: KafkaProperties
    /// How often librdkafka reports statistics (consumer lag); nil turns them off.
    public var statisticsInterval: Duration?
    /// Report when a partition has no more messages (for `--exit-on-eof`).
    public var reportPartitionEOF: Bool

    public init(
        bootstrapServers: String, groupID: String = "tailgate", topics: [String] = ["otlp_spans"],
        properties: KafkaProperties = KafkaProperties(), statisticsInterval: Duration? = .seconds(5),
        reportPartitionEOF: Bool = false
    ) {
        self.bootstrapServers = bootstrapServers
        self.groupID = groupID
        self.topics = topics
        self.properties = properties
        self.statisticsInterval = statisticsInterval
        self.reportPartitionEOF = reportPartitionEOF
    }

    /// The bytes librdkafka prefetches at most (`queued.max.messages.kbytes`, as it will be set).
    public var prefetchLimitBytes: Int? {
        effectiveProperties.values["queued.max.messages.kbytes"].flatMap { Int($0) }.map { $0 * 1024 }
    }

    /// The properties handed to librdkafka: our defaults, then the user's, then what correctness needs.
    public var effectiveProperties: KafkaProperties {
        var result = KafkaProperties([
            "bootstrap.servers": bootstrapServers,
            "group.id": groupID,
            "client.id": "tailgate",
            // A new group starts at the oldest retained spans: Kafka is the buffer, nothing is skipped.
            "auto.offset.reset": "earliest",
            // Offsets are committed in the background, but only those stored explicitly — which the
            // engine does once what precedes them is decided and acknowledged.
            "enable.auto.commit": "true",
            "auto.commit.interval.ms": "1000",
            "enable.partition.eof": reportPartitionEOF ? "true" : "false",
            // Large fetches amortise the per-request cost; spans arrive in bulk.
            "fetch.wait.max.ms": "100",
            // librdkafka 2.0 stops fetching at this size and looks again up to a second later, so a
            // queue much smaller than a second of reading runs dry while the reader catches up (the
            // router read the 768 k-span route benchmark at 563–584 k spans/s with 128 MiB, 669–722 k
            // with 256 MiB; the engine sizes its own from its buffer limit).
            "queued.max.messages.kbytes": "262144",
        ])
        if let statisticsInterval {
            result["statistics.interval.ms"] = String(max(statisticsInterval.components.seconds * 1000, 100))
        }
        for (key, value) in properties.values { result[key] = value }
        result["enable.auto.offset.store"] = "false"
        return result
    }
}

/// One assignment of one partition to this member. A partition assigned again — after a revoke, or
/// at every rebalance under the eager protocol — gets a new id, so that what was fetched under the old
/// assignment can be told from what is fetched under the new one (see ``KafkaMessage/assignment``).
public struct PartitionAssignment: Hashable, Sendable, CustomStringConvertible {
    public var partition: TopicPartition
    /// Unique within this consumer, never 0.
    public var id: UInt32

    public init(_ partition: TopicPartition, id: UInt32) {
        self.partition = partition
        self.id = id
    }

    public var description: String { "\(partition)#\(id)" }
}

/// What the consumer tells its owner about the group and the cluster. Called on the polling thread
/// (inside ``KafkaConsumer/poll(maxMessages:timeout:_:)`` or ``KafkaConsumer/close()``).
public struct KafkaConsumerEvents: Sendable {
    /// Partitions this member now owns (consumption starts at their committed offsets).
    public var assigned: @Sendable ([PartitionAssignment]) -> Void
    /// Partitions this member is losing in an orderly rebalance: store the offsets of what is safely
    /// handled *now*; they are committed before the partitions go to another member.
    public var revoked: @Sendable ([PartitionAssignment]) -> Void
    /// Partitions this member has already lost (its session timed out, or it was fenced): another
    /// member may own them now, so nothing may be committed or decided for them any more.
    public var lost: @Sendable ([PartitionAssignment]) -> Void
    /// Fresh statistics (consumer lag).
    public var statistics: @Sendable (ConsumerStatistics) -> Void
    /// An unrecoverable client error (e.g. fenced, authentication failed for good).
    public var fatal: @Sendable (KafkaError) -> Void

    public init(
        assigned: @escaping @Sendable ([PartitionAssignment]) -> Void = { _ in },
        revoked: @escaping @Sendable ([PartitionAssignment]) -> Void = { _ in },
        lost: @escaping @Sendable ([PartitionAssignment]) -> Void = { _ in },
        statistics: @escaping @Sendable (ConsumerStatistics) -> Void = { _ in },
        fatal: @escaping @Sendable (KafkaError) -> Void = { _ in }
    ) {
        self.assigned = assigned
        self.revoked = revoked
        self.lost = lost
        self.statistics = statistics
        self.fatal = fatal
    }
}

/// One message of a polled batch. Its key and payload point into librdkafka's buffer and are valid
/// only inside the closure that receives it: decode in place, copy what must outlive it.
public struct KafkaMessage: ~Copyable {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let key: UnsafeRawBufferPointer?
    public let payload: UnsafeRawBufferPointer
    /// The assignment this message was fetched under (``PartitionAssignment/id``); 0 when its
    /// partition was not assigned. librdkafka 2.0's batch consume can hand out messages it collected
    /// before a rebalance callback that ran inside the same poll: those carry the revoked assignment's
    /// id, not the current one, and must be neither processed nor committed.
    public let assignment: UInt32

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }
}

/// What one poll returned besides messages.
public struct PollSummary: Sendable {
    public var messages = 0
    /// Errors attached to messages (not partition EOF); already logged, rate-limited.
    public var errors: [KafkaError] = []
}

/// A consumer-group member over librdkafka.
///
/// Messages are taken in batches from the consumer queue (`rd_kafka_consume_batch_queue`) and handed
/// out in place, not copied one by one. Offsets are stored only through ``storeOffsets(_:)``.
/// Poll from one thread; ``pause(_:)``, ``resume(_:)`` and ``storeOffsets(_:)`` may be called from any.
public final class KafkaConsumer: @unchecked Sendable {
    // Destruction order matters: `deinit` destroys the handle (which may still call back into the
    // context) before `context` is released.
    private let handle: OpaquePointer
    private let queue: OpaquePointer
    private let context: ConsumerContext
    private let unmanagedContext: Unmanaged<ConsumerContext>
    private let batchBuffer: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>
    private let batchCapacity: Int
    private var topicNames: [OpaquePointer: String] = [:]
    private let closed = Atomic<Bool>(false)
    public let configuration: KafkaConsumerConfiguration

    public init(
        configuration: KafkaConsumerConfiguration, events: KafkaConsumerEvents = KafkaConsumerEvents(),
        logger: Logger, maxBatch: Int = 4096
    ) throws(KafkaError) {
        self.configuration = configuration
        let conf = try configuration.effectiveProperties.makeConf()
        context = ConsumerContext(events: events, logger: logger)
        unmanagedContext = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, unmanagedContext.toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf, consumerRebalanceCallback)
        rd_kafka_conf_set_error_cb(conf, clientErrorCallback)
        rd_kafka_conf_set_log_cb(conf, clientLogCallback)
        if configuration.statisticsInterval != nil {
            rd_kafka_conf_set_stats_cb(conf, consumerStatisticsCallback)
        }
        let created: OpaquePointer
        do {
            created = try makeHandle(RD_KAFKA_CONSUMER, conf)
        } catch {
            unmanagedContext.release()
            throw error
        }
        handle = created
        // Route the main queue (errors, statistics, logs) to the consumer queue so one poll serves all.
        rd_kafka_poll_set_consumer(handle)
        queue = rd_kafka_queue_get_consumer(handle)
        batchCapacity = max(1, maxBatch)
        batchBuffer = .allocate(capacity: batchCapacity)

        // No topics: a consumer that never joins the group (it reads the group's committed offsets).
        guard !configuration.topics.isEmpty else { return }
        let topics = PartitionList.make(configuration.topics.map { (TopicPartition($0, RD_KAFKA_PARTITION_UA), nil) })
        defer { rd_kafka_topic_partition_list_destroy(topics) }
        let error = rd_kafka_subscribe(handle, topics)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Every stored property is set: throwing runs `deinit`, which destroys the handle, the
            // queue and the buffer and releases the context (doing it here too destroyed them twice).
            throw KafkaError(error, "subscribe to \(configuration.topics.joined(separator: ","))")
        }
    }

    deinit {
        close()
        rd_kafka_queue_destroy(queue)
        rd_kafka_destroy(handle)
        unmanagedContext.release()
        batchBuffer.deallocate()
    }

    /// Takes up to `maxMessages` messages — waiting at most `timeout` for the first, then at most
    /// `linger` for more — and hands each to `body` in place. Group callbacks (assign, revoke,
    /// statistics) run inside this call.
    ///
    /// Two waits because `rd_kafka_consume_batch_queue` returns only when the batch is full or its
    /// wait is over: one wait of `timeout` held every partial batch (the end of a topic, a quiet
    /// minute) for the whole of it.
    @discardableResult
    public func poll(
        maxMessages: Int = .max, timeout: Duration, linger: Duration = .milliseconds(5), _ body: (borrowing KafkaMessage) -> Void
    ) -> PollSummary {
        var summary = PollSummary()
        guard !closed.load(ordering: .relaxed) else { return summary }
        let capacity = min(maxMessages, batchCapacity)
        // librdkafka fills the array in order and serves rebalance callbacks between messages; an
        // emptied array lets the callback count what was collected before it ran.
        batchBuffer.update(repeating: nil, count: capacity)
        context.state.withLock { state in
            state.polling = (batchBuffer, capacity)
            state.revokedDuringPoll.removeAll(keepingCapacity: true)
        }
        var count = rd_kafka_consume_batch_queue(queue, milliseconds(timeout), batchBuffer, 1)
        if count == 1 && capacity > 1 {
            // Filled in place after the first: the rebalance callback counts from the start.
            let more = rd_kafka_consume_batch_queue(queue, milliseconds(linger), batchBuffer + 1, capacity - 1)
            if more > 0 { count += more }
        }
        let (current, revokedDuringPoll) = context.state.withLock { state in
            state.polling = nil
            return (state.assigned, state.revokedDuringPoll)
        }
        guard count > 0 else { return summary }
        var reachedEnd: [TopicPartition] = []
        var delivered: Set<TopicPartition> = []
        let trackEnd = configuration.reportPartitionEOF
        // A batch holds runs of messages of one partition: its assignment is looked up once per run.
        // Its topic's name too, and whether it was noted as delivered: per run, not per message.
        var run: (topic: OpaquePointer?, partition: Int32, assignment: UInt32, name: String)?
        for index in 0..<count {
            guard let message = batchBuffer[index] else { continue }
            defer { rd_kafka_message_destroy(message) }
            let m = message.pointee
            let sameRun = run.map { $0.topic == m.rkt && $0.partition == m.partition } ?? false
            let topic = sameRun ? run!.name : topicName(m.rkt)
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    reachedEnd.append(TopicPartition(topic, m.partition))
                } else {
                    let error = KafkaError(m.err, "consume \(topic)[\(m.partition)]")
                    summary.errors.append(error)
                    context.throttle.log(context.logger, level: .warning, key: "consume-\(error.code)", "Kafka consumer error: \(error)")
                }
                continue
            }
            let key = m.key.map { UnsafeRawBufferPointer(start: $0, count: m.key_len) }
            let payload = UnsafeRawBufferPointer(start: m.payload, count: m.payload == nil ? 0 : m.len)
            var assignment: UInt32
            if sameRun {
                assignment = run!.assignment
            } else {
                assignment = current[TopicPartition(topic, m.partition)] ?? 0
                run = (m.rkt, m.partition, assignment, topic)
                if trackEnd { delivered.insert(TopicPartition(topic, m.partition)) }
            }
            // Collected before a callback revoked its partition: it belongs to the revoked assignment.
            if !revokedDuringPoll.isEmpty,
                let revoke = revokedDuringPoll.first(where: { $0.collected > index && $0.assignment.partition == TopicPartition(topic, m.partition) })
            {
                assignment = revoke.assignment.id
            }
            body(KafkaMessage(topic: topic, partition: m.partition, offset: m.offset, key: key, payload: payload, assignment: assignment))
            summary.messages += 1
        }
        if trackEnd && (!reachedEnd.isEmpty || !delivered.isEmpty) {
            context.state.withLock { state in
                state.atEnd.subtract(delivered)
                state.atEnd.formUnion(reachedEnd)
            }
        }
        return summary
    }

    private func topicName(_ topic: OpaquePointer?) -> String {
        guard let topic else { return "" }
        if let name = topicNames[topic] { return name }
        let name = String(cString: rd_kafka_topic_name(topic))
        topicNames[topic] = name
        return name
    }

    /// Records `nextOffset` (the offset of the first message *not* yet safely handled) per partition;
    /// librdkafka commits stored offsets in the background and on revoke/close. Offsets of partitions
    /// no longer assigned are ignored (their new owner replays from the last commit).
    public func storeOffsets(_ nextOffsets: [TopicPartition: Int64]) {
        guard !nextOffsets.isEmpty else { return }
        let list = PartitionList.make(nextOffsets.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let error = rd_kafka_offsets_store(handle, list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR && error != RD_KAFKA_RESP_ERR__STATE {
            context.throttle.log(context.logger, level: .warning, key: "store", "storing offsets failed: \(KafkaError(error, "offsets store"))")
        }
    }

    /// The group's committed offsets of `partitions` (a broker round trip, at most `timeout`); partitions
    /// without one (consumption starts per `auto.offset.reset`) are absent.
    public func committedOffsets(_ partitions: [TopicPartition], timeout: Duration = .seconds(5)) -> [TopicPartition: Int64] {
        guard !partitions.isEmpty else { return [:] }
        let list = PartitionList.make(partitions.map { ($0, nil) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard rd_kafka_committed(handle, list, milliseconds(timeout)) == RD_KAFKA_RESP_ERR_NO_ERROR, let elements = list.pointee.elems else {
            return [:]
        }
        var result: [TopicPartition: Int64] = [:]
        for i in 0..<Int(list.pointee.cnt) where elements[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && elements[i].offset >= 0 {
            result[TopicPartition(String(cString: elements[i].topic), elements[i].partition)] = elements[i].offset
        }
        return result
    }

    /// Reads `partitions` again from the given offsets (asynchronously: messages fetched before are
    /// discarded, the next ones come from there).
    public func seek(_ partitions: [TopicPartition: Int64]) {
        guard !partitions.isEmpty else { return }
        let list = PartitionList.make(partitions.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let failure = rd_kafka_seek_partitions(handle, list, 0) {
            context.throttle.log(context.logger, level: .warning, key: "seek", "seek failed: \(KafkaError(consuming: failure, "seek"))")
            return
        }
        // A partition sent back is no longer at its end: librdkafka reports the end again once it gets
        // there (a seek resets its end-of-partition mark). Kept, the stale mark let a router that had
        // just rewound a refused batch stop at "end of input" before reading it again.
        // Asynchronous (no wait): each partition reads "in progress" unless it was refused at once.
        let failed = Set(PartitionList.errors(list).filter { $0.1.code != RD_KAFKA_RESP_ERR__IN_PROGRESS.rawValue }.map(\.0))
        context.state.withLock { state in
            state.atEnd.subtract(partitions.keys.filter { !failed.contains($0) })
        }
    }

    /// Commits the stored offsets now and waits for the broker's answer.
    public func commit() throws(KafkaError) {
        let error = rd_kafka_commit(handle, nil, 0)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR && error != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(error, "commit offsets")
        }
    }

    /// How many partitions `topic` has (a metadata request, at most `timeout`); nil when unknown.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(5)) -> Int? {
        topicPartitionCount(handle, topic, timeout)
    }

    /// The group's generation and member id, for a transactional producer's offsets (caller destroys).
    func groupMetadata() -> OpaquePointer? { rd_kafka_consumer_group_metadata(handle) }

    /// Stops fetching from `partitions` (backpressure); already fetched messages may still arrive.
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        try pauseOrResume(partitions, pause: true)
    }

    /// Resumes fetching from `partitions`.
    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        try pauseOrResume(partitions, pause: false)
    }

    private func pauseOrResume(_ partitions: [TopicPartition], pause: Bool) throws(KafkaError) {
        guard !partitions.isEmpty else { return }
        let list = PartitionList.make(partitions.map { ($0, nil) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let error = pause ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(error, pause ? "pause" : "resume") }
        if let (partition, failure) = PartitionList.errors(list).first {
            throw KafkaError(code: failure.code, name: failure.name, message: "\(pause ? "pause" : "resume") \(partition): \(failure.message)")
        }
    }

    /// The partitions this member owns, as of the last rebalance.
    public var assignment: Set<TopicPartition> { context.state.withLock { Set($0.assigned.keys) } }

    /// True when partitions are assigned and every one of them reported its end (requires
    /// `reportPartitionEOF`); a message arriving later clears its partition's mark.
    public var isAtEndOfAllPartitions: Bool {
        context.state.withLock { state in !state.assigned.isEmpty && state.assigned.keys.allSatisfy { state.atEnd.contains($0) } }
    }

    /// Leaves the group: revokes (the `revoked` event runs, stored offsets are committed), then stops.
    /// Blocks; call from the polling thread, not from a Swift concurrency task.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let error = rd_kafka_consumer_close(handle)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            context.logger.warning("closing the Kafka consumer: \(KafkaError(error, "consumer close"))")
        }
    }
}

/// State the C callbacks reach through librdkafka's opaque pointer.
final class ConsumerContext: @unchecked Sendable {
    struct State {
        /// Each assigned partition's current assignment id.
        var assigned: [TopicPartition: UInt32] = [:]
        var atEnd: Set<TopicPartition> = []
        var nextAssignment: UInt32 = 1
        /// While a poll runs: its message array (what librdkafka has collected so far is its non-nil
        /// prefix) and the assignments revoked inside it, each with how many messages preceded it.
        var polling: (buffer: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>, capacity: Int)?
        var revokedDuringPoll: [(collected: Int, assignment: PartitionAssignment)] = []
        /// The rebalance protocol librdkafka last named (nil before the first rebalance).
        var cooperative: Bool?

        /// Messages librdkafka has put in the poll's array so far (0 outside a poll).
        var collected: Int {
            guard let polling else { return 0 }
            var count = 0
            while count < polling.capacity && polling.buffer[count] != nil { count += 1 }
            return count
        }
    }

    let events: KafkaConsumerEvents
    let logger: Logger
    let throttle = LogThrottle(interval: .seconds(10))
    let state = Mutex(State())

    init(events: KafkaConsumerEvents, logger: Logger) {
        self.events = events
        self.logger = logger
    }
}

private func consumerRebalanceCallback(
    _ handle: OpaquePointer?, _ error: rd_kafka_resp_err_t,
    _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, _ opaque: UnsafeMutableRawPointer?
) {
    guard let handle, let opaque else { return }
    let context = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
    // librdkafka answers NULL when the group is being torn down — the revoke inside
    // rd_kafka_consumer_close at a graceful leave can see that (unwrapping it trapped, signal 4, in the
    // rebalance-storm test): the protocol seen at the last rebalance answers then.
    let named: UnsafePointer<CChar>? = rd_kafka_rebalance_protocol(handle)
    let cooperative = context.state.withLock { state in
        if let named { state.cooperative = String(cString: named) == "COOPERATIVE" }
        return state.cooperative ?? false
    }
    let changed = PartitionList.partitions(partitions)
    switch error {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        let assignments = context.state.withLock { state in
            if !cooperative { state.assigned = [:] }
            state.atEnd.subtract(changed)
            return changed.map { partition in
                let assignment = PartitionAssignment(partition, id: state.nextAssignment)
                state.nextAssignment = state.nextAssignment == .max ? 1 : state.nextAssignment + 1
                state.assigned[partition] = assignment.id
                return assignment
            }
        }
        context.logger.info("partitions assigned", metadata: ["partitions": "\(changed.sorted().map(\.description).joined(separator: ","))"])
        context.events.assigned(assignments)
        if cooperative {
            if let failure = rd_kafka_incremental_assign(handle, partitions) {
                context.logger.error("incremental assign failed: \(KafkaError(consuming: failure, "assign"))")
            }
        } else {
            let result = rd_kafka_assign(handle, partitions)
            if result != RD_KAFKA_RESP_ERR_NO_ERROR {
                context.logger.error("assign failed: \(KafkaError(result, "assign"))")
            }
        }
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        // A lost assignment (the session timed out, the member was fenced) is not a hand-over: another
        // member may already own the partitions, so nothing is decided or committed for them here.
        let lost = rd_kafka_assignment_lost(handle) != 0
        let assignments = context.state.withLock { state in
            let collected = state.collected
            var revoked: [PartitionAssignment] = []
            for partition in changed {
                guard let id = state.assigned.removeValue(forKey: partition) else { continue }
                let assignment = PartitionAssignment(partition, id: id)
                revoked.append(assignment)
                if state.polling != nil { state.revokedDuringPoll.append((collected, assignment)) }
            }
            state.atEnd.subtract(changed)
            if !cooperative {
                for (partition, id) in state.assigned {
                    let assignment = PartitionAssignment(partition, id: id)
                    revoked.append(assignment)
                    if state.polling != nil { state.revokedDuringPoll.append((collected, assignment)) }
                }
                state.assigned = [:]
            }
            return revoked
        }
        if lost {
            context.logger.warning("partitions lost (session timed out or fenced); their uncommitted work is replayed by their new owner",
                                   metadata: ["partitions": "\(changed.sorted().map(\.description).joined(separator: ","))"])
            context.events.lost(assignments)
        } else {
            context.logger.info("partitions revoked", metadata: ["partitions": "\(changed.sorted().map(\.description).joined(separator: ","))"])
            context.events.revoked(assignments)
            // Commit what the owner stored before the partitions move, so the next owner replays little.
            let commit = rd_kafka_commit(handle, nil, 0)
            if commit != RD_KAFKA_RESP_ERR_NO_ERROR && commit != RD_KAFKA_RESP_ERR__NO_OFFSET {
                context.logger.warning("commit on revoke failed: \(KafkaError(commit, "commit"))")
            }
        }
        if cooperative {
            if let failure = rd_kafka_incremental_unassign(handle, partitions) {
                context.logger.error("incremental unassign failed: \(KafkaError(consuming: failure, "unassign"))")
            }
        } else {
            _ = rd_kafka_assign(handle, nil)
        }
    default:
        context.logger.error("rebalance error: \(KafkaError(error, "rebalance"))")
        let lost = context.state.withLock { state in
            let lost = state.assigned.map { PartitionAssignment($0.key, id: $0.value) }
            state.assigned = [:]
            state.atEnd = []
            return lost
        }
        if !lost.isEmpty { context.events.lost(lost) }
        _ = rd_kafka_assign(handle, nil)
    }
}

private func consumerStatisticsCallback(
    _ handle: OpaquePointer?, _ json: UnsafeMutablePointer<CChar>?, _ length: Int, _ opaque: UnsafeMutableRawPointer?
) -> Int32 {
    guard let json, let opaque else { return 0 }
    let context = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
    if let statistics = ConsumerStatistics(json: UnsafeRawBufferPointer(start: json, count: length)) {
        context.events.statistics(statistics)
    }
    return 0  // librdkafka frees the JSON
}

/// Errors that are not tied to a message: brokers down, authentication, DNS. librdkafka retries
/// on its own; we log at most once per 10 s per kind, and report fatal errors.
private func clientErrorCallback(_ handle: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let opaque else { return }
    let context = Unmanaged<AnyObject>.fromOpaque(opaque).takeUnretainedValue() as? any ClientCallbackContext
    guard let context else { return }
    let reasonText = reason.map { String(cString: $0) } ?? ""
    let error = rd_kafka_resp_err_t(rawValue: code)
    let name = String(cString: rd_kafka_err2name(error))
    if error == RD_KAFKA_RESP_ERR__FATAL, let handle {
        var text = [CChar](repeating: 0, count: 512)
        let fatalCode = rd_kafka_fatal_error(handle, &text, text.count)
        let fatal = KafkaError(fatalCode, String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        context.logger.critical("Kafka fatal error: \(fatal)")
        context.reportFatal(fatal)
        return
    }
    let advice = error == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || error == RD_KAFKA_RESP_ERR__TRANSPORT
        ? " (retrying; check --brokers and network reachability)"
        : error == RD_KAFKA_RESP_ERR__AUTHENTICATION ? " (check sasl.* / ssl.* properties)" : ""
    context.throttle.log(context.logger, level: .warning, key: "error-\(code)", "Kafka \(name): \(reasonText)\(advice)")
}

private func clientLogCallback(_ handle: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?, _ text: UnsafePointer<CChar>?) {
    guard let handle, let opaque = rd_kafka_opaque(handle) else { return }
    guard let context = Unmanaged<AnyObject>.fromOpaque(opaque).takeUnretainedValue() as? any ClientCallbackContext else { return }
    let facilityText = facility.map { String(cString: $0) } ?? ""
    let message = text.map { String(cString: $0) } ?? ""
    // syslog levels: 0-3 error, 4 warning, 5-6 info/notice, 7 debug.
    let swiftLevel: Logger.Level = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
    context.throttle.log(context.logger, level: swiftLevel, key: "log-\(facilityText)", "librdkafka \(facilityText): \(message)")
}

/// What the shared error and log callbacks need from a consumer or producer context.
protocol ClientCallbackContext: AnyObject {
    var logger: Logger { get }
    var throttle: LogThrottle { get }
    func reportFatal(_ error: KafkaError)
}

extension ConsumerContext: ClientCallbackContext {
    func reportFatal(_ error: KafkaError) { events.fatal(error) }
}
