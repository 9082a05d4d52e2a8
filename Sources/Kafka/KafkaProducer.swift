internal import Crdkafka
public import Logging
import Synchronization

/// A librdkafka producer: the dead-letter topic, the Kafka sink and the traffic generator use it.
/// Thread-safe; payloads are copied on `send` (callers may reuse their buffers at once), except by
/// `send(topic:key:handingOver:)`, which keeps the array until its delivery report.
public final class KafkaProducer: @unchecked Sendable {
    // `deinit` destroys the handle before the context it calls back into is released.
    private let handle: OpaquePointer
    private let context: ProducerContext
    private let unmanagedContext: Unmanaged<ProducerContext>

    /// - Parameter properties: librdkafka properties; `bootstrap.servers` is required.
    public init(bootstrapServers: String, properties: KafkaProperties = KafkaProperties(), logger: Logger) throws(KafkaError) {
        var effective = KafkaProperties([
            "bootstrap.servers": bootstrapServers,
            "client.id": "tailgate",
            "linger.ms": "5",
            "compression.codec": "lz4",
            // Idempotence keeps retries from duplicating or reordering messages within a partition.
            "enable.idempotence": "true",
        ])
        for (key, value) in properties.values { effective[key] = value }
        let conf = try effective.makeConf()
        context = ProducerContext(logger: logger)
        unmanagedContext = Unmanaged.passRetained(context)
        rd_kafka_conf_set_opaque(conf, unmanagedContext.toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf, producerDeliveryCallback)
        rd_kafka_conf_set_error_cb(conf, producerErrorCallback)
        do {
            handle = try makeHandle(RD_KAFKA_PRODUCER, conf)
        } catch {
            unmanagedContext.release()
            throw error
        }
    }

    deinit {
        _ = rd_kafka_flush(handle, 5_000)
        rd_kafka_destroy(handle)
        unmanagedContext.release()
    }

    /// Queues a message (copied). When librdkafka's queue is full, serves delivery reports and
    /// retries for up to `queueFullWait`, then throws.
    public func send(
        topic: String, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer,
        headers: [(String, [UInt8])] = [], partition: Int32? = nil, queueFullWait: Duration = .seconds(30),
        onDelivery: (@Sendable (KafkaError?) -> Void)? = nil
    ) throws(KafkaError) {
        try enqueue(
            topic: topic, key: key, value: value, headers: headers, partition: partition, queueFullWait: queueFullWait,
            box: onDelivery.map { DeliveryBox($0) }, copy: true)
    }

