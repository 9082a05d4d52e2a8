import Engine
import Foundation
import Traffic
import Kafka
import OTLP
import Sampling
import SpanMetrics
import Logging
import Synchronization

/// The whole job on the embedded default: librdkafka's mock cluster, DogBook traffic flowing into it,
/// and the engine consuming it. For `tailgate demo`.
final class DemoSession: Sendable {
    struct Options: Sendable {
        var duration: Duration = .seconds(30)
        /// Traces per second of generated traffic.
        var rate: Double = 300
        var partitions = 6
        var errorRate = 0.02
        var slowRate = 0.03
        /// A rule file; nil uses ``DefaultRules`` (the same as pipelines/default.yaml).
        var rulesPath: String?
        /// How long a trace waits for its spans (short, so that decisions show within seconds).
        var decisionWait: Duration = .seconds(2)
        /// Store kept traces here (the embedded file store); nil: count them only.
        var dataDirectory: String?
        /// Serve /metrics and Tempo's trace API here (`HOST:PORT`); nil: no listener.
        var httpAddress: String?
        init() {}
    }


    /// What the live display shows, about once a second.
    struct Status: Sendable {
        var elapsed: Duration
        var tracesSent: Int
        var spansSent: Int
        var spansReceived: Int
        var spansPerSecond: Double
        var messagesRejected: Int
        var lag: Int64
        var partitionsAssigned: Int
        var keptByPolicy: [String: Int]
        var tracesDropped: Int
        var bufferedTraces: Int
        var bufferedBytes: Int
        var redSeries: Int
        var serviceGraphEdges: Int
        /// The listener's address once it is up.
        var httpAddress: String?
        /// A kept error trace to open, once there is one.
        var exampleErrorTrace: String?
        /// A sink whose latest attempt failed, with why (e.g. the store's directory is gone).
        var sinkFailure: String?

        var tracesKept: Int { keptByPolicy.values.reduce(0, +) }
    }

    /// The end-of-run account.
    struct Summary: Sendable, Codable {
        var traces: Int
        var errorTraces: Int
        var slowTraces: Int
        var spansSent: Int
        var spansReceived: Int
        var distinctTraces: Int
        var bytesIn: Int
        var messagesRejected: Int
        var keptByPolicy: [String: Int]
        var tracesDropped: Int
        var errorTracesKept: Int
        /// OTLP bytes of the kept traces.
        var bytesKept: Int
        /// Bytes the store's segments take on disk (zstd), when there is a store.
        var bytesStored: Int?
        var redSeries: Int
        var serviceGraphEdges: Int
        var exampleErrorTrace: String?
        /// Kept traces every sink acknowledged; fewer than kept when a sink failed to the end.
        var tracesStored: Int
        /// Kept traces stored incomplete (no root, or spans naming a parent that never came).
        var keptIncomplete: Int = 0
        /// Why kept traces were left unstored, when some were.
        var sinkFailure: String?
        /// Each `byte_budget` policy's last interval, when the rules have one.
        var budgets: [String: Engine.BudgetFigures] = [:]
        /// Per service, the RED counted from every span against the estimate from the kept traces.
        var fidelity: [ServiceFidelity] = []
    }

    private let options: Options
    private let logger: Logger
    private let stopRequested = Atomic<Bool>(false)

    init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    /// Runs the demo (blocking), calling `onStatus` about once a second.
    func run(onStatus: (Status) -> Void) throws -> Summary {
        let cluster = try KafkaMockCluster(brokers: 1, topics: [("otlp_spans", options.partitions)], logger: logger)
        // The clients (engine, producer) live in the call below and are gone before the cluster they
        // talk to (else they log its disappearance: "Disconnected").
        let summary = try run(on: cluster, onStatus: onStatus)
        withExtendedLifetime(cluster) {}
        return summary
    }

