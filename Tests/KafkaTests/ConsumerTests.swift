import Foundation
import Kafka
import Logging
import Synchronization
import Testing
import TestSupport

/// The consumer against librdkafka's mock cluster: real protocol, real group coordinator.
@Suite(.timeLimit(.minutes(10))) struct ConsumerTests {
    @Test func consumesEveryMessageInBatchesAndReportsTheEnd() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 4)], logger: Logger(label: "mock"))
        let payloads = try produce(500, to: "spans", on: cluster)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "g1", topics: ["spans"],
                properties: fastGroupProperties, statisticsInterval: nil, reportPartitionEOF: true),
            logger: Logger(label: "c"))
        var seen: [String] = []
        var keys = Set<String>()
        var largestBatch = 0
        let start = ContinuousClock.now
        var assignedAfter: Duration?
        // Bounded at 60 s: under a full parallel test run on two cores the mock's first group join
        // once took longer than 30 s (CI, stop 35: assigned at the end, nothing read by then).
        let finished = waitUntil(.seconds(60)) {
            let summary = consumer.poll(maxMessages: 1000, timeout: .milliseconds(200)) { message in
                seen.append(String(decoding: message.payload, as: UTF8.self))
                keys.insert(String(decoding: message.key!, as: UTF8.self))
                #expect(message.topic == "spans")
            }
            if assignedAfter == nil, !consumer.assignment.isEmpty { assignedAfter = ContinuousClock.now - start }
            largestBatch = max(largestBatch, summary.messages)
            return seen.count >= 500 && consumer.isAtEndOfAllPartitions
        }
        #expect(finished, "read \(seen.count) of 500; assigned after \(assignedAfter.map { "\($0)" } ?? "never")")
        #expect(Set(seen) == payloads)
        #expect(keys.count == 500)
        #expect(largestBatch > 1, "messages arrive in batches, not one per call")
        #expect(consumer.assignment.count == 4)
        consumer.close()
    }

    /// A poll hands over what has arrived once the first message is there, after a short linger; it
    /// does not hold a partial batch for its whole timeout (librdkafka's batch call alone returns only
    /// when the batch is full or the wait is over: a 30 s poll of 5 messages took 30 s).
    @Test func aPartialBatchIsHandedOverWithoutWaitingTheWholeTimeout() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: Logger(label: "mock"))
        _ = try produce(10, to: "spans", on: cluster)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "g-linger", topics: ["spans"],
                properties: fastGroupProperties, statisticsInterval: nil, reportPartitionEOF: true),
            logger: Logger(label: "c"))
        var read = 0
        #expect(waitUntil(.seconds(60)) {
            consumer.poll(maxMessages: 1000, timeout: .milliseconds(100)) { _ in read += 1 }
            return read >= 10 && consumer.isAtEndOfAllPartitions
        }, "read \(read) of the first 10")
        let later = try produce(5, tag: "later", to: "spans", on: cluster)
        var seen = Set<String>()
        let start = ContinuousClock.now
        while seen.count < 5 && ContinuousClock.now - start < .seconds(60) {
            consumer.poll(maxMessages: 1000, timeout: .seconds(30)) { seen.insert(String(decoding: $0.payload, as: UTF8.self)) }
            // Held for its whole timeout, one poll of this partial batch would take 30 s.
            #expect(ContinuousClock.now - start < .seconds(15), "a poll of \(seen.count) messages waited out its 30 s")
            if ContinuousClock.now - start >= .seconds(15) { break }
        }
        #expect(seen == later)
        consumer.close()
    }

    /// A partition sent back by a seek is no longer at its end until it gets there again: a reader
    /// that rewinds a batch and then asks whether its input is over must hear "no" until it has read
    /// the batch again (the router once stopped at "end of input" with a rewound batch unread).
    @Test func aSeekBackLeavesTheEndOfThePartition() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: Logger(label: "mock"))
        let payloads = try produce(8, to: "spans", on: cluster)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "g-seek", topics: ["spans"],
                properties: fastGroupProperties, statisticsInterval: nil, reportPartitionEOF: true),
            logger: Logger(label: "c"))
        var read: [String] = []
        #expect(waitUntil(.seconds(60)) {
            consumer.poll(maxMessages: 100, timeout: .milliseconds(100)) { read.append(String(decoding: $0.payload, as: UTF8.self)) }
            return read.count >= 8 && consumer.isAtEndOfAllPartitions
        }, "read \(read.count) of 8")
        consumer.seek([TopicPartition("spans", 0): 0])
        #expect(!consumer.isAtEndOfAllPartitions, "sent back to offset 0, the partition is not at its end")
        var again: [String] = []
        #expect(waitUntil(.seconds(60)) {
            consumer.poll(maxMessages: 100, timeout: .milliseconds(100)) { again.append(String(decoding: $0.payload, as: UTF8.self)) }
            return again.count >= 8 && consumer.isAtEndOfAllPartitions
        }, "read \(again.count) of 8 again, and the end again")
        #expect(Set(again) == payloads)
        consumer.close()
    }

    @Test func twoMembersRebalanceAndEveryMessageIsProcessedAtLeastOnce() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 6)], logger: Logger(label: "mock"))
        var expected = try produce(300, to: "spans", on: cluster)

        let first = try PollingMember(cluster: cluster, topic: "spans", group: "tailgate")
        first.start()
        #expect(waitUntil(.seconds(20)) { first.seen.withLock { $0.count } >= 300 })

        // A second member joins: the group rebalances and splits the partitions.
        let second = try PollingMember(cluster: cluster, topic: "spans", group: "tailgate")
        second.start()
        #expect(waitUntil(.seconds(30)) { second.consumer.assignment.count > 0 && first.consumer.assignment.count > 0 })
        #expect(first.revocationEvents >= 1)
        #expect(first.consumer.assignment.count + second.consumer.assignment.count == 6)
        #expect(first.consumer.assignment.isDisjoint(with: second.consumer.assignment))

        // More traffic lands on both members.
        let more = try produce(300, tag: "b", to: "spans", on: cluster)
        expected.formUnion(more)
        #expect(waitUntil(.seconds(30)) {
            let all = Set(first.seen.withLock { $0 } + second.seen.withLock { $0 })
            return all.isSuperset(of: expected)
        })
        #expect(!second.seen.withLock { $0 }.isEmpty, "the new member processed its share")

        // The second member leaves: the first gets every partition back.
        second.stopAndClose()
        #expect(waitUntil(.seconds(30)) { first.consumer.assignment.count == 6 })
        let last = try produce(60, tag: "c", to: "spans", on: cluster)
        expected.formUnion(last)
        #expect(waitUntil(.seconds(30)) { Set(first.seen.withLock { $0 }).isSuperset(of: last) })
        first.stopAndClose()

        // Offsets were stored and committed: the group's committed offsets add up to every message
        // produced (each partition's offsets start at 0), so a new member has nothing left to read.
        let third = try PollingMember(cluster: cluster, topic: "spans", group: "tailgate")
        let partitions = (0..<6).map { TopicPartition("spans", Int32($0)) }
        let committed = third.consumer.committedOffsets(partitions)
        #expect(committed.count == 6 && committed.values.reduce(0, +) == Int64(expected.count), "committed: \(committed)")
        third.stopAndClose()
        #expect(third.seen.withLock { $0 }.isEmpty)
        let all = Set(first.seen.withLock { $0 } + second.seen.withLock { $0 })
        #expect(all == expected)
    }

    @Test func pausedPartitionsDeliverNothingUntilResumed() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: Logger(label: "mock"))
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "g", topics: ["spans"],
                properties: fastGroupProperties, statisticsInterval: nil),
            logger: Logger(label: "c"))
        #expect(waitUntil(.seconds(20)) {
            consumer.poll(timeout: .milliseconds(100)) { _ in }
            return consumer.assignment.count == 2
        })
        try consumer.pause(Array(consumer.assignment))
        let produced = try produce(100, to: "spans", on: cluster)
        var whilePaused = 0
        let pausedUntil = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < pausedUntil {
            consumer.poll(timeout: .milliseconds(100)) { _ in whilePaused += 1 }
        }
        #expect(whilePaused == 0)

        try consumer.resume(Array(consumer.assignment))
        var received = Set<String>()
        #expect(waitUntil(.seconds(20)) {
            consumer.poll(timeout: .milliseconds(100)) { received.insert(String(decoding: $0.payload, as: UTF8.self)) }
            return received.count == 100
        })
        #expect(received == produced)
        consumer.close()
    }

    @Test func reportsConsumerLag() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: Logger(label: "mock"))
        _ = try produce(200, to: "spans", on: cluster)
        let lag = Mutex<[TopicPartition: Int64]>([:])
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "g", topics: ["spans"],
                properties: fastGroupProperties, statisticsInterval: .milliseconds(100)),
            events: KafkaConsumerEvents(statistics: { stats in lag.withLock { $0.merge(stats.lag) { $1 } } }),
            logger: Logger(label: "c"))
        // Read 50 messages, then stop reading: the lag should settle at 150.
        var read = 0
        #expect(waitUntil(.seconds(20)) {
            consumer.poll(maxMessages: 50 - read, timeout: .milliseconds(100)) { message in
                read += 1
                consumer.storeOffsets([message.topicPartition: message.offset + 1])
            }
            return read == 50
        })
        try consumer.pause(Array(consumer.assignment))
        #expect(waitUntil(.seconds(20)) {
            consumer.poll(timeout: .milliseconds(100)) { _ in }
            return lag.withLock { $0[TopicPartition("spans", 0)] } == 150
        })
        consumer.close()
    }

    /// librdkafka's consumer queue, as its statistics report it: read one message at a time from a
    /// topic whose 100 messages of 1 000 bytes all fit one fetch, the queue holds most of them (the
    /// producer's truth: 100 000 bytes in all), and the limit is the property as set.
    @Test func reportsHowMuchIsPrefetched() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: Logger(label: "mock"))
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: Logger(label: "producer"))
        for i in 0..<100 { try producer.send(topic: "spans", key: nil, value: Array(repeating: UInt8(i), count: 1_000)) }
        try producer.flush(timeout: .seconds(10))
        let configuration = KafkaConsumerConfiguration(
            bootstrapServers: cluster.bootstrapServers, groupID: "g", topics: ["spans"],
            properties: KafkaProperties(fastGroupProperties.values.merging(["queued.max.messages.kbytes": "16"]) { $1 }),
            statisticsInterval: .milliseconds(100))
        #expect(configuration.prefetchLimitBytes == 16 * 1024)
        let prefetched = Mutex<[Int64]>([])
        let consumer = try KafkaConsumer(
            configuration: configuration,
            events: KafkaConsumerEvents(statistics: { stats in
                if let bytes = stats.prefetchedBytes { prefetched.withLock { $0.append(bytes) } }
            }),
            logger: Logger(label: "c"))
        var read = 0
        #expect(waitUntil(.seconds(20)) {
            consumer.poll(maxMessages: 1, timeout: .milliseconds(100)) { _ in read += 1 }
            return prefetched.withLock { $0.contains { $0 >= 50_000 } }
        })
        // Never more than the topic holds (payloads only; a sum over partitions would not be bounded).
        #expect(prefetched.withLock { $0.allSatisfy { $0 <= 100_000 } })
        #expect(read < 100)
        consumer.close()
    }

    /// Every partition's `fetchq_size` names the one consumer queue their fetch queues forward to
    /// (measured: eight partitions each reported 8.38 MB with `queued.max.messages.kbytes` 8192), so
    /// the prefetch is their maximum, not their sum; the internal partition -1 is not one of them.
    @Test func thePrefetchIsTheConsumerQueueNotTheSumOfPartitions() throws {
        let json = #"""
            {"name": "c", "topics": {"spans": {"partitions": {
              "0": {"fetchq_size": 8383276, "consumer_lag": 5},
              "1": {"fetchq_size": 8383276, "consumer_lag": -1},
              "2": {"fetchq_size": 8383276},
              "-1": {"fetchq_size": 0}}}}}
            """#
        let statistics = try #require(Array(json.utf8).withUnsafeBytes { ConsumerStatistics(json: $0) })
        #expect(statistics.prefetchedBytes == 8_383_276)
        #expect(statistics.lag == [TopicPartition("spans", 0): 5])
    }

    @Test func unreachableBrokerIsLoggedRateLimitedAndNeverCrashes() throws {
        let logs = CapturedLogs()
        // A port nothing listens on.
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: "127.0.0.1:1", groupID: "g", topics: ["spans"],
                properties: KafkaProperties(["reconnect.backoff.ms": "10", "reconnect.backoff.max.ms": "50"]),
                statisticsInterval: nil),
            logger: logs.logger)
        var messages = 0
        let until = ContinuousClock.now + .seconds(3)
        while ContinuousClock.now < until {
            consumer.poll(timeout: .milliseconds(100)) { _ in messages += 1 }
        }
        #expect(messages == 0)
        let brokerDown = logs.count(containing: "_ALL_BROKERS_DOWN") + logs.count(containing: "_TRANSPORT")
        #expect(brokerDown >= 1, "the outage is reported: \(logs.lines.withLock { $0 })")
        #expect(brokerDown <= 2, "reconnecting every 50 ms for 3 s is logged once per kind per 10 s")
        consumer.close()
    }

    @Test func badPropertyIsAClearConfigurationError() {
        #expect {
            _ = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    bootstrapServers: "127.0.0.1:9092", properties: KafkaProperties(["no.such.property": "1"])),
                logger: Logger(label: "c"))
        } throws: { error in
            (error as? KafkaError)?.message.contains("no.such.property") == true
        }
    }

    /// One `--kafka-property` set serves the consumer and the producers (dead-letter topic, Kafka
    /// sink, the router's output): each client gets its share, so librdkafka has nothing to warn
    /// about ("… is a consumer property and will be ignored by this producer instance").
    @Test func eachClientGetsItsShareOfTheProperties() {
        let all = KafkaProperties([
            "session.timeout.ms": "6000", "fetch.max.bytes": "1048576", "acks": "all", "linger.ms": "5",
            "security.protocol": "SASL_SSL", "client.id": "dogbook"])
        #expect(all.producerShare.values == ["acks": "all", "linger.ms": "5", "security.protocol": "SASL_SSL", "client.id": "dogbook"])
        #expect(all.consumerShare.values == [
            "session.timeout.ms": "6000", "fetch.max.bytes": "1048576", "security.protocol": "SASL_SSL", "client.id": "dogbook"])
    }

    @Test func offsetStoreStaysManualWhateverTheUserSets() {
        let config = KafkaConsumerConfiguration(
            bootstrapServers: "b:9092", properties: KafkaProperties(["enable.auto.offset.store": "true", "sasl.password": "hunter2"]))
        #expect(config.effectiveProperties["enable.auto.offset.store"] == "false")
        #expect(config.properties.redacted["sasl.password"] == "***")
    }
}
