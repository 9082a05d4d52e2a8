import Foundation
public import HTTP
public import Ingest
public import Kafka
public import Logging
public import OTLP
public import SpanMetrics
import Synchronization

/// Everything `tailgate route` is told.
public struct RouterConfiguration: Sendable {
    public var brokers: String
    public var topics: [String] = ["otlp_spans"]
    public var group = "tailgate-route"
    public var encoding = OTLPEncoding.otlpProto
    /// The keyed topic: one `otlp_proto` message per trace (per batch), keyed by its hex trace id.
    public var outputTopic: String
    public var kafkaProperties = KafkaProperties()
    public var deadLetterTopic: String?
    public var delivery = RouterDelivery.auto
    /// The transactional producer's id: stable per replica (a restart fences its predecessor).
    public var transactionalID: String
    /// Messages taken per batch (one transaction, or one flush and commit).
    public var maxBatchMessages = 2_000
    /// Bytes of input per batch (at most), so a batch of large messages stays small in memory.
    public var maxBatchBytes = 32 << 20
    /// A trace's request above this leaves split by span (Kafka's default `max.message.bytes` is ~1 MB).
    public var maxMessageBytes = 1_000_000
    public var exitOnEOF = false
    public var httpAddress: String?
    public var statusInterval: Duration = .seconds(10)
    public var statisticsInterval: Duration = .seconds(5)

    public init(brokers: String, outputTopic: String) {
        self.brokers = brokers
        self.outputTopic = outputTopic
        transactionalID = "tailgate-route-\(ProcessInfo.processInfo.hostName)"
    }
}

/// How the router makes its output and its input offsets agree.
public enum RouterDelivery: String, Sendable, CaseIterable {
    /// Transactions when the cluster supports them, else at least once (logged).
    case auto
    /// Kafka transactions: each batch's messages and its input offsets commit together or not at all.
    case transactional
    /// Idempotent producer; a batch's input offsets are committed after all its messages are
    /// acknowledged (`acks=all`). A crash between the two re-sends the batch: duplicates, never loss.
    case atLeastOnce = "at-least-once"
}

/// What a route run did (printed as JSON at the end, like `run`'s summary).
public struct RouteSummary: Sendable, Codable, Equatable {
    public var outcome: String
    public var delivery: String
    public var messagesIn: Int
    public var bytesIn: Int
    public var spans: Int
    public var messagesRejected: [String: Int]
    public var spansRejected: [String: Int]
    public var deadLettered: Int
    public var tracesOut: Int
    public var messagesOut: Int
    public var bytesOut: Int
    public var transactionsCommitted: Int
    public var transactionsAborted: Int
    public var rewinds: Int
    public var processingSeconds: Double?
}

/// The router's own counters (beside the ingest metrics it shares with `run`).
public final class RouterMetrics: Sendable {
    public struct Counts: Sendable, Equatable {
        public var tracesOut = 0
        public var messagesOut = 0
        public var spansOut = 0
        public var bytesOut = 0
        public var produceErrors = 0
        public var oversizeSpans = 0
        public var transactionsCommitted = 0
        public var transactionsAborted = 0
        public var rewinds = 0
        public var batches = 0
    }

    private let counts = Mutex(Counts())
    let queue = Atomic<Int>(0)
    let transactional = Atomic<Bool>(false)
    /// The largest message the router produces now (see ``Router``'s output limit).
    let outputLimit = Atomic<Int>(0)
    let failing = Mutex<String?>(nil)

    public var snapshot: Counts { counts.withLock { $0 } }

    func update(_ body: (inout Counts) -> Void) { counts.withLock { body(&$0) } }

