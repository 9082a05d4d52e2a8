import Foundation
import Kafka
import OTLP
import Sampling
import Storage
public import Logging
import Synchronization

/// The whole job on the embedded default: librdkafka's mock cluster, DogBook traffic flowing into it,
/// and the engine consuming it. For `tailgate demo`.
public final class DemoSession: Sendable {
    public struct Options: Sendable {
        public var duration: Duration = .seconds(30)
        /// Traces per second of generated traffic.
        public var rate: Double = 300
        public var partitions = 6
        public var errorRate = 0.02
        public var slowRate = 0.03
        /// A rule file; nil uses ``DemoSession/defaultRules`` (the same as pipelines/default.yaml).
        public var rulesPath: String?
        /// How long a trace waits for its spans (short, so that decisions show within seconds).
        public var decisionWait: Duration = .seconds(2)
        /// Store kept traces here (the embedded file store); nil: count them only.
        public var dataDirectory: String?
        /// Serve /metrics and Tempo's trace API here (`HOST:PORT`); nil: no listener.
        public var httpAddress: String?
        public init() {}
    }

    /// The demo's built-in rules, identical to pipelines/default.yaml (a test keeps them so).
    public static let defaultRulesText = """
        # tailgate's default rules, in the OpenTelemetry Collector's tail_sampling syntax.
        # Keep every trace with an error, every slow trace, and a 5% baseline; never keep health checks.
        decision_wait: 10s
        decision_wait_after_root_received: 2s
        decision_cache:
          sampled_cache_size: 100000
          non_sampled_cache_size: 1000000
        policies:
          - name: errors
            type: status_code
            status_code:
              status_codes: [ERROR]
          - name: slow
            type: latency
            latency:
              threshold_ms: 1000
          - name: baseline
            type: probabilistic
            probabilistic:
              sampling_percentage: 5
          - name: drop-health-checks
            type: drop
            drop:
              drop_sub_policy:
                - name: health-routes
                  type: string_attribute
                  string_attribute:
                    key: http.route
                    values: ["^/(healthz|readyz|livez|health|ready|metrics)$"]
                    enabled_regex_matching: true

        """

    /// One line of live status.
    public struct Status: Sendable {
        public var elapsed: Duration
        public var tracesSent: Int
        public var spansSent: Int
        public var spansReceived: Int
        public var spansPerSecond: Double
        public var messagesRejected: Int
        public var lag: Int64
        public var partitionsAssigned: Int
        public var tracesKept: Int
        public var tracesDropped: Int
        public var bufferedTraces: Int
        /// The listener's address once it is up.
        public var httpAddress: String?
        /// A kept error trace to open, once there is one.
        public var exampleErrorTrace: String?
    }

    /// The end-of-run account.
    public struct Summary: Sendable, Codable {
        public var traces: Int
        public var errorTraces: Int
        public var slowTraces: Int
        public var spansSent: Int
        public var spansReceived: Int
        public var distinctTraces: Int
        public var bytesIn: Int
        public var messagesRejected: Int
        public var keptByPolicy: [String: Int]
        public var tracesDropped: Int
        public var errorTracesKept: Int
        public var bytesKept: Int
        public var exampleErrorTrace: String?
    }

