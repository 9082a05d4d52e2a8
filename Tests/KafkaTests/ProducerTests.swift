import Foundation
import Kafka
import Logging
import Synchronization
import Testing
import TestSupport

/// The producer's send without a copy (the router's per-trace requests): librdkafka reads the array
/// where it lies, so the producer must keep it alive until the message's delivery report.
@Suite struct ProducerTests {
    @Test func aMessageHandedOverArrivesByteForByteAfterTheSenderLetsGoOfIt() throws {
        let cluster = try KafkaMockCluster(topics: [("out", 2)], logger: Logger(label: "mock"))
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Logger(label: "producer"))
        let count = 300
        var expected: [String: [UInt8]] = [:]
        let delivered = Atomic<Int>(0)
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        for index in 0..<count {
            // 1–16 KiB of a pseudo-random pattern, different in every message.
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let size = 1024 + Int(state >> 50)
            var payload = [UInt8](repeating: 0, count: size)
            var word = state
            for position in payload.indices {
                word = word &* 6_364_136_223_846_793_005 &+ 1
                payload[position] = UInt8(truncatingIfNeeded: word >> 56)
            }
            let key = "key-\(index)"
            // A copy of its own (an array assigned shares its storage, which would keep it alive).
            expected[key] = payload.map { $0 }
            try Array(key.utf8).withUnsafeBytes { keyBytes in
                try producer.send(topic: "out", key: keyBytes, handingOver: payload) { error in
                    if error == nil { delivered.add(1, ordering: .relaxed) }
                }
            }
            payload = []
            // Memory the array would have been freed into, taken and scribbled over: a payload not
            // kept alive would leave with these bytes instead of its own.
            let scribble = [UInt8](repeating: 0xEE, count: size)
            #expect(scribble.count == size)
        }
        try producer.flush(timeout: .seconds(30))
        producer.poll()
        #expect(delivered.load(ordering: .relaxed) == count, "every delivery report says delivered")

        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "g-handed-over", topics: ["out"],
                properties: fastGroupProperties, statisticsInterval: nil, reportPartitionEOF: true),
            logger: Logger(label: "c"))
        var received: [String: [UInt8]] = [:]
        let finished = waitUntil(.seconds(60)) {
            consumer.poll(maxMessages: 1000, timeout: .milliseconds(200)) { message in
                received[message.key.map { String(decoding: $0, as: UTF8.self) } ?? ""] = Array(message.payload)
            }
            return received.count >= count && consumer.isAtEndOfAllPartitions
        }
        consumer.close()
        #expect(finished, "read \(received.count) of \(count)")
        #expect(received.count == count)
        let wrong = expected.filter { received[$0.key] != $0.value }.map(\.key)
        #expect(wrong.count == 0, "\(wrong.count) messages arrived with other bytes than were sent, e.g. \(wrong.prefix(3))")
    }
}