    func write(into out: inout MetricsWriter, ingest: IngestMetrics.Counts) {
        let totals = snapshot
        out.counter("tailgate_route_messages_in_total", "Kafka messages the router consumed (tailgate_messages_received_total counts the same).", ingest.messagesReceived)
        out.counter("tailgate_route_bytes_in_total", "Bytes of the messages the router consumed.", ingest.bytesReceived)
        out.counter("tailgate_route_traces_out_total", "Per-trace requests produced to the keyed topic (one per trace per batch).", totals.tracesOut)
        out.counter("tailgate_route_messages_out_total", "Messages produced to the keyed topic (more than traces when an oversize trace is split by span).", totals.messagesOut)
        out.counter("tailgate_route_spans_out_total", "Spans produced to the keyed topic.", totals.spansOut)
        out.counter("tailgate_route_bytes_out_total", "Bytes of the messages produced to the keyed topic.", totals.bytesOut)
        out.counter("tailgate_route_produce_errors_total", "Batches whose messages were not all acknowledged; the batch is read and sent again.", totals.produceErrors)
        out.counter("tailgate_route_oversize_spans_total", "Single spans larger than the output's message limit, sent to the dead-letter topic instead.", totals.oversizeSpans)
        out.family("tailgate_route_transactions_total", .counter, "Kafka transactions by outcome (transactional delivery only).")
        out.sample("tailgate_route_transactions_total", [("outcome", "committed")], totals.transactionsCommitted)
        out.sample("tailgate_route_transactions_total", [("outcome", "aborted")], totals.transactionsAborted)
        out.counter("tailgate_route_rewinds_total", "Times a batch's input was read again after its output failed.", totals.rewinds)
        out.gauge("tailgate_route_producer_queue_messages", "Messages waiting in the producer's queue.", queue.load(ordering: .relaxed))
        out.gauge("tailgate_route_transactional", "1 when batches commit as Kafka transactions (exactly once), 0 when at least once.", transactional.load(ordering: .relaxed) ? 1 : 0)
        out.gauge("tailgate_route_failing", "1 while the last batch could not be delivered.", failing.withLock { $0 } == nil ? 0 : 1)
        out.gauge("tailgate_route_output_limit_bytes", "The largest message the router produces: --max-message-bytes, lowered after the output topic refused a message as too large.", outputLimit.load(ordering: .relaxed))
    }
}

/// `tailgate route`: consumes OTLP of any shape, produces one message per trace keyed by trace id.
///
/// Work goes in batches (one poll): split per trace, produce, then commit the batch's input offsets
/// with it — inside a Kafka transaction (exactly once), or after every message is acknowledged (at
/// least once). At least once, the next batch is read and decoded while the previous one's messages
/// are being acknowledged, and produced once that one is committed. A batch that fails is read again
/// from its first offsets (with the batch read after it); nothing is dropped. While the producer's
/// queue is full the router stops reading (the consumer is not polled).
public final class Router: HTTPBackend, @unchecked Sendable {
    public let configuration: RouterConfiguration
    public let ingest = IngestMetrics()
    public let metrics = RouterMetrics()
    private let logger: Logger
    private let front: IngestFront
    private var consumer: KafkaConsumer { front.consumer }
    private var deadLetter: DeadLetterTopic? { front.deadLetter }
    private var producer: KafkaProducer
    private var transactional: Bool
    private var http: HTTPServer?
    private let stopRequested = Atomic<Bool>(false)
    private var splitter = TraceSplitter()
    private var polled: [IngestedMessage] = []
    private let throttle = LogThrottle(interval: .seconds(10))
    /// The largest message produced: `--max-message-bytes` until the output topic refuses one as too
    /// large (its own `max.message.bytes` is lower), then below what it refused. A trace over it
    /// leaves split by span; a single span over it is dead-lettered and moved past, never produced
    /// (the broker would refuse it, and the batch would be read again forever).
    private var outputLimit: Int
    /// Sizes of the messages the broker refused as too large since the batch began (delivery reports).
    private let refusedAsTooLarge = Mutex<[Int]>([])
    /// Copies of this batch's oversize spans on their way to the dead-letter topic.
    private var oversizeCopies: [DeadLetterCopy] = []
    /// The least the output limit is lowered to (the smallest `--max-message-bytes` allowed).
    static let minimumOutputLimit = 1024

