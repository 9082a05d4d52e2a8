import Foundation
import Kafka
import Logging
import Synchronization

/// Collects log lines so tests can assert what was logged (and how often).
final class CapturedLogs: Sendable {
    let lines = Mutex<[String]>([])

    var logger: Logger {
        Logger(label: "test") { _ in CaptureHandler(sink: self) }
    }

    func count(containing text: String) -> Int {
        lines.withLock { $0.filter { $0.contains(text) }.count }
    }

    struct CaptureHandler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            sink.lines.withLock { $0.append("\(event.level) \(event.message)") }
        }
    }
}

/// Settings that make group rebalances quick on the mock cluster.
let fastGroupProperties = KafkaProperties([
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "250",
    "topic.metadata.refresh.interval.ms": "500",
])

/// Produces `count` messages (`message-[tag-]i`, keyed alike) and returns their payloads.
func produce(_ count: Int, tag: String? = nil, to topic: String, on cluster: KafkaMockCluster) throws -> Set<String> {
    let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Logger(label: "producer"))
    let prefix = tag.map { "\($0)-" } ?? ""
    var payloads = Set<String>()
    for i in 0..<count {
        let payload = "message-\(prefix)\(i)"
        payloads.insert(payload)
        try producer.send(topic: topic, key: Array("key-\(prefix)\(i)".utf8), value: Array(payload.utf8))
    }
    try producer.flush(timeout: .seconds(10))
    return payloads
}

/// Group events seen by one member.
final class GroupEvents: Sendable {
    let assignments = Mutex<[[TopicPartition]]>([])
    let revocations = Mutex<[[TopicPartition]]>([])
}

/// A consumer polled on its own thread until told to stop; records every payload it saw.
final class PollingMember: @unchecked Sendable {
    let consumer: KafkaConsumer
    let seen = Mutex<[String]>([])
    let events = GroupEvents()
    private let stop = Atomic<Bool>(false)
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    init(cluster: KafkaMockCluster, topic: String, group: String) throws {
        let events = self.events
        let config = KafkaConsumerConfiguration(
            bootstrapServers: cluster.bootstrapServers, groupID: group, topics: [topic],
            properties: fastGroupProperties, statisticsInterval: nil)
        consumer = try KafkaConsumer(
            configuration: config,
            events: KafkaConsumerEvents(
                assigned: { partitions in events.assignments.withLock { $0.append(partitions.map(\.partition)) } },
                revoked: { partitions in events.revocations.withLock { $0.append(partitions.map(\.partition)) } }),
            logger: Logger(label: "member"))
    }

    var revocationEvents: Int { events.revocations.withLock { $0.count } }

    func start() {
        let thread = Thread { [self] in
            while !stop.load(ordering: .relaxed) {
                var offsets: [TopicPartition: Int64] = [:]
                consumer.poll(maxMessages: 100, timeout: .milliseconds(100)) { message in
                    let text = String(decoding: message.payload, as: UTF8.self)
                    seen.withLock { $0.append(text) }
                    offsets[message.topicPartition] = message.offset + 1
                }
                consumer.storeOffsets(offsets)
            }
            consumer.close()
            done.signal()
        }
        self.thread = thread
        thread.start()
    }

    /// Stops the polling thread, which closes the consumer, and lets go of the thread: its closure
    /// holds this member, so keeping it kept the consumer (and librdkafka's broker threads) alive
    /// after its test and its cluster, logging a refused connection every 30 s for the rest of the
    /// suite. A member never started is closed here.
    func stopAndClose() {
        guard thread != nil else {
            consumer.close()
            return
        }
        stop.store(true, ordering: .relaxed)
        _ = done.wait(timeout: .now() + 30)
        thread = nil
    }
}


