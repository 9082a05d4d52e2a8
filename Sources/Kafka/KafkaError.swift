internal import Crdkafka

/// An error reported by librdkafka, as an open struct of its code and text (C types stay inside).
public struct KafkaError: Error, Sendable, CustomStringConvertible, Equatable {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative: client-side, positive: broker).
    public var code: Int32
    /// The symbolic name, e.g. `_ALL_BROKERS_DOWN`, `UNKNOWN_TOPIC_OR_PART`.
    public var name: String
    /// What happened, in librdkafka's words plus ours.
    public var message: String

    public init(code: Int32, name: String, message: String) {
        self.code = code
        self.name = name
        self.message = message
    }

    init(_ error: rd_kafka_resp_err_t, _ context: String) {
        code = error.rawValue
        name = String(cString: rd_kafka_err2name(error))
        message = "\(context): \(String(cString: rd_kafka_err2str(error)))"
    }

    /// Takes ownership of an `rd_kafka_error_t` and destroys it.
    init(consuming error: OpaquePointer, _ context: String) {
        code = rd_kafka_error_code(error).rawValue
        name = String(cString: rd_kafka_error_name(error))
        message = "\(context): \(String(cString: rd_kafka_error_string(error)))"
        isFatal = rd_kafka_error_is_fatal(error) != 0
        isRetriable = rd_kafka_error_is_retriable(error) != 0
        transactionRequiresAbort = rd_kafka_error_txn_requires_abort(error) != 0
        rd_kafka_error_destroy(error)
    }

    /// The client cannot go on (e.g. a transactional producer fenced by a newer instance).
    public var isFatal = false
    /// The same call may succeed if repeated (e.g. a commit that timed out).
    public var isRetriable = false
    /// The current transaction must be aborted (its messages and offsets are discarded).
    public var transactionRequiresAbort = false

    /// A configuration problem (unknown property, bad value): a usage error for the CLI.
    public static func configuration(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, name: "_INVALID_ARG", message: message)
    }

    /// A message over a size limit, refused before it is produced (see ``isMessageTooLarge``).
    public static func messageTooLarge(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue, name: "MSG_SIZE_TOO_LARGE", message: message)
    }

    public var description: String { "\(message) [\(name)]" }

    /// The partition has no more messages for now (consumer `enable.partition.eof`).
    public var isPartitionEOF: Bool { code == RD_KAFKA_RESP_ERR__PARTITION_EOF.rawValue }
    /// No broker is reachable; librdkafka keeps retrying.
    public var isAllBrokersDown: Bool { code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN.rawValue }
    /// The message is larger than the producer's `message.max.bytes` or the topic's
    /// `max.message.bytes`: sending it again can never succeed.
    public var isMessageTooLarge: Bool { code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue }
    /// librdkafka's local queue is full; poll and retry.
    public var isQueueFull: Bool { code == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue }
}
