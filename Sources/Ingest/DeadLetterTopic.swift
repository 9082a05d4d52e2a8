public import Kafka
public import Logging
public import OTLP

/// Copies refused messages, byte for byte, to a Kafka topic with headers saying why and where they
/// came from, so they can be inspected and replayed after a fix.
public final class DeadLetterTopic: Sendable {
    public let topic: String
    private let producer: KafkaProducer

    public init(topic: String, bootstrapServers: String, properties: KafkaProperties, logger: Logger) throws(KafkaError) {
        self.topic = topic
        producer = try KafkaProducer(bootstrapServers: bootstrapServers, properties: properties, logger: logger)
    }

    /// Queues a copy of a refused message; throws only if librdkafka's queue stays full.
    func send(key: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer, source: TopicPartition, offset: Int64, error: OTLPDecodeError) throws(KafkaError) {
        try producer.send(
            topic: topic, key: key, value: payload,
            headers: [
                ("tailgate.reject.reason", Array(error.reason.rawValue.utf8)),
                ("tailgate.reject.detail", Array(error.description.utf8)),
                ("tailgate.source.topic", Array(source.topic.utf8)),
                ("tailgate.source.partition", Array(String(source.partition).utf8)),
                ("tailgate.source.offset", Array(String(offset).utf8)),
            ], queueFullWait: .seconds(5))
        producer.poll()
    }

    /// Queues a copy of a kept span too large for the output topic (a one-span request), keyed by its
    /// trace id; throws only if librdkafka refuses it too (it may be over this topic's limit as well).
    public func sendOversizeSpan(traceID: TraceID, request: [UInt8], reason: String, outputTopic: String) throws(KafkaError) {
        try producer.send(
            topic: topic, key: Array(traceID.hex.utf8), value: request,
            headers: [
                ("tailgate.reject.reason", Array("oversize_span".utf8)),
                ("tailgate.reject.detail", Array(reason.utf8)),
                ("tailgate.output.topic", Array(outputTopic.utf8)),
            ])
        producer.poll()
    }

    /// Waits for queued copies to be delivered.
    public func flush(timeout: Duration) throws(KafkaError) { try producer.flush(timeout: timeout) }
}
