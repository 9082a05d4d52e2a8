import Foundation
import Kafka
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
        public init() {}
    }

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
        let sink = AcknowledgeOnDecode(countTraces: true)
        let engine = try Engine(configuration: configuration, sink: sink, logger: logger)
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
                partitionsAssigned: engine.metrics.partitionsAssigned))
            previousSpans = received
            previousTime = now
        }
        // Stop the traffic first, then let the engine drain what was produced.
        producer.requestStop()
        producerDone.wait()
        if let failure = producerFailure.withLock({ $0 }) { throw failure }
        let sent = producer.sent
        let drainDeadline = ContinuousClock.now + .seconds(10)
        while engine.metrics.snapshot.spansReceived < sent.spans && ContinuousClock.now < drainDeadline {
            Thread.sleep(forTimeInterval: 0.1)
        }
        engine.requestStop()
        engineDone.wait()
        let totals = engine.metrics.snapshot
        return Summary(
            traces: sent.traces, errorTraces: sent.errorTraces, slowTraces: sent.slowTraces, spansSent: sent.spans,
            spansReceived: totals.spansReceived, distinctTraces: sink.distinctTraces, bytesIn: totals.bytesReceived,
            messagesRejected: totals.totalMessagesRejected)
    }
}
