import Foundation
public import Kafka
public import Logging
public import OTLP
import Synchronization

/// Everything `tailgate run` is told (flags and, later, the config file).
public struct EngineConfiguration: Sendable {
    public var brokers: String
    public var topics: [String] = ["otlp_spans"]
    public var group = "tailgate"
    public var encoding = OTLPEncoding.otlpProto
    public var kafkaProperties = KafkaProperties()
    public var exitOnEOF = false
    /// Copy refused messages here (nil: count and log only).
    public var deadLetterTopic: String?
    /// How often a status line is logged.
    public var statusInterval: Duration = .seconds(10)
    /// How often librdkafka reports consumer lag.
    public var statisticsInterval: Duration = .seconds(5)

    public init(brokers: String) { self.brokers = brokers }

    /// Checks what librdkafka cannot: names and combinations. Errors name the option and the fix.
    public func validate() throws(ConfigurationError) {
        guard !brokers.trimmingSpaces().isEmpty else {
            throw ConfigurationError("--brokers is required: the Kafka bootstrap servers, e.g. --brokers kafka-0.kafka:9092")
        }
        guard !topics.isEmpty, topics.allSatisfy({ !$0.isEmpty }) else {
            throw ConfigurationError("--topic: give at least one non-empty topic name")
        }
        guard !group.isEmpty else { throw ConfigurationError("--group: the consumer group id must not be empty") }
        if let deadLetterTopic, topics.contains(deadLetterTopic) {
            throw ConfigurationError("--dead-letter-topic \(deadLetterTopic) is also an input topic; refused messages would come back forever")
        }
    }
}

/// What a run did, printed as JSON by `tailgate run` when it ends.
public struct RunSummary: Sendable, Codable, Equatable {
    public var outcome: String
    public var messages: Int
    public var bytes: Int
    public var spans: Int
    public var messagesRejected: [String: Int]
    public var spansRejected: [String: Int]
    public var deadLettered: Int
}

/// The engine's lifecycle. Today: ingest (consume, decode, account for bad input, commit); the trace
/// windows, rules and sinks plug in as its ``IngestSink``.
public final class Engine: Sendable {
    public let configuration: EngineConfiguration
    public let metrics: IngestMetrics
    private let loop: IngestLoop
    private let logger: Logger

    public init(configuration: EngineConfiguration, sink: any IngestSink = AcknowledgeOnDecode(), logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        metrics = IngestMetrics()
        var deadLetter: DeadLetterTopic?
        if let topic = configuration.deadLetterTopic {
            deadLetter = try DeadLetterTopic(
                topic: topic, bootstrapServers: configuration.brokers, properties: configuration.kafkaProperties, logger: logger)
        }
        let consumer = KafkaConsumerConfiguration(
            bootstrapServers: configuration.brokers, groupID: configuration.group, topics: configuration.topics,
            properties: configuration.kafkaProperties, statisticsInterval: configuration.statisticsInterval)
        loop = try IngestLoop(
            consumer: consumer, encoding: configuration.encoding, sink: sink, deadLetter: deadLetter, metrics: metrics,
            exitOnEOF: configuration.exitOnEOF, logger: logger)
    }

    /// Stop fetching, hand on what was polled, commit, leave the group; ``run()`` then returns.
    public func requestStop() { loop.requestStop() }

    /// Backpressure switch (used by the buffer limit and the sinks).
    public func setPaused(_ paused: Bool) { loop.setPaused(paused) }

    /// Runs until stopped, at the end of the input (`exitOnEOF`), or a fatal Kafka error. Blocking:
    /// the ingest loop gets its own thread; this one logs status.
    public func run() -> RunSummary {
        let outcome = Mutex<IngestLoop.Outcome?>(nil)
        let finished = DispatchSemaphore(value: 0)
        let loop = self.loop
        let thread = Thread {
            let result = loop.run()
            outcome.withLock { $0 = result }
            finished.signal()
        }
        thread.name = "tailgate-ingest"
        thread.start()
        logger.info(
            "consuming", metadata: [
                "brokers": "\(configuration.brokers)", "topics": "\(configuration.topics.joined(separator: ","))",
                "group": "\(configuration.group)", "encoding": "\(configuration.encoding.rawValue)",
                "librdkafka": "\(librdkafkaVersion)",
            ])
        var previous = metrics.snapshot
        while finished.wait(timeout: .now() + configuration.statusInterval.timeInterval) == .timedOut {
            let now = metrics.snapshot
            let lag = metrics.consumerLag.values.reduce(0, +)
            logger.info(
                "status", metadata: [
                    "spans": "\(now.spansReceived)", "spans_per_s": "\(Int(Double(now.spansReceived - previous.spansReceived) / configuration.statusInterval.timeInterval))",
                    "messages": "\(now.messagesReceived)", "rejected": "\(now.totalMessagesRejected)", "lag": "\(lag)",
                ])
            previous = now
        }
        let result = outcome.withLock { $0 } ?? .stopped
        let totals = metrics.snapshot
        let outcomeText: String
        switch result {
        case .stopped: outcomeText = "stopped"
        case .reachedEnd: outcomeText = "end_of_input"
        case .fatal(let error): outcomeText = "fatal: \(error)"
        }
        return RunSummary(
            outcome: outcomeText, messages: totals.messagesReceived, bytes: totals.bytesReceived, spans: totals.spansReceived,
            messagesRejected: Dictionary(uniqueKeysWithValues: totals.messagesRejected.map { ($0.key.rawValue, $0.value) }),
            spansRejected: Dictionary(uniqueKeysWithValues: totals.spansRejected.map { ($0.key.rawValue, $0.value) }),
            deadLettered: totals.messagesDeadLettered)
    }
}

extension Duration {
    /// Seconds as a `Double` (for Dispatch timeouts and rates).
    public var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
