import ArgumentParser
import Engine
import Route
import Foundation
import Sampling
import Kafka
import OTLP
import Synchronization

struct Route: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-key OTLP topics by trace id, so replicas of `tailgate run` each see whole traces.",
        discussion: """
            Consumes OTLP messages of any shape (otlp_proto or otlp_json, many traces per message, any key) from the \
            --topic topics as consumer group --group, splits each poll's messages per trace (every span byte for byte \
            under its resource and scope) and produces one otlp_proto message per trace to --output-topic, keyed by \
            its 32-character hex trace id: what the collector's kafka exporter writes with partition_traces_by_id. \
            Partitioned like the Java client and franz-go (murmur2). \
            Delivery: with Kafka transactions (the default when the cluster supports them) each batch's messages \
            and its input offsets commit together, so a crash neither loses nor duplicates; at least once otherwise \
            (input offsets committed after every message of the batch is acknowledged with acks=all). Consumers of \
            the output must read committed messages only (isolation.level=read_committed, librdkafka's default). \
            Bad input is refused, counted and dead-lettered as by `run`. While the output is slow or down the router \
            stops reading; it never drops. SIGTERM/SIGINT: finish the batch, commit, exit 0.
            """)

    @OptionGroup var input: KafkaInputOptions

    @Option(help: "The keyed topic to produce to (read by `tailgate run --topic`).")
    var outputTopic: String = ""

    @Option(help: "auto (transactions when the cluster supports them), transactional, or at-least-once.")
    var delivery: String = "auto"

    @Option(help: "The transactional producer's id, stable per replica (default tailgate-route-HOSTNAME: a pod's name).")
    var transactionalId: String?

    @Option(help: "Messages per batch (one transaction, or one flush and commit).")
    var batchMessages: Int = 2_000

    @Option(help: "Largest output message; a larger trace leaves split by span (e.g. 1MB: the topic's max.message.bytes).")
    var maxMessageBytes: String = "1000000"

    @Option(help: "HTTP listener for /metrics, /-/healthy and /-/ready (HOST:PORT; empty: none).")
    var http: String = "0.0.0.0:3201"

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.bootstrap(label: "tailgate-route")
        guard !input.brokers.isEmpty else { throw ConfigurationError("--brokers is required") }
        guard !outputTopic.isEmpty else { throw ConfigurationError("--output-topic is required: the keyed topic `tailgate run` consumes") }
        var configuration = RouterConfiguration(brokers: input.brokers, outputTopic: outputTopic)
        if !input.topics.isEmpty { configuration.topics = input.topics }
        guard !configuration.topics.contains(outputTopic) else {
            throw ConfigurationError("--output-topic \(outputTopic) is also an input --topic: the router would read its own output")
        }
        configuration.group = input.group ?? configuration.group
        configuration.encoding = input.encoding
        guard let mode = RouterDelivery(rawValue: delivery) else {
            throw ConfigurationError("--delivery: '\(delivery)' is not auto, transactional or at-least-once")
        }
        configuration.delivery = mode
        if let transactionalId { configuration.transactionalID = transactionalId }
        guard batchMessages >= 1 else { throw ConfigurationError("--batch-messages must be at least 1") }
        configuration.maxBatchMessages = batchMessages
        let maxBytes = try parseByteSize(maxMessageBytes, option: "--max-message-bytes")
        guard maxBytes >= 1024 else { throw ConfigurationError("--max-message-bytes must be at least 1KiB") }
        configuration.maxMessageBytes = maxBytes
        configuration.kafkaProperties = try input.properties()
        configuration.deadLetterTopic = input.deadLetterTopic
        configuration.exitOnEOF = input.exitOnEof
        configuration.httpAddress = http.isEmpty ? nil : http
        configuration.statusInterval = try parseDuration(input.statusInterval, option: "--status-interval")

        let running = Mutex<(router: Router?, stopRequested: Bool)>((nil, false))
        let trap = SignalTrap([SIGINT, SIGTERM]) { signal in
            let (router, again) = running.withLock { state in
                defer { state.stopRequested = true }
                return (state.router, state.stopRequested)
            }
            if again {
                logger.warning("signal \(signal) again: exiting now; the open batch is read again by the next owner")
                Foundation.exit(130)
            }
            logger.info("signal \(signal): finishing the batch, committing, leaving the group (a second signal exits at once)")
            router?.requestStop()
        }
        let router = try Router(configuration: configuration, logger: logger)
        let stopEarly = running.withLock { state in
            state.router = router
            return state.stopRequested
        }
        if stopEarly { router.requestStop() }
        let summary = router.run()
        withExtendedLifetime(trap) {}
        printJSON(summary)
        if summary.outcome.hasPrefix("fatal") { throw ExitCode.failure }
    }
}
