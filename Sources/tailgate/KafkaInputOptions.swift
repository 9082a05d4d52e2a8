import ArgumentParser
import Kafka
import OTLP

/// The consumer-side flags `run` and `route` share: where to read, as which group, how input is
/// encoded, where refused messages go, and when to stop. Each command adds its own.
struct KafkaInputOptions: ParsableArguments {
    @Option(help: "YAML file of settings, keyed by flag name (brokers: …, topic: [...], kafka-property: {key: value}); flags given here win.")
    var config: String?

    @Option(help: "Kafka bootstrap servers, comma-separated (host:port,...).")
    var brokers: String = ""

    @Option(name: .customLong("topic"), help: "Topic to consume (repeatable; default otlp_spans).")
    var topics: [String] = []

    @Option(help: "Consumer group id; every replica of one deployment uses the same (default: tailgate for run, tailgate-route for route).")
    var group: String?

    @Option(help: "Message encoding: otlp_proto or otlp_json (the collector kafka exporter's).")
    var encoding: OTLPEncoding = .otlpProto

    @Option(name: .customLong("kafka-property"), help: "librdkafka property KEY=VALUE (repeatable), e.g. security.protocol=SASL_SSL; also $TAILGATE_KAFKA_<PROPERTY>.")
    var kafkaProperties: [String] = []

    @Option(help: "Copy messages that do not decode to this topic (with reason headers).")
    var deadLetterTopic: String?

    @Flag(help: "Process everything, commit, and exit when every assigned partition is at its end.")
    var exitOnEof = false

    @Option(help: "How often to log a status line (e.g. 10s).")
    var statusInterval: String = "10s"

    /// The librdkafka properties: `TAILGATE_KAFKA_*`, then the flags.
    func properties() throws(KafkaError) -> KafkaProperties { try kafkaPropertiesFromEnvironment(then: kafkaProperties) }
}
