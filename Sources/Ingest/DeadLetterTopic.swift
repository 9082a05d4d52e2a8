import Dispatch
import Foundation
public import Kafka
public import Logging
public import OTLP
import Synchronization

/// A copy on its way to the dead-letter topic. What it copies may be committed past only once the
/// topic has it: until then the offset stays held, and a crash replays the message (and copies it
/// again) instead of losing both.
public final class DeadLetterCopy: Sendable, Equatable {
    private let state = Mutex<(acknowledged: Bool, waiting: [@Sendable () -> Void])>((false, []))

    public init() {}

    public var isAcknowledged: Bool { state.withLock { $0.acknowledged } }

    /// Runs `body` once the topic has the copy (at once, here, if it already has).
    public func whenAcknowledged(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { state in
            if state.acknowledged { return true }
            state.waiting.append(body)
            return false
        }
        if now { body() }
    }

    func acknowledge() {
        let waiting = state.withLock { state in
            state.acknowledged = true
            defer { state.waiting.removeAll() }
            return state.waiting
        }
        for body in waiting { body() }
    }

    public static func == (left: DeadLetterCopy, right: DeadLetterCopy) -> Bool { left === right }
}

/// Copies refused messages, byte for byte, to a Kafka topic with headers saying why and where they
/// came from, so they can be inspected and replayed after a fix. Each copy is retried (with backoff,
/// as long as it takes) until the topic acknowledges it; its ``DeadLetterCopy`` says when.
public final class DeadLetterTopic: Sendable {
    public let topic: String
    private let producer: KafkaProducer
    private let logger: Logger
    private let throttle = LogThrottle(interval: .seconds(10))
    private let poller = Poller()
    private let failedAttempts = Atomic<Int>(0)

    public init(topic: String, bootstrapServers: String, properties: KafkaProperties, logger: Logger) throws(KafkaError) {
        self.topic = topic
        self.logger = logger
        producer = try KafkaProducer(bootstrapServers: bootstrapServers, properties: properties, logger: logger)
        // Delivery reports are served here, so a copy is acknowledged even when no other follows it.
        let producer = self.producer
        let poller = self.poller
        Thread {
            while poller.running.load(ordering: .relaxed) { producer.poll(timeout: .milliseconds(100)) }
        }.start()
    }

    deinit { poller.running.store(false, ordering: .relaxed) }

    private final class Poller: Sendable {
        let running = Atomic<Bool>(true)
    }

    /// Attempts that failed (each is retried).
    public var failures: Int { failedAttempts.load(ordering: .relaxed) }

    /// Copies a refused message.
    func send(key: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer, source: TopicPartition, offset: Int64, error: OTLPDecodeError) -> DeadLetterCopy {
        let copy = DeadLetterCopy()
        publish(
            key: key.map { Array($0) }, value: Array(payload),
            headers: [
                ("tailgate.reject.reason", Array(error.reason.rawValue.utf8)),
                ("tailgate.reject.detail", Array(error.description.utf8)),
                ("tailgate.source.topic", Array(source.topic.utf8)),
                ("tailgate.source.partition", Array(String(source.partition).utf8)),
                ("tailgate.source.offset", Array(String(offset).utf8)),
            ], copy: copy, attempt: 0)
        return copy
    }

    /// Copies a kept span too large for the output topic (a one-span request), keyed by its trace id.
    public func sendOversizeSpan(traceID: TraceID, request: [UInt8], reason: String, outputTopic: String) -> DeadLetterCopy {
        let copy = DeadLetterCopy()
        publish(
            key: Array(traceID.hex.utf8), value: request,
            headers: [
                ("tailgate.reject.reason", Array("oversize_span".utf8)),
                ("tailgate.reject.detail", Array(reason.utf8)),
                ("tailgate.output.topic", Array(outputTopic.utf8)),
            ], copy: copy, attempt: 0)
        return copy
    }

    private func publish(key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8])], copy: DeadLetterCopy, attempt: Int) {
        let retry: @Sendable (String) -> Void = { [self] reason in
            failedAttempts.add(1, ordering: .relaxed)
            throttle.log(
                logger, level: .error, key: "dead-letter",
                "copying a message to \(topic) failed (attempt \(attempt + 1)); retrying, and what it copies stays uncommitted meanwhile: \(reason)")
            guard poller.running.load(ordering: .relaxed) else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + min(5, 0.2 * Double(1 << min(attempt, 5)))) {
                self.publish(key: key, value: value, headers: headers, copy: copy, attempt: attempt + 1)
            }
        }
        let failure: KafkaError? = value.withUnsafeBytes { valueBytes in
            func attempt(_ keyBytes: UnsafeRawBufferPointer?) -> KafkaError? {
                do throws(KafkaError) {
                    try producer.send(topic: topic, key: keyBytes, value: valueBytes, headers: headers, queueFullWait: .seconds(5)) { error in
                        if let error { retry("\(error)") } else { copy.acknowledge() }
                    }
                    return nil
                } catch {
                    return error
                }
            }
            guard let key else { return attempt(nil) }
            return key.withUnsafeBytes { attempt($0) }
        }
        if let failure { retry("\(failure)") }
    }

    /// Waits for queued copies to be delivered.
    public func flush(timeout: Duration) throws(KafkaError) { try producer.flush(timeout: timeout) }
}
