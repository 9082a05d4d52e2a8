public import Kafka
public import OTLP
public import SpanMetrics
import Synchronization

/// Counters of the ingest stage. The polling thread adds a whole batch's counts at once (one lock per
/// poll, not per message); readers take a snapshot.
public final class IngestMetrics: Sendable {
    /// One batch's worth of counts, or a snapshot of the totals.
    public struct Counts: Sendable, Equatable {
        public var messagesReceived = 0
        public var bytesReceived = 0
        public var spansReceived = 0
        public var messagesRejected: [RejectReason: Int] = [:]
        public var spansRejected: [RejectReason: Int] = [:]
        public var messagesDeadLettered = 0
        public var deadLetterFailures = 0
        /// Messages fetched under a partition assignment that ended before they were handed over.
        public var messagesStale = 0

        public init() {}

        var isEmpty: Bool {
            messagesReceived == 0 && messagesRejected.isEmpty && spansRejected.isEmpty && messagesStale == 0 && deadLetterFailures == 0
        }

        mutating func add(_ other: Counts) {
            messagesReceived += other.messagesReceived
            bytesReceived += other.bytesReceived
            spansReceived += other.spansReceived
            messagesRejected.merge(other.messagesRejected, uniquingKeysWith: +)
            spansRejected.merge(other.spansRejected, uniquingKeysWith: +)
            messagesDeadLettered += other.messagesDeadLettered
            deadLetterFailures += other.deadLetterFailures
            messagesStale += other.messagesStale
        }

        /// Messages rejected for any reason.
        public var totalMessagesRejected: Int { messagesRejected.values.reduce(0, +) }
        public var totalSpansRejected: Int { spansRejected.values.reduce(0, +) }
    }

    private let counts = Mutex(Counts())
    private let lag = Mutex<[TopicPartition: Int64]>([:])
    private let assigned = Mutex<Set<TopicPartition>>([])
    private let pausedPartitions = Atomic<Int>(0)
    private let partitionsLost = Atomic<Int>(0)
    private let pollCount = Atomic<Int>(0)
    /// librdkafka's consumer queue in bytes, and the most it holds (-1: not reported yet / unknown).
    private let prefetched = Atomic<Int>(-1)
    private let prefetchLimit = Atomic<Int>(-1)

    public init() {}

    /// Polls of the consumer so far (a sign of progress: tests wait on it instead of sleeping).
    public var polls: Int { pollCount.load(ordering: .relaxed) }

    func add(_ batch: Counts) {
        pollCount.add(1, ordering: .relaxed)
        guard !batch.isEmpty else { return }
        counts.withLock { $0.add(batch) }
    }

    func record(statistics: ConsumerStatistics) {
        lag.withLock { lag in
            for (partition, value) in statistics.lag { lag[partition] = value }
        }
        if let bytes = statistics.prefetchedBytes { prefetched.store(Int(bytes), ordering: .relaxed) }
    }

    func record(prefetchLimit bytes: Int?) { prefetchLimit.store(bytes ?? -1, ordering: .relaxed) }

    /// Bytes librdkafka has fetched and not handed over yet, and its limit (nil until known).
    public var prefetch: (bytes: Int?, limit: Int?) {
        let bytes = prefetched.load(ordering: .relaxed)
        let limit = prefetchLimit.load(ordering: .relaxed)
        return (bytes < 0 ? nil : bytes, limit < 0 ? nil : limit)
    }

    func record(assigned partitions: [TopicPartition]) { assigned.withLock { $0.formUnion(partitions) } }

    func record(revoked partitions: [TopicPartition]) {
        assigned.withLock { $0.subtract(partitions) }
        // A revoked partition's lag is another member's to report now.
        lag.withLock { lag in for partition in partitions { lag[partition] = nil } }
    }

    /// Partitions taken away without a hand-over (the session timed out, the member was fenced).
    func record(lost partitions: [TopicPartition]) {
        partitionsLost.add(partitions.count, ordering: .relaxed)
        record(revoked: partitions)
    }