    public init(configuration: RouterConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        outputLimit = configuration.maxMessageBytes
        metrics.outputLimit.store(outputLimit, ordering: .relaxed)
        var consumerProperties = KafkaProperties(["enable.auto.commit": "false"])
        for (name, value) in configuration.kafkaProperties.consumerShare.values { consumerProperties[name] = value }
        consumerProperties["enable.auto.commit"] = "false"
        let deadLetter = try configuration.deadLetterTopic.map { (topic) throws(KafkaError) in
            // The user's properties serve both clients; the dead-letter producer gets the producer's.
            try DeadLetterTopic(
                topic: topic, bootstrapServers: configuration.brokers, properties: configuration.kafkaProperties.producerShare, logger: logger)
        }
        front = try IngestFront(
            consumer: KafkaConsumerConfiguration(
                bootstrapServers: configuration.brokers, groupID: configuration.group, topics: configuration.topics,
                properties: consumerProperties, statisticsInterval: configuration.statisticsInterval,
                reportPartitionEOF: configuration.exitOnEOF),
            deadLetter: deadLetter, metrics: ingest, maxMessagesPerPoll: configuration.maxBatchMessages, logger: logger)
        // A batch is bounded in bytes too: its spans are decoded and held until it is produced.
        front.maxBytesPerPoll = configuration.maxBatchBytes
        (producer, transactional) = try Self.makeProducer(configuration, logger: logger)
        // Connect the producer and learn the output topic's leaders while the group is joined, not
        // on the first batch (that cost the first batch ~0.9 s against the dev broker).
        if producer.partitionCount(of: configuration.outputTopic, timeout: .seconds(10)) == nil {
            logger.warning("the output topic \(configuration.outputTopic) is not known to the cluster yet (its metadata did not arrive in 10 s); routing starts anyway and waits for it on the first batch")
        }
        metrics.transactional.store(transactional, ordering: .relaxed)
        if let address = configuration.httpAddress {
            http = try HTTPServer(address: address, routes: HTTPRoutes(backend: self, adminToken: nil), logger: logger)
        }
    }

    /// The bound HTTP address (`--http 127.0.0.1:0` picks a port).
    public var httpAddress: String? { http?.boundAddress }