    private let options: Options
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    /// Runs the demo (blocking), calling `onStatus` about once a second.
    public func run(onStatus: (Status) -> Void) throws -> Summary {
        let cluster = try KafkaMockCluster(brokers: 1, topics: [("otlp_spans", options.partitions)], logger: logger)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.group = "tailgate-demo"
        configuration.statusInterval = .seconds(3600)  // the demo shows its own status
        configuration.statisticsInterval = .seconds(1)
        configuration.rulesPath = options.rulesPath
        configuration.fallbackRules = RuleSet(configuration: try RuleFile.parse(Self.defaultRulesText, file: "default.yaml"), hash: "default")
        configuration.decisionWait = options.decisionWait
        configuration.httpAddress = options.httpAddress
        var writer: StoreWriter?
        if let directory = options.dataDirectory {
            writer = StoreWriter(store: try TraceStore(directory: URL(fileURLWithPath: directory)), logger: logger)
        }
        let kept = DemoKeptTraces(store: writer)
        let engine = try Engine(configuration: configuration, kept: kept, logger: logger)
        let producer = try TrafficProducer(bootstrapServers: cluster.bootstrapServers, logger: logger)

        let engineDone = DispatchSemaphore(value: 0)
        let summary = Mutex<RunSummary?>(nil)
        Thread {
            let result = engine.run()
            summary.withLock { $0 = result }
            engineDone.signal()
        }.start()
        let producerDone = DispatchSemaphore(value: 0)
        var trafficOptions = TrafficProducer.Options()
        trafficOptions.traces = 0
        trafficOptions.rate = options.rate
        trafficOptions.errorRate = options.errorRate
        trafficOptions.slowRate = options.slowRate
        trafficOptions.seed = UInt64(UnixTime.nowNanoseconds())
        let producerOptions = trafficOptions
        let producerFailure = Mutex<(any Error)?>(nil)
        Thread {
            do { try producer.run(producerOptions) } catch { producerFailure.withLock { $0 = error } }
            producerDone.signal()
        }.start()

        let start = ContinuousClock.now
        var previousSpans = 0
        var previousTime = start
        while ContinuousClock.now - start < options.duration && !stopRequested.load(ordering: .relaxed) {
            Thread.sleep(forTimeInterval: 1)
            let now = ContinuousClock.now
            let received = engine.metrics.snapshot.spansReceived
            let sent = producer.sent
            onStatus(Status(
                elapsed: now - start, tracesSent: sent.traces, spansSent: sent.spans, spansReceived: received,
                spansPerSecond: Double(received - previousSpans) / (now - previousTime).timeInterval,
                messagesRejected: engine.metrics.snapshot.totalMessagesRejected,
                lag: engine.metrics.consumerLag.values.reduce(0, +),
                partitionsAssigned: engine.metrics.partitionsAssigned,
                tracesKept: engine.sampling?.metrics.snapshot.kept ?? 0,
                tracesDropped: engine.sampling?.metrics.snapshot.dropped ?? 0,
                bufferedTraces: engine.sampling?.metrics.buffered.traces ?? 0,
                httpAddress: engine.boundHTTPAddress, exampleErrorTrace: kept.exampleErrorTrace))
            previousSpans = received
            previousTime = now
        }
        // Stop the traffic first, then let the engine drain what was produced.
        producer.requestStop()
        producerDone.wait()
        if let failure = producerFailure.withLock({ $0 }) { throw failure }
        let sent = producer.sent
        let drainDeadline = ContinuousClock.now + .seconds(30)
        while engine.metrics.snapshot.spansReceived < sent.spans && ContinuousClock.now < drainDeadline {
            Thread.sleep(forTimeInterval: 0.1)
        }
        engine.requestStop()
        engineDone.wait()
        writer?.stop()
        let totals = engine.metrics.snapshot
        let decisions = engine.sampling?.metrics.snapshot ?? SamplingMetrics.Counts()
        return Summary(
            traces: sent.traces, errorTraces: sent.errorTraces, slowTraces: sent.slowTraces, spansSent: sent.spans,
            spansReceived: totals.spansReceived, distinctTraces: decisions.kept + decisions.dropped, bytesIn: totals.bytesReceived,
            messagesRejected: totals.totalMessagesRejected, keptByPolicy: decisions.keptByPolicy, tracesDropped: decisions.dropped,
            errorTracesKept: kept.errorTraces, bytesKept: kept.bytes, exampleErrorTrace: kept.exampleErrorTrace)
    }
}

/// Counts what the demo keeps (traces with an error span, the bytes to store) and passes kept
/// traces on to the store when there is one.
final class DemoKeptTraces: KeptTraceSink {
    private let errorCount = Atomic<Int>(0)
    private let byteCount = Atomic<Int>(0)
    private let example = Mutex<String?>(nil)
    private let store: StoreWriter?

    init(store: StoreWriter?) { self.store = store }

    func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void) {
        if trace.spans.contains(where: { $0.statusCode == .error }) {
            errorCount.add(1, ordering: .relaxed)
            example.withLock { $0 = $0 ?? trace.traceID.hex }
        }
        byteCount.add(trace.encodedBytes + trace.envelopes.reduce(0) { $0 + Int($1.resource.count + $1.scope.count) }, ordering: .relaxed)
        if let store { store.keep(trace, policy: policy, stored: stored) } else { stored() }
    }

    func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void) {
        byteCount.add(Int(span.encoded.count), ordering: .relaxed)
        if let store { store.keepLate(span, from: batch, stored: stored) } else { stored() }
    }

    func flush() { store?.flush() }

    var exampleErrorTrace: String? { example.withLock { $0 } }

    var errorTraces: Int { errorCount.load(ordering: .relaxed) }
    var bytes: Int { byteCount.load(ordering: .relaxed) }
}