    /// Partitions lost so far (see ``record(lost:)``).
    public var lostPartitions: Int { partitionsLost.load(ordering: .relaxed) }

    public func record(paused count: Int) { pausedPartitions.store(count, ordering: .relaxed) }

    /// The totals so far.
    public var snapshot: Counts { counts.withLock { $0 } }

    /// Partitions this member owns now.
    public var partitionsAssigned: Int { assigned.withLock { $0.count } }

    /// Consumer lag per assigned partition, from librdkafka's statistics.
    public var consumerLag: [TopicPartition: Int64] { lag.withLock { $0 } }

    /// Prometheus text exposition of the ingest metrics.
    public func prometheusText() -> String {
        var out = MetricsWriter()
        write(into: &out)
        return out.text
    }

    /// The ingest metrics (every reject reason listed, zeros included, so `rate()` and alerts work
    /// from the first scrape).
    public func write(into out: inout MetricsWriter) {
        let totals = snapshot
        out.counter("tailgate_messages_received_total", "Kafka messages consumed.", totals.messagesReceived)
        out.counter("tailgate_bytes_received_total", "Bytes of Kafka message payloads consumed.", totals.bytesReceived)
        out.counter("tailgate_spans_received_total", "Spans decoded from Kafka messages, before sampling.", totals.spansReceived)
        out.family("tailgate_messages_rejected_total", .counter, "Messages refused whole because they do not decode, by reason.")
        for reason in RejectReason.allCases {
            out.sample("tailgate_messages_rejected_total", [("reason", reason.rawValue)], totals.messagesRejected[reason] ?? 0)
        }
        out.family("tailgate_spans_rejected_total", .counter, "Spans refused alone (bad trace or span id) in otherwise good messages, by reason.")
        for reason in [RejectReason.invalidTraceID, .invalidSpanID] {
            out.sample("tailgate_spans_rejected_total", [("reason", reason.rawValue)], totals.spansRejected[reason] ?? 0)
        }
        out.counter("tailgate_messages_dead_lettered_total", "Rejected messages copied to the dead-letter topic.", totals.messagesDeadLettered)
        out.counter("tailgate_dead_letter_failures_total", "Attempts to copy a message to the dead-letter topic that failed (each is retried; what it copies stays uncommitted until a copy lands).", totals.deadLetterFailures)
        out.counter(
            "tailgate_messages_stale_total",
            "Messages fetched under a partition assignment that ended before they were handed over (a rebalance inside the poll); neither processed nor committed: the partition's owner reads them again.",
            totals.messagesStale)
        out.family("tailgate_kafka_consumer_lag", .gauge, "Messages behind the partition's high watermark, per assigned partition.")
        for (partition, value) in consumerLag.sorted(by: { $0.key < $1.key }) {
            out.sample("tailgate_kafka_consumer_lag", [("topic", partition.topic), ("partition", String(partition.partition))], Int(value))
        }
        let prefetch = prefetch
        if let bytes = prefetch.bytes {
            out.gauge(
                "tailgate_kafka_prefetch_bytes",
                "Bytes librdkafka has fetched and not yet handed to tailgate (its consumer queue), from its statistics. Near tailgate_kafka_prefetch_limit_bytes, tailgate is reading slower than the brokers serve, and librdkafka before 2.2 stops fetching each time the queue fills until it looks again, up to a second later.",
                bytes)
        }
        if let limit = prefetch.limit {
            out.gauge("tailgate_kafka_prefetch_limit_bytes", "The most librdkafka prefetches (queued.max.messages.kbytes).", limit)
        }
        out.gauge("tailgate_kafka_partitions_assigned", "Partitions this member owns.", assigned.withLock { $0.count })
        out.counter(
            "tailgate_kafka_partitions_lost_total",
            "Partitions taken from this member without a hand-over (its session timed out or it was fenced): their buffered traces were forgotten, undecided, and their next owner reads them again from the committed offset.",
            partitionsLost.load(ordering: .relaxed))
        out.gauge("tailgate_kafka_partitions_paused", "Partitions paused for backpressure.", pausedPartitions.load(ordering: .relaxed))
    }
}