    private func run(on cluster: KafkaMockCluster, onStatus: (Status) -> Void) throws -> Summary {
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.group = "tailgate-demo"
        configuration.statusInterval = .seconds(3600)  // the demo shows its own status
        configuration.statisticsInterval = .seconds(1)
        configuration.rulesPath = options.rulesPath
        configuration.fallbackRules = try DefaultRules.ruleSet()
        configuration.decisionWait = options.decisionWait
        configuration.httpAddress = options.httpAddress
        configuration.dataDirectory = options.dataDirectory
        // A demo stops promptly: what the sinks have not taken by then is reported, not waited for.
        configuration.drainTimeout = .seconds(5)
        let kept = DemoKeptTraces()
        let engine = try Engine(configuration: configuration, observeKept: { trace, _ in kept.observe(trace) }, logger: logger)
        var producer: TrafficProducer! = try TrafficProducer(bootstrapServers: cluster.bootstrapServers, logger: logger)

        let engineDone = DispatchSemaphore(value: 0)
        let engineSummary = Mutex<RunSummary?>(nil)
        let engineThread = Thread {
            let summary = engine.run()
            engineSummary.withLock { $0 = summary }
            engineDone.signal()
        }
        engineThread.start()
        let producerDone = DispatchSemaphore(value: 0)
        var trafficOptions = TrafficProducer.Options()
        trafficOptions.traces = 0
        trafficOptions.rate = options.rate
        trafficOptions.errorRate = options.errorRate
        trafficOptions.slowRate = options.slowRate
        trafficOptions.seed = UInt64(UnixTime.nowNanoseconds())
        let producerOptions = trafficOptions
        let producerFailure = Mutex<(any Error)?>(nil)
        let traffic = producer!
        Thread {
            do { try traffic.run(producerOptions) } catch { producerFailure.withLock { $0 = error } }
            producerDone.signal()
        }.start()

        func status(elapsed: Duration, spansPerSecond: Double) -> Status {
            let received = engine.metrics.snapshot
            let glance = engine.glance
            let decisions = glance.decisions
            let sent = producer.sent
            return Status(
                elapsed: elapsed, tracesSent: sent.traces, spansSent: sent.spans, spansReceived: received.spansReceived,
                spansPerSecond: spansPerSecond, messagesRejected: received.totalMessagesRejected,
                lag: engine.metrics.consumerLag.values.reduce(0, +), partitionsAssigned: engine.metrics.partitionsAssigned,
                keptByPolicy: decisions.keptByPolicy, tracesDropped: decisions.dropped, bufferedTraces: glance.bufferedTraces,
                bufferedBytes: glance.bufferedBytes, redSeries: glance.redSeries,
                serviceGraphEdges: glance.serviceGraphEdges, httpAddress: engine.boundHTTPAddress,
                exampleErrorTrace: kept.exampleErrorTrace, sinkFailure: engine.sinkFailure)
        }

        let start = ContinuousClock.now
        var previousSpans = 0
        var previousTime = start
        while ContinuousClock.now - start < options.duration && !stopRequested.load(ordering: .relaxed) {
            // Wake each second, or at once on Ctrl-C.
            let nextTick = min(previousTime + .seconds(1), start + options.duration)
            while ContinuousClock.now < nextTick && !stopRequested.load(ordering: .relaxed) { Thread.sleep(forTimeInterval: 0.05) }
            let now = ContinuousClock.now
            let received = engine.metrics.snapshot.spansReceived
            let rate = Double(received - previousSpans) / max(0.001, (now - previousTime).timeInterval)
            onStatus(status(elapsed: now - start, spansPerSecond: rate))
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
        let failure = engine.sinkFailure
        // Read while the engine owns its partitions (its goal share is 0 once they are revoked).
        let budgets = Dictionary(engine.budgets.map { ($0.policy, $0.figures) }, uniquingKeysWith: { a, _ in a })
        engine.requestStop()
        engineDone.wait()
        while !engineThread.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        producer = nil
        let totals = engine.metrics.snapshot
        let glance = engine.glance
        let decisions = glance.decisions
        let bytesStored = options.dataDirectory.map { directory in
            (try? FileManager.default.contentsOfDirectory(atPath: directory))?.reduce(0) { total, name in
                total + ((try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0)
            } ?? 0
        }
        let result = Summary(
            traces: sent.traces, errorTraces: sent.errorTraces, slowTraces: sent.slowTraces, spansSent: sent.spans,
            spansReceived: totals.spansReceived, distinctTraces: decisions.kept + decisions.dropped, bytesIn: totals.bytesReceived,
            messagesRejected: totals.totalMessagesRejected, keptByPolicy: decisions.keptByPolicy, tracesDropped: decisions.dropped,
            errorTracesKept: kept.errorTraces, bytesKept: kept.bytes, bytesStored: bytesStored,
            redSeries: glance.redSeries, serviceGraphEdges: glance.serviceGraphEdges,
            exampleErrorTrace: kept.exampleErrorTrace, tracesStored: engineSummary.withLock { $0 }?.tracesStored ?? 0,
            keptIncomplete: decisions.keptIncomplete, sinkFailure: failure ?? engine.sinkFailure,
            budgets: budgets, fidelity: engine.sampleFidelity()?.services ?? [])
        return result
    }
}

/// Counts what the demo keeps: traces with an error span, the OTLP bytes to store, an example to open.
final class DemoKeptTraces: Sendable {
    private let errorCount = Atomic<Int>(0)
    private let byteCount = Atomic<Int>(0)
    private let example = Mutex<String?>(nil)

    func observe(_ trace: TraceData) {
        if trace.spans.contains(where: { $0.statusCode == .error }) {
            errorCount.add(1, ordering: .relaxed)
            example.withLock { $0 = $0 ?? trace.traceID.hex }
        }
        byteCount.add(trace.encodedBytes + trace.envelopes.reduce(0) { $0 + Int($1.resource.count + $1.scope.count) }, ordering: .relaxed)
    }

    var exampleErrorTrace: String? { example.withLock { $0 } }
    var errorTraces: Int { errorCount.load(ordering: .relaxed) }
    var bytes: Int { byteCount.load(ordering: .relaxed) }
}
