import ArgumentParser
import Engine
import Traffic
import Foundation
import Sampling
import Kafka
import OTLP

struct Loadgen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Produce DogBook-like OTLP traffic to a Kafka topic.",
        discussion: """
            frontend → api-gateway (HTTP) → feed, photo, user and auth services (gRPC) → PostgreSQL and Redis, \
            with OpenTelemetry semantic-convention attributes and W3C trace context. By default one trace per \
            message keyed by its hex trace id, as the collector's kafka exporter writes with partition_traces_by_id. \
            Prints a JSON summary of what was sent.
            """)

    @Option(help: "Kafka bootstrap servers.")
    var brokers: String

    @Option(help: "Topic to write to.")
    var topic: String = "otlp_spans"

    @Option(help: "Traces to send (0: until interrupted).")
    var traces: Int = 1000

    @Option(help: "Traces per second (0: as fast as possible).")
    var rate: Double = 0

    @Option(help: "Fraction of traces that fail (0…1).")
    var errorRate: Double = 0.02

    @Option(help: "Fraction of traces with a slow database call (0…1).")
    var slowRate: Double = 0.03

    @Option(help: "Fraction of traces sent without their root span (decided at decision_wait) (0…1).")
    var rootlessRate: Double = 0

    @Flag(help: "One unkeyed message per service (node agents without partition_traces_by_id): traces spread over partitions.")
    var splitByService = false

    @Option(help: "otlp_proto or otlp_json.")
    var encoding: OTLPEncoding = .otlpProto

    @Option(help: "Traces per message; above 1, messages are unkeyed (exporter without partition_traces_by_id).")
    var tracesPerMessage: Int = 1

    @Option(help: "Random seed (same seed, same traffic).")
    var seed: UInt64 = 1

    @Option(name: .customLong("kafka-property"), help: "librdkafka property KEY=VALUE (repeatable).")
    var kafkaProperties: [String] = []

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (0...1).contains(errorRate), (0...1).contains(slowRate) else {
            throw ValidationError("--error-rate and --slow-rate are fractions between 0 and 1")
        }
        guard traces >= 0, rate >= 0, tracesPerMessage >= 1 else {
            throw ValidationError("--traces and --rate must be ≥ 0, --traces-per-message ≥ 1")
        }
    }

    func run() throws {
        let logger = logging.bootstrap(label: "tailgate.loadgen")
        var properties = KafkaProperties()
        for assignment in kafkaProperties { try properties.set(assignment: assignment) }
        let producer = try TrafficProducer(bootstrapServers: brokers, properties: properties, logger: logger)
        let trap = SignalTrap([SIGINT, SIGTERM]) { _ in producer.requestStop() }
        var options = TrafficProducer.Options()
        options.topic = topic
        options.traces = traces
        options.rate = rate
        options.errorRate = errorRate
        options.slowRate = slowRate
        options.rootlessRate = rootlessRate
        options.splitByService = splitByService
        options.encoding = encoding
        options.tracesPerMessage = tracesPerMessage
        options.seed = seed
        let totals = try producer.run(options)
        withExtendedLifetime(trap) {}
        printJSON(totals)
    }
}
