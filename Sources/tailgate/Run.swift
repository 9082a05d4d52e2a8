import ArgumentParser
import Engine
import Foundation
import Kafka
import OTLP

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Consume spans from Kafka as a consumer-group member and process them.",
        discussion: """
            Joins consumer group --group on the --topic topics, decodes every message (otlp_proto or otlp_json, \
            one trace or many per message), counts and sets aside bad input, and commits offsets only for what \
            is handled. SIGTERM/SIGINT: stop fetching, commit, exit 0. With --exit-on-eof it stops by itself when \
            every assigned partition is at its end and prints a JSON summary.
            """)

    @Option(help: "Kafka bootstrap servers, comma-separated (host:port,...).")
    var brokers: String = ""

    @Option(name: .customLong("topic"), help: "Topic to consume (repeatable; default otlp_spans).")
    var topics: [String] = []

    @Option(help: "Consumer group id; every replica of one deployment uses the same.")
    var group: String = "tailgate"

    @Option(help: "Message encoding: otlp_proto or otlp_json (the collector kafka exporter's).")
    var encoding: OTLPEncoding = .otlpProto

    @Option(name: .customLong("kafka-property"), help: "librdkafka property KEY=VALUE (repeatable), e.g. security.protocol=SASL_SSL.")
    var kafkaProperties: [String] = []

    @Option(help: "Copy messages that do not decode to this topic (with reason headers).")
    var deadLetterTopic: String?

    @Flag(help: "Process everything, commit, and exit when every assigned partition is at its end.")
    var exitOnEof = false

    @Option(help: "How often to log a status line (e.g. 10s).")
    var statusInterval: String = "10s"

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = logging.bootstrap(label: "tailgate")
        var configuration = EngineConfiguration(brokers: brokers)
        if !topics.isEmpty { configuration.topics = topics }
        configuration.group = group
        configuration.encoding = encoding
        for assignment in kafkaProperties { try configuration.kafkaProperties.set(assignment: assignment) }
        configuration.deadLetterTopic = deadLetterTopic
        configuration.exitOnEOF = exitOnEof
        configuration.statusInterval = try parseDuration(statusInterval, option: "--status-interval")

        let engine = try Engine(configuration: configuration, logger: logger)
        let trap = SignalTrap([SIGINT, SIGTERM]) { signal in
            logger.info("signal \(signal): stopping (finishing the current batch, committing)")
            engine.requestStop()
        }
        let summary = engine.run()
        withExtendedLifetime(trap) {}
        printJSON(summary)
        if summary.outcome.hasPrefix("fatal") { throw ExitCode.failure }
    }
}