    /// Queues a message whose bytes librdkafka reads where they are, without copying them: `value`
    /// is kept alive until its delivery report (the router's per-trace requests, each built for one
    /// message). The key is copied. Otherwise as ``send(topic:key:value:headers:partition:queueFullWait:onDelivery:)``.
    public func send(
        topic: String, key: UnsafeRawBufferPointer?, handingOver value: [UInt8], queueFullWait: Duration = .seconds(30),
        onDelivery: (@Sendable (KafkaError?) -> Void)? = nil
    ) throws(KafkaError) {
        let box = DeliveryBox(onDelivery, keeping: value)
        // The box holds the array, so its storage stays where librdkafka was told it is.
        let result: Result<Void, KafkaError> = box.payload.withUnsafeBytes { bytes in
            do throws(KafkaError) {
                try enqueue(
                    topic: topic, key: key, value: bytes, headers: [], partition: nil, queueFullWait: queueFullWait, box: box, copy: false)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    private func enqueue(
        topic: String, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer, headers: [(String, [UInt8])],
        partition: Int32?, queueFullWait: Duration, box: DeliveryBox?, copy: Bool
    ) throws(KafkaError) {
        let deadline = ContinuousClock.now + queueFullWait
        while true {
            var headerList: OpaquePointer? = nil
            if !headers.isEmpty {
                headerList = rd_kafka_headers_new(headers.count)
                for (name, bytes) in headers {
                    _ = bytes.withUnsafeBytes { rd_kafka_header_add(headerList, name, -1, $0.baseAddress, $0.count) }
                }
            }
            // The delivery callback takes the box back (calls it, lets go of the bytes) once
            // librdkafka is done.
            let opaque = box.map { Unmanaged.passRetained($0).toOpaque() }
            let error = tailgate_produce(
                handle, topic, partition ?? RD_KAFKA_PARTITION_UA, key?.baseAddress, key?.count ?? 0, value.baseAddress,
                value.count, headerList, opaque, copy ? 1 : 0)
            if error == RD_KAFKA_RESP_ERR_NO_ERROR {
                context.sent.add(1, ordering: .relaxed)
                return
            }
            if let opaque { Unmanaged<DeliveryBox>.fromOpaque(opaque).release() }
            if let headerList { rd_kafka_headers_destroy(headerList) }
            guard error == RD_KAFKA_RESP_ERR__QUEUE_FULL, ContinuousClock.now < deadline else {
                throw KafkaError(error, "produce to \(topic)")
            }
            rd_kafka_poll(handle, 50)
        }
    }

    /// Convenience over arrays.
    public func send(topic: String, key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])] = []) throws(KafkaError) {
        let result: Result<Void, KafkaError> = value.withUnsafeBytes { valueBytes in
            func attempt(_ keyBytes: UnsafeRawBufferPointer?) -> Result<Void, KafkaError> {
                do throws(KafkaError) {
                    try send(topic: topic, key: keyBytes, value: valueBytes, headers: headers)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            guard let key else { return attempt(nil) }
            return key.withUnsafeBytes { attempt($0) }
        }
        try result.get()
    }

    /// Serves delivery reports (call regularly when producing continuously).
    public func poll(timeout: Duration = .zero) {
        rd_kafka_poll(handle, milliseconds(timeout))
    }

    /// Waits until every queued message is delivered or failed; throws on timeout.
    public func flush(timeout: Duration) throws(KafkaError) {
        let error = rd_kafka_flush(handle, Int32(clamping: timeout.components.seconds * 1000))
        if error != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(error, "flush") }
    }

    /// Messages waiting in librdkafka's queue (not yet acknowledged or failed).
    public var queueLength: Int { Int(rd_kafka_outq_len(handle)) }

    /// How many partitions `topic` has (a metadata request, at most `timeout`); nil when unknown.
    /// Asked before the first message, it connects the producer and learns the topic's leaders, so
    /// the first batch does not wait for that.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(5)) -> Int? {
        topicPartitionCount(handle, topic, timeout)
    }

    // MARK: Transactions (needs `transactional.id`): consume-transform-produce, exactly once

    /// Registers the `transactional.id` with the cluster, fencing any older producer with the same id.
    public func initTransactions(timeout: Duration) throws(KafkaError) {
        if let error = rd_kafka_init_transactions(handle, milliseconds(timeout)) { throw KafkaError(consuming: error, "init transactions") }
    }

    public func beginTransaction() throws(KafkaError) {
        if let error = rd_kafka_begin_transaction(handle) { throw KafkaError(consuming: error, "begin transaction") }
    }

