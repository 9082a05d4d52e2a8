public import Kafka
public import Logging
public import OTLP
import Synchronization

/// Writes DogBook traffic to a Kafka topic the way the OpenTelemetry Collector's kafka exporter does:
/// with `partition_traces_by_id`, one trace per message keyed by its hex trace id; otherwise batches
/// of traces per message without a key.
public final class TrafficProducer: Sendable {
    public struct Options: Sendable {
        public var topic = "otlp_spans"
        public var traces = 1000
        /// Traces per second; 0 = as fast as the producer goes.
        public var rate: Double = 0
        public var errorRate = 0.02
        public var slowRate = 0.03
        /// Fraction of traces sent without their root span.
        public var rootlessRate = 0.0
        /// One unkeyed message per service instead of per batch of traces, as node agents without
        /// `partition_traces_by_id` send them: a trace's spans spread over partitions.
        public var splitByService = false
        public var encoding = OTLPEncoding.otlpProto
        /// 1 = keyed by trace id (partition_traces_by_id); more = unkeyed multi-trace messages.
        public var tracesPerMessage = 1
        public var seed: UInt64 = 1
        public init() {}
    }

    /// What was sent.
    public struct Totals: Sendable, Codable, Equatable {
        public var traces = 0
        public var spans = 0
        public var messages = 0
        public var bytes = 0
        public var errorTraces = 0
        public var slowTraces = 0
    }

    private let producer: KafkaProducer
    private let stopRequested = Atomic<Bool>(false)
    private let progress = Mutex(Totals())

    public init(bootstrapServers: String, properties: KafkaProperties = KafkaProperties(), logger: Logger) throws(KafkaError) {
        // An unkeyed message goes to a partition of its own, chosen at random, as the collector's
        // exporter sends them — not librdkafka's default of one partition for every message of 10 ms,
        // which at this generator's speed piled several MB on a few partitions (the dev broker keeps
        // 5 MB a partition and dropped the oldest).
        var effective = KafkaProperties(["sticky.partitioning.linger.ms": "0"])
        for (name, value) in properties.values { effective[name] = value }
        producer = try KafkaProducer(bootstrapServers: bootstrapServers, properties: effective, logger: logger)
    }

    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    /// Totals so far (for live status).
    public var sent: Totals { progress.withLock { $0 } }

    /// Produces until `options.traces` are sent (0 = until stopped), then flushes. Blocking.
    @discardableResult
    public func run(_ options: Options, clock: ContinuousClock = ContinuousClock()) throws(KafkaError) -> Totals {
        var traffic = DogBookTraffic(
            seed: options.seed, errorRate: options.errorRate, slowRate: options.slowRate, rootlessRate: options.rootlessRate)
        let start = clock.now
        let wallStart = UInt64(max(0, Int64(UnixTime.nowNanoseconds())))
        var totals = Totals()
        var pending: [DogBookTraffic.Trace] = []
        while options.traces == 0 || totals.traces < options.traces {
            if stopRequested.load(ordering: .relaxed) { break }
            if options.rate > 0 {
                let due = start + .seconds(Double(totals.traces) / options.rate)
                // Read the clock once: a second read may already be past `due` (a negative wait).
                let now = clock.now
                if due > now {
                    producer.poll()
                    let wait = min(due - now, .milliseconds(50))
                    usleep(UInt32(wait.components.seconds) * 1_000_000 + UInt32(wait.components.attoseconds / 1_000_000_000_000))
                    continue
                }
            }
            let elapsed = clock.now - start
            let nowNano = wallStart + UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
            let trace = traffic.nextTrace(startUnixNano: nowNano)
            totals.traces += 1
            totals.spans += trace.spanCount
            if trace.isError { totals.errorTraces += 1 }
            if trace.isSlow { totals.slowTraces += 1 }
            pending.append(trace)
            let last = options.traces != 0 && totals.traces == options.traces
            if pending.count >= max(1, options.tracesPerMessage) || last {
                let groups: [[DogBookService]] = options.splitByService ? DogBookService.allCases.map { [$0] } : [DogBookService.allCases]
                for services in groups {
                    let payload = options.encoding == .otlpProto
                        ? DogBookTraffic.protobuf(pending, services: services) : DogBookTraffic.json(pending, services: services)
                    guard payload.count > (options.encoding == .otlpProto ? 0 : 20) else { continue }  // no span of these services
                    let key: [UInt8]? = options.tracesPerMessage <= 1 && !options.splitByService ? Array(pending[0].traceID.hex.utf8) : nil
                    try producer.send(topic: options.topic, key: key, value: payload)
                    totals.messages += 1
                    totals.bytes += payload.count
                }
                pending.removeAll(keepingCapacity: true)
                if totals.messages % 256 == 0 { producer.poll() }
                let snapshot = totals
                progress.withLock { $0 = snapshot }
            }
        }
        if !pending.isEmpty {
            let payload = options.encoding == .otlpProto ? DogBookTraffic.protobuf(pending) : DogBookTraffic.json(pending)
            try producer.send(topic: options.topic, key: nil, value: payload)
            totals.messages += 1
            totals.bytes += payload.count
        }
        try producer.flush(timeout: .seconds(30))
        let failed = producer.counts.failed
        if failed > 0 { throw KafkaError(code: -1, name: "DELIVERY_FAILED", message: "\(failed) message(s) were not delivered") }
        let final = totals
        progress.withLock { $0 = final }
        return totals
    }
}

/// Wall-clock time for span timestamps (the only place traffic generation reads the real clock).
public enum UnixTime {
    public static func nowNanoseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
