internal import Crdkafka

/// librdkafka properties (https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md).
/// Any property may be set, so TLS/SASL clusters (Azure Event Hubs' Kafka endpoint, Confluent Cloud,
/// Strimzi with mTLS) work without code changes.
public struct KafkaProperties: Sendable, Equatable {
    public private(set) var values: [String: String]

    public init(_ values: [String: String] = [:]) { self.values = values }

    public subscript(key: String) -> String? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// Parses `KEY=VALUE` (the `--kafka-property` flag).
    public mutating func set(assignment: String) throws(KafkaError) {
        guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
            throw .configuration("--kafka-property expects KEY=VALUE, got '\(assignment)'")
        }
        values[String(assignment[..<equals])] = String(assignment[assignment.index(after: equals)...])
    }

    /// Properties with secrets masked, for logs and config dumps.
    public var redacted: [String: String] {
        values.reduce(into: [:]) { result, entry in
            let key = entry.key.lowercased()
            let secret = key.contains("password") || key.contains("secret") || key.contains("token")
                || key.hasSuffix(".key") || key.contains("sasl.oauthbearer.config") || key.contains("key.pem")
            result[entry.key] = secret ? "***" : entry.value
        }
    }

    /// A new `rd_kafka_conf_t`; every property is checked by librdkafka itself.
    func makeConf() throws(KafkaError) -> OpaquePointer {
        let conf = rd_kafka_conf_new()!
        var errorText = [CChar](repeating: 0, count: 512)
        for (key, value) in values.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errorText, errorText.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let text = String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw .configuration("Kafka property \(key)=\(redacted[key] ?? ""): \(text)")
            }
        }
        return conf
    }
}

/// Creates a client handle from a configured `rd_kafka_conf_t` (consumed either way).
func makeHandle(_ type: rd_kafka_type_t, _ conf: OpaquePointer) throws(KafkaError) -> OpaquePointer {
    var errorText = [CChar](repeating: 0, count: 512)
    guard let handle = rd_kafka_new(type, conf, &errorText, errorText.count) else {
        rd_kafka_conf_destroy(conf)
        let text = String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw .configuration("cannot create Kafka client: \(text)")
    }
    return handle
}

/// The text librdkafka's version reports, e.g. `2.0.2`.
public var librdkafkaVersion: String { String(cString: rd_kafka_version_str()) }

extension KafkaProperties {
    /// The properties only a consumer takes (librdkafka warns when a producer is given one).
    public static func isConsumerOnly(_ property: String) -> Bool {
        ["session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "partition.assignment.strategy",
         "auto.offset.reset", "enable.auto.commit", "auto.commit.interval.ms", "enable.auto.offset.store",
         "isolation.level", "enable.partition.eof", "check.crcs", "group.instance.id", "group.protocol.type",
         "coordinator.query.interval.ms", "queued.min.messages", "queued.max.messages.kbytes", "group.id"].contains(property)
            || property.hasPrefix("fetch.")
    }

    /// The properties only a producer takes (librdkafka warns when a consumer is given one).
    public static func isProducerOnly(_ property: String) -> Bool {
        ["acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms", "queue.buffering.max.messages",
         "queue.buffering.max.kbytes", "batch.size", "batch.num.messages", "compression.codec", "compression.type",
         "compression.level", "enable.idempotence", "message.timeout.ms", "delivery.timeout.ms", "partitioner",
         "transactional.id", "transaction.timeout.ms", "retries", "message.send.max.retries", "retry.backoff.ms",
         "max.in.flight.requests.per.connection", "max.in.flight", "sticky.partitioning.linger.ms"].contains(property)
    }

    /// What a producer of the user's `--kafka-property` set takes: all but the consumer's own.
    public var producerShare: KafkaProperties { KafkaProperties(values.filter { !Self.isConsumerOnly($0.key) }) }

    /// What a consumer of the user's `--kafka-property` set takes: all but the producer's own.
    public var consumerShare: KafkaProperties { KafkaProperties(values.filter { !Self.isProducerOnly($0.key) }) }
}