    private static func makeProducer(_ configuration: RouterConfiguration, logger: Logger) throws(KafkaError) -> (KafkaProducer, Bool) {
        var properties = KafkaProperties([
            "acks": "all",
            "enable.idempotence": "true",
            // The Java client's and franz-go's partitioner: a keyed topic written by the collector's
            // exporter and by the router puts a trace in the same partition.
            "partitioner": "murmur2_random",
            "message.max.bytes": String(configuration.maxMessageBytes + 64 << 10),
            // Never give up on a message: a batch waits (and reading pauses) until the cluster is back.
            "message.timeout.ms": "0",
        ])
        // The user's properties serve both clients; each gets those it knows (librdkafka warns about the rest).
        for (name, value) in configuration.kafkaProperties.producerShare.values { properties[name] = value }
        if configuration.delivery != .atLeastOnce {
            var transactionalProperties = properties
            transactionalProperties["transactional.id"] = configuration.transactionalID
            // A transaction must finish within this; the broker aborts it after.
            transactionalProperties["transaction.timeout.ms"] = transactionalProperties["transaction.timeout.ms"] ?? "60000"
            transactionalProperties["message.timeout.ms"] = "55000"
            let producer = try KafkaProducer(bootstrapServers: configuration.brokers, properties: transactionalProperties, logger: logger)
            do {
                try producer.initTransactions(timeout: .seconds(30))
                logger.info("transactional delivery: each batch's messages and input offsets commit together (transactional.id \(configuration.transactionalID))")
                return (producer, true)
            } catch {
                guard configuration.delivery == .auto else { throw error }
                logger.warning("the cluster refused transactions (\(error)); delivering at least once: a crash may re-send a batch")
            }
        }
        return (try KafkaProducer(bootstrapServers: configuration.brokers, properties: properties, logger: logger), false)
    }

    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    /// Routes until stopped, at the end of the input (`exitOnEOF`), or a fatal Kafka error.
    public func run() -> RouteSummary {
        var outcome = "stopped"
        var lastProgress = ContinuousClock.now
        var nextStatus = ContinuousClock.now + configuration.statusInterval
        // At least once, the next batch is read and decoded while the previous one's messages are
        // being acknowledged: `inFlight` is the batch produced and not yet acknowledged (at most one:
        // a batch is produced only once the one before it is committed).
        var inFlight: ProducedBatch?
        while !stopRequested.load(ordering: .relaxed) {
            if let error = front.fatalError {
                outcome = "fatal: \(error)"
                break
            }
            let batch = readBatch()
            if let flight = inFlight {
                inFlight = nil
                // Not acknowledged: both batches are read again from the first's offsets.
                guard acknowledge(flight, readSince: batch) else { continue }
            }
            if !batch.next.isEmpty {
                if transactional {
                    if let error = deliver(batch) {
                        outcome = "fatal: \(error)"
                        break
                    }
                } else {
                    inFlight = produceBatch(batch)
                }
                lastProgress = .now
            } else if configuration.exitOnEOF && front.isAtEndOfAllPartitions {
                outcome = "end_of_input"
                break
            }
            metrics.queue.store(producer.queueLength, ordering: .relaxed)
            if ContinuousClock.now >= nextStatus {
                logStatus(idleFor: ContinuousClock.now - lastProgress)
                nextStatus = .now + configuration.statusInterval
            }
        }
        // Stopped (or at the end) with a batch produced: acknowledged and committed before closing, or
        // read again by the next owner.
        if let flight = inFlight { _ = acknowledge(flight, readSince: Batch()) }
        let processing = front.firstMessageAt.map { ContinuousClock.now - $0 }
        consumer.close()
        front.flushDeadLetters()
        http?.shutdown()
        let totals = metrics.snapshot
        let input = ingest.snapshot
        return RouteSummary(
            outcome: outcome, delivery: transactional ? "transactional" : "at-least-once",
            messagesIn: input.messagesReceived, bytesIn: input.bytesReceived, spans: input.spansReceived,
            messagesRejected: Dictionary(uniqueKeysWithValues: input.messagesRejected.map { ($0.key.rawValue, $0.value) }),
            spansRejected: Dictionary(uniqueKeysWithValues: input.spansRejected.map { ($0.key.rawValue, $0.value) }),
            deadLettered: input.messagesDeadLettered, tracesOut: totals.tracesOut, messagesOut: totals.messagesOut,
            bytesOut: totals.bytesOut, transactionsCommitted: totals.transactionsCommitted,
            transactionsAborted: totals.transactionsAborted, rewinds: totals.rewinds,
            processingSeconds: processing.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 })
    }

    /// One poll's messages, split per trace: where each lane's batch starts (its lowest offset: the
    /// rewind point) and what to commit.
    struct Batch {
        var first: [Lane: Int64] = [:]
        var next: [Lane: Int64] = [:]
    }

    private func readBatch() -> Batch {
        var batch = Batch()
        splitter.removeAll()
        polled.removeAll(keepingCapacity: true)
        let encoding = configuration.encoding
        front.poll(timeout: .milliseconds(100), into: &polled) { (payload) throws(OTLPDecodeError) in
            try splitter.add(payload, encoding: encoding)
        }
        for message in polled {
            batch.first[message.lane] = min(batch.first[message.lane] ?? .max, message.offset)
            batch.next[message.lane] = max(batch.next[message.lane] ?? 0, message.offset + 1)
        }
        return batch
    }

    /// A batch produced and not yet acknowledged, with what its commit waits for.
    struct ProducedBatch {
        var batch: Batch
        var failedBefore: Int
        var produceError: KafkaError?
        var deadLetterCopies: [DeadLetterCopy]
        var counts: RouterMetrics.Counts
    }

    /// Produces the batch's traces; at least once, ``acknowledge(_:readSince:)`` then waits for them
    /// and commits the batch's offsets, after the next batch has been read.
    private func produceBatch(_ batch: Batch) -> ProducedBatch {
        let failedBefore = producer.counts.failed
        lastTraceID = nil
        oversizeCopies.removeAll()
        var out = RouterMetrics.Counts()
        var produceError: KafkaError?
        splitter.forEachTrace(maxBytes: outputLimit) { id, request in
            guard produceError == nil else { return }
            do throws(KafkaError) {
                try produce(id, request, counts: &out)
            } catch {
                produceError = error
            }
        }
        return ProducedBatch(
            batch: batch, failedBefore: failedBefore, produceError: produceError,
            deadLetterCopies: polled.compactMap(\.deadLetterCopy) + oversizeCopies, counts: out)
    }

    /// Waits until every message of `flight` is acknowledged, then commits its offsets; true when it
    /// was. When not, it and `next` (read meanwhile, not yet produced) are read again from their first
    /// offsets: nothing of either is committed.
    private func acknowledge(_ flight: ProducedBatch, readSince next: Batch) -> Bool {
        var out = flight.counts
        while true {
            do throws(KafkaError) {
                try producer.flush(timeout: .seconds(10))
                break
            } catch {
                if stopRequested.load(ordering: .relaxed) { break }
                throttle.log(logger, level: .warning, key: "flush", "the output topic is slow to acknowledge (\(producer.queueLength) messages waiting); not reading meanwhile")
            }
        }
        let acknowledged = flight.produceError == nil && producer.counts.failed == flight.failedBefore && producer.queueLength == 0
            && deadLettersCopied(flight.deadLetterCopies)
        if acknowledged {
            front.storeOffsets(flight.batch.next)
            do throws(KafkaError) {
                try consumer.commit()
            } catch {
                // Committed with the next batch, or replayed by the next owner: at least once.
                throttle.log(logger, level: .warning, key: "commit", "commit failed: \(error)")
            }
        } else {
            logger.warning("not every message of a batch was acknowledged (\(flight.produceError.map { "\($0)" } ?? "delivery failed, or a dead-letter copy")); reading it again")
            var both = flight.batch
            for (lane, offset) in next.first { both.first[lane] = min(both.first[lane] ?? .max, offset) }
            rewind(both, counts: &out)
        }
        learnOutputLimit()
        out.batches = 1
        record(out, produceError: flight.produceError, failedBefore: flight.failedBefore)
        return acknowledged
    }

    /// Produces the batch's traces and commits its input offsets with them, in one transaction.
    /// Returns a fatal error; anything else is retried (the batch is read again) until it goes
    /// through or a stop.
    private func deliver(_ batch: Batch) -> KafkaError? {
        do throws(KafkaError) {
            try producer.beginTransaction()
        } catch {
            return error
        }
        let flight = produceBatch(batch)
        var out = flight.counts
        do throws(KafkaError) {
            if let produceError = flight.produceError { throw produceError }
            guard deadLettersCopied(flight.deadLetterCopies) else {
                throw KafkaError(code: -1, name: "_DEAD_LETTER", message: "the dead-letter topic did not acknowledge this batch's copies within 30 s")
            }
            try producer.sendOffsetsToTransaction(front.byPartition(batch.next), consumer: consumer, timeout: .seconds(30))
            try commitTransaction()
            out.transactionsCommitted = 1
        } catch {
            if error.isFatal { return error }
            logger.warning("transaction aborted, its batch is read again: \(error)")
            do throws(KafkaError) {
                try producer.abortTransaction(timeout: .seconds(30))
            } catch {
                if error.isFatal { return error }
                logger.error("abort transaction: \(error)")
            }
            rewind(batch, counts: &out)
            out.transactionsAborted = 1
        }
        learnOutputLimit()
        out.batches = 1
        record(out, produceError: flight.produceError, failedBefore: flight.failedBefore)
        return nil
    }

    /// Adds a batch's counts to the totals and notes whether the output is failing.
    private func record(_ out: RouterMetrics.Counts, produceError: KafkaError?, failedBefore: Int) {
        if out.produceErrors > 0 || out.rewinds > 0 {
            let reason = produceError ?? (producer.counts.failed != failedBefore ? producer.lastDeliveryError : nil)
            metrics.failing.withLock { $0 = reason.map { "\($0)" } ?? "a batch was not delivered" }
        } else {
            metrics.failing.withLock { $0 = nil }
        }
        metrics.update { totals in
            totals.tracesOut += out.tracesOut
            totals.messagesOut += out.messagesOut
            totals.spansOut += out.spansOut
            totals.bytesOut += out.bytesOut
            totals.produceErrors += out.produceErrors
            totals.oversizeSpans += out.oversizeSpans
            totals.transactionsCommitted += out.transactionsCommitted
            totals.transactionsAborted += out.transactionsAborted
            totals.rewinds += out.rewinds
            totals.batches += out.batches
        }
    }

    /// Commits, retrying while librdkafka says the same call may still succeed (a timeout).
    private func commitTransaction() throws(KafkaError) {
        while true {
            do throws(KafkaError) {
                try producer.commitTransaction(timeout: .seconds(30))
                return
            } catch {
                guard error.isRetriable, !error.transactionRequiresAbort, !stopRequested.load(ordering: .relaxed) else { throw error }
                logger.warning("commit transaction: \(error); retrying")
            }
        }
    }

    private var lastTraceID: TraceID?

    /// Whether the dead-letter topic has every copy a batch made (refused input, oversize spans),
    /// waiting at most 30 s: the batch's offsets are committed only behind its copies.
    private func deadLettersCopied(_ copies: [DeadLetterCopy]) -> Bool {
        guard !copies.isEmpty else { return true }
        let deadline = ContinuousClock.now + .seconds(30)
        while !copies.allSatisfy(\.isAcknowledged) {
            if ContinuousClock.now >= deadline || stopRequested.load(ordering: .relaxed) { return false }
            Thread.sleep(forTimeInterval: 0.002)
        }
        return true
    }

    /// Lowers the output limit below the smallest message the broker refused as too large in this
    /// batch (which failed, and is read again: its traces then leave in smaller pieces).
    private func learnOutputLimit() {
        let refused = refusedAsTooLarge.withLock { sizes in
            defer { sizes.removeAll() }
            return sizes.min()
        }
        guard let refused else { return }
        let lowered = max(Self.minimumOutputLimit, min(outputLimit, refused - refused / 16))
        guard lowered < outputLimit else { return }
        logger.error(
            "the output topic \(configuration.outputTopic) refused a message of \(refused) bytes as too large: its max.message.bytes is below --max-message-bytes (\(configuration.maxMessageBytes)); producing at most \(lowered) bytes per message from now on (the batch is read again). Raise the topic's max.message.bytes or lower --max-message-bytes.")
        outputLimit = lowered
        metrics.outputLimit.store(lowered, ordering: .relaxed)
    }

    private func produce(_ id: TraceID, _ request: [UInt8], counts: inout RouterMetrics.Counts) throws(KafkaError) {
        do throws(KafkaError) {
            // The splitter leaves a request over the limit only for a single span: refused here, not
            // by the broker later (librdkafka's own limit is higher, for the batch's framing).
            if request.count > outputLimit {
                throw KafkaError.messageTooLarge("a single span of \(request.count) bytes is over the output limit of \(outputLimit) bytes")
            }
            let size = request.count
            // The request was built for this message alone: librdkafka reads it in place (no copy of
            // every byte routed) and the producer keeps it until its delivery report.
            try id.withHexBytes { (key) throws(KafkaError) in
                // A full queue waits here: reading pauses until the output catches up.
                try producer.send(topic: configuration.outputTopic, key: key, handingOver: request, queueFullWait: .seconds(3600)) {
                    [self] error in
                    if let error, error.isMessageTooLarge { refusedAsTooLarge.withLock { $0.append(size) } }
                }
            }
        } catch where error.isMessageTooLarge {
            // One span over the output's limit (the splitter already split the trace by span).
            counts.oversizeSpans += 1
            throttle.log(logger, level: .error, key: "oversize", "a span of trace \(id.hex) is larger than the output topic accepts (\(request.count) bytes)\(deadLetter == nil ? "; it is dropped (no --dead-letter-topic)" : "; copied to the dead-letter topic")")
            if let copy = deadLetter?.sendOversizeSpan(traceID: id, request: request, reason: "\(error)", outputTopic: configuration.outputTopic) {
                oversizeCopies.append(copy)
            }
            return
        } catch {
            counts.produceErrors += 1
            throw error
        }
        if lastTraceID != id { counts.tracesOut += 1 }
        lastTraceID = id
        counts.messagesOut += 1
        counts.bytesOut += request.count
        producer.poll()
    }

    /// Reads the batch again from its first offsets (its output was not committed or acknowledged).
    private func rewind(_ batch: Batch, counts: inout RouterMetrics.Counts) {
        counts.rewinds += 1
        front.seek(batch.first)
    }

    private func logStatus(idleFor idle: Duration) {
        let totals = metrics.snapshot
        let input = ingest.snapshot
        logger.info(
            "route status",
            metadata: [
                "messages_in": "\(input.messagesReceived)", "spans": "\(input.spansReceived)", "traces_out": "\(totals.tracesOut)",
                "messages_out": "\(totals.messagesOut)", "rejected": "\(input.totalMessagesRejected)",
                "aborted": "\(totals.transactionsAborted)", "rewinds": "\(totals.rewinds)",
                "partitions": "\(ingest.partitionsAssigned)", "queue": "\(producer.queueLength)",
            ])
    }

    // MARK: HTTPBackend

    public func metricsText(format: MetricsFormat) -> String {
        var out = MetricsWriter(format: format)
        metrics.write(into: &out, ingest: ingest.snapshot)
        ingest.write(into: &out)
        return out.text
    }

    public func readiness() -> (ready: Bool, reason: String) {
        if let error = front.fatalError { return (false, "fatal Kafka error: \(error)") }
        guard ingest.partitionsAssigned > 0 else { return (false, "no partitions assigned yet (joining the consumer group)") }
        if let failing = metrics.failing.withLock({ $0 }) { return (false, "output failing: \(failing)") }
        return (true, "")
    }

    public func reloadRules() -> String? { "tailgate route has no rules to reload" }

    public func consoleState() -> ConsoleState { ConsoleState(role: "route") }

    public func storedTrace(_ id: TraceID) throws -> [UInt8]? { nil }
}
