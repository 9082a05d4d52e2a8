internal import Crdkafka
import Foundation
public import Logging

/// librdkafka's built-in mock cluster (`rdkafka_mock.h`): real Kafka protocol brokers on loopback,
/// with consumer groups and offset commits. The embedded broker of `tailgate dev-broker`, the demo
/// and the tests — hermetic, no JVM, no Docker.
public final class KafkaMockCluster: @unchecked Sendable {
    // The cluster lives inside `owner`'s handle: destroy the cluster first, then the handle.
    private let owner: OpaquePointer
    private let cluster: OpaquePointer
    /// `host:port,...` for `bootstrap.servers`.
    public let bootstrapServers: String
    public let brokerCount: Int

    /// Starts `brokers` brokers on loopback and creates `topics` (name → partition count).
    public init(brokers: Int = 1, topics: [(name: String, partitions: Int)], logger: Logger) throws(KafkaError) {
        let conf = try KafkaProperties(["client.id": "tailgate-dev-broker", "log_level": "3"]).makeConf()
        owner = try makeHandle(RD_KAFKA_PRODUCER, conf)
        guard let cluster = rd_kafka_mock_cluster_new(owner, Int32(brokers)) else {
            rd_kafka_destroy(owner)
            throw .configuration("librdkafka could not start its mock cluster")
        }
        self.cluster = cluster
        brokerCount = brokers
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
        for topic in topics {
            try createTopic(topic.name, partitions: topic.partitions)
        }
        logger.debug("mock cluster started", metadata: ["bootstrap": "\(bootstrapServers)"])
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(owner)
    }

    /// Creates a topic (replication factor 1 for a single broker, else up to 3).
    public func createTopic(_ name: String, partitions: Int) throws(KafkaError) {
        let error = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), Int32(min(brokerCount, 3)))
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(error, "create topic \(name)") }
    }

    /// The cluster answers the next `count` produce requests (from any client) with "message too
    /// large", as a broker whose `max.message.bytes` is below the messages does: fault injection.
    public func refuseNextProduceRequestsAsTooLarge(_ count: Int) { refuseNextProduceRequests(count, as: .messageTooLarge) }

    /// Why the mock refuses a produce request.
    public enum ProduceRefusal: Sendable {
        /// Permanent: librdkafka does not retry it.
        case messageTooLarge
        /// The principal may not write the topic (an ACL missing, or removed). Permanent.
        case topicAuthorizationFailed
        /// Too few in-sync replicas: retriable, so librdkafka tries again (each try takes one of the
        /// refusals) and the message waits in the producer's queue meanwhile.
        case notEnoughReplicas
    }

    /// The next `count` produce requests, to any broker, fail with `refusal`.
    public func refuseNextProduceRequests(_ count: Int, as refusal: ProduceRefusal) {
        let code: rd_kafka_resp_err_t
        switch refusal {
        case .messageTooLarge: code = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
        case .topicAuthorizationFailed: code = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
        case .notEnoughReplicas: code = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS
        }
        let errors = [rd_kafka_resp_err_t](repeating: code, count: count)
        errors.withUnsafeBufferPointer { rd_kafka_mock_push_request_errors_array(cluster, 0 /* Produce */, count, $0.baseAddress) }
    }

    /// Takes a broker down (connections closed, new ones refused) or brings it back: fault injection.
    public func setBroker(_ id: Int32, down: Bool) throws(KafkaError) {
        let error = down ? rd_kafka_mock_broker_set_down(cluster, id) : rd_kafka_mock_broker_set_up(cluster, id)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(error, "broker \(id) \(down ? "down" : "up")") }
    }
}
