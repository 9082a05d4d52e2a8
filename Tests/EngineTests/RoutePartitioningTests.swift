import Foundation
import Kafka
import OTLP
import Route
import Testing
import TestSupport

/// The Java client's `Utils.murmur2`, written out here from its published algorithm (seed 0x9747b28c,
/// m 0x5bd1e995, r 24, little-endian 4-byte blocks, the tail mixed in reverse): what its default
/// partitioner hashes a record key with before `toPositive(hash) % partitions`.
func javaMurmur2(_ data: [UInt8]) -> Int32 {
    let m: UInt32 = 0x5bd1_e995
    var h: UInt32 = 0x9747_b28c ^ UInt32(data.count)
    let blocks = data.count / 4
    for i in 0..<blocks {
        var k = UInt32(data[4 * i]) | UInt32(data[4 * i + 1]) << 8 | UInt32(data[4 * i + 2]) << 16 | UInt32(data[4 * i + 3]) << 24
        k = k &* m
        k ^= k >> 24
        k = k &* m
        h = h &* m
        h ^= k
    }
    let tail = blocks * 4
    switch data.count % 4 {
    case 3:
        h ^= UInt32(data[tail + 2]) << 16
        h ^= UInt32(data[tail + 1]) << 8
        h ^= UInt32(data[tail])
        h = h &* m
    case 2:
        h ^= UInt32(data[tail + 1]) << 8
        h ^= UInt32(data[tail])
        h = h &* m
    case 1:
        h ^= UInt32(data[tail])
        h = h &* m
    default: break
    }
    h ^= h >> 13
    h = h &* m
    h ^= h >> 15
    return Int32(bitPattern: h)
}

/// The Java client's partition for a keyed record: `Utils.toPositive(murmur2(key)) % partitions`.
func javaPartition(key: [UInt8], partitions: Int) -> Int32 {
    Int32(Int(UInt32(bitPattern: javaMurmur2(key)) & 0x7fff_ffff) % partitions)
}

/// `tailgate route` writes each trace where the Java client (and the collector's Kafka exporter
/// with `partition_traces_by_id`, through franz-go's compatible partitioner) would: a keyed topic
/// written by both keeps a trace's spans in one partition.
@Suite(.timeLimit(.minutes(10))) struct RoutePartitioningTests {
    /// The formula above against the values Kafka's own implementation gives (as published with
    /// Akka's and Pekko's ports of it, "expected correct hash values from the kafka murmur2 impl").
    @Test func theFormulaMatchesKafkasPublishedValues() {
        let published: [(String, Int32)] = [
            ("1", -1_993_445_489), ("12", 126_087_238), ("123", -267_702_483), ("1234", -1_614_185_708), ("12345", -1_188_365_604),
        ]
        for (key, hash) in published {
            #expect(javaMurmur2(Array(key.utf8)) == hash, "murmur2(\(key))")
        }
    }

    /// 300 traces through the router onto a 7-partition keyed topic: every message sits in the
    /// partition the Java client computes for its key (the trace id in hex).
    @Test func everyTraceLandsInTheJavaClientsPartition() throws {
        let partitions = 7
        let cluster = try KafkaMockCluster(topics: [("otlp_spans", 2), ("otlp_keyed", partitions)], logger: quietLogger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        let ids = (1...300).map { TraceID(high: 0xA11CE &* UInt64($0), low: UInt64($0) &* 0x9E37_79B9_7F4A_7C15) }
        // Unkeyed messages of 30 traces each, as an agent without partition_traces_by_id writes them.
        for chunk in stride(from: 0, to: ids.count, by: 30) {
            var request: [UInt8] = []
            for id in ids[chunk..<(chunk + 30)] { request += otlpTrace(id, spans: 1...2) }
            try producer.send(topic: "otlp_spans", key: nil, value: request)
        }
        try producer.flush(timeout: .seconds(10))

        var configuration = RouterConfiguration(brokers: cluster.bootstrapServers, outputTopic: "otlp_keyed")
        configuration.exitOnEOF = true
        configuration.statisticsInterval = .seconds(60)
        configuration.kafkaProperties = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])
        let summary = try Router(configuration: configuration, logger: quietLogger).run()
        #expect(summary.outcome == "end_of_input")

        let reader = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "check-\(UUID().uuidString)", topics: ["otlp_keyed"],
                properties: KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]), statisticsInterval: nil),
            logger: quietLogger)
        defer { reader.close() }
        var placed: [String: Int32] = [:]
        var misplaced: [String] = []
        _ = waitUntil(.seconds(60)) {
            reader.poll(timeout: .milliseconds(100)) { message in
                let key = message.key.map { Array($0) } ?? []
                let hex = String(decoding: key, as: UTF8.self)
                placed[hex] = message.partition
                let expected = javaPartition(key: key, partitions: partitions)
                if message.partition != expected { misplaced.append("\(hex): \(message.partition), Java \(expected)") }
            }
            return placed.count >= ids.count
        }
        #expect(Set(placed.keys) == Set(ids.map(\.hex)), "every trace routed, keyed by its hex id")
        #expect(misplaced.isEmpty, "\(misplaced.count) of \(placed.count) not where the Java client puts them: \(misplaced.prefix(5))")
        #expect(Set(placed.values).count == partitions, "the keys spread over all \(partitions) partitions")
    }
}