    /// Makes `offsets` (next offsets to consume) part of the transaction, as a commit of `consumer`'s
    /// group: they are committed if and only if the transaction is.
    public func sendOffsetsToTransaction(_ offsets: [TopicPartition: Int64], consumer: KafkaConsumer, timeout: Duration) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = PartitionList.make(offsets.map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard let metadata = consumer.groupMetadata() else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__STATE.rawValue, name: "_STATE", message: "send offsets to transaction: the consumer has no group metadata")
        }
        defer { rd_kafka_consumer_group_metadata_destroy(metadata) }
        if let error = rd_kafka_send_offsets_to_transaction(handle, list, metadata, milliseconds(timeout)) {
            throw KafkaError(consuming: error, "send offsets to transaction")
        }
    }

    /// Flushes the transaction's messages and commits them with its offsets.
    public func commitTransaction(timeout: Duration) throws(KafkaError) {
        if let error = rd_kafka_commit_transaction(handle, milliseconds(timeout)) { throw KafkaError(consuming: error, "commit transaction") }
    }

    /// Discards the transaction's messages (read_committed consumers never see them) and offsets.
    public func abortTransaction(timeout: Duration) throws(KafkaError) {
        if let error = rd_kafka_abort_transaction(handle, milliseconds(timeout)) { throw KafkaError(consuming: error, "abort transaction") }
    }


    /// Messages queued, delivered, and failed after librdkafka's own retries.
    public var counts: (sent: Int, delivered: Int, failed: Int) {
        (context.sent.load(ordering: .relaxed), context.delivered.load(ordering: .relaxed), context.failed.load(ordering: .relaxed))
    }

    /// Why the last failed delivery failed (nil while none has).
    public var lastDeliveryError: KafkaError? { context.lastFailure.withLock { $0 } }
}

final class ProducerContext: Sendable, ClientCallbackContext {
    let logger: Logger
    let throttle = LogThrottle(interval: .seconds(10))
    let sent = Atomic<Int>(0)
    let delivered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let lastFailure = Mutex<KafkaError?>(nil)

    init(logger: Logger) { self.logger = logger }

    func reportFatal(_ error: KafkaError) {
        logger.critical("Kafka producer fatal error: \(error)")
    }
}

/// A per-message delivery callback, and the bytes of a message sent without a copy, carried through
/// librdkafka as the message's opaque.
final class DeliveryBox {
    let callback: (@Sendable (KafkaError?) -> Void)?
    let payload: [UInt8]
    init(_ callback: (@Sendable (KafkaError?) -> Void)?, keeping payload: [UInt8] = []) {
        self.callback = callback
        self.payload = payload
    }
}

private func producerDeliveryCallback(_ handle: OpaquePointer?, _ message: UnsafePointer<rd_kafka_message_t>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let opaque, let message else { return }
    let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
    if let box = message.pointee._private {
        let delivery = Unmanaged<DeliveryBox>.fromOpaque(box).takeRetainedValue()
        delivery.callback?(message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(message.pointee.err, "deliver"))
    }
    if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
        context.delivered.add(1, ordering: .relaxed)
    } else {
        context.failed.add(1, ordering: .relaxed)
        let error = KafkaError(message.pointee.err, "deliver")
        context.lastFailure.withLock { $0 = error }
        context.throttle.log(context.logger, level: .error, key: "delivery-\(error.code)", "Kafka delivery failed: \(error)")
    }
}

private func producerErrorCallback(_ handle: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let opaque else { return }
    let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
    let name = String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code)))
    context.throttle.log(context.logger, level: .warning, key: "error-\(code)", "Kafka producer \(name): \(reason.map { String(cString: $0) } ?? "") (retrying)")
}

/// How many partitions `topic` has, asked of the cluster through a client `handle` (a metadata
/// request, at most `timeout`); nil when unknown or the request failed.
func topicPartitionCount(_ handle: OpaquePointer, _ topic: String, _ timeout: Duration) -> Int? {
    guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else { return nil }
    defer { rd_kafka_topic_destroy(topicHandle) }
    var metadata: UnsafePointer<rd_kafka_metadata>?
    guard rd_kafka_metadata(handle, 0, topicHandle, &metadata, milliseconds(timeout)) == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return nil }
    defer { rd_kafka_metadata_destroy(metadata) }
    guard metadata.pointee.topic_cnt > 0, let topics = metadata.pointee.topics, topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
    return Int(topics[0].partition_cnt)
}

/// `duration` in whole milliseconds, as librdkafka's timeouts take it (clamped to `Int32`).
func milliseconds(_ duration: Duration) -> Int32 {
    Int32(clamping: duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
}
