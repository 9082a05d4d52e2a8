import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Traffic
import Foundation
import Kafka
import Logging
import OTLP
import Synchronization
import Testing
import TestSupport

@Suite(.timeLimit(.minutes(10))) struct IngestTests {
    /// Good and bad messages interleaved on one partition: the bad ones are counted, set aside in
    /// the dead-letter topic, and the good ones after them still arrive — nothing else is lost.
    @Test func badInputIsCountedDeadLetteredAndNeverStallsThePartition() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1), ("spans.dlq", 1)], logger: quietLogger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        var traffic = DogBookTraffic(seed: 7)
        var goodSpans = 0
        var badPayloads: [[UInt8]] = []
        func sendGood() throws {
            let trace = traffic.nextTrace(startUnixNano: 1_764_000_000_000_000_000)
            goodSpans += trace.spanCount
            try producer.send(topic: "spans", key: Array(trace.traceID.hex.utf8), value: DogBookTraffic.protobuf([trace]))
        }
        func sendBad(_ payload: [UInt8]) throws {
            badPayloads.append(payload)
            try producer.send(topic: "spans", key: nil, value: payload)
        }
        var other = DogBookTraffic(seed: 99)
        let whole = DogBookTraffic.protobuf([other.nextTrace(startUnixNano: 1)])
        try sendGood()
        try sendBad(Array(whole.prefix(whole.count / 2)))  // truncated
        try sendGood()
        try sendBad([0x0F, 0x01])  // invalid wire type
        try sendBad([0x0A, 0x7F, 0x01])  // length past the end
        try sendGood()
        // A message whose one span has an all-zero trace id: the span is refused, the message is not.
        var zeroSpan = ProtoWriter()
        zeroSpan.writeNested(1) { rs in
            rs.writeNested(2) { ss in
                ss.writeNested(2) { span in
                    span.writeBytesField(1, [UInt8](repeating: 0, count: 16))
                    span.writeBytesField(2, [1, 2, 3, 4, 5, 6, 7, 8])
                }
            }
        }
        try producer.send(topic: "spans", key: nil, value: zeroSpan.bytes)
        try sendGood()
        try producer.flush(timeout: .seconds(10))

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.exitOnEOF = true
        configuration.deadLetterTopic = "spans.dlq"
        configuration.statusInterval = .seconds(60)
        let engine = try Engine(configuration: configuration, logger: quietLogger)
        let summary = engine.run()

        #expect(summary.outcome == "end_of_input")
        #expect(summary.messages == 8)
        #expect(summary.spans == goodSpans)
        #expect(summary.messagesRejected.values.reduce(0, +) == 3)
        #expect(summary.messagesRejected["invalid_wire_type"] == 1)
        // The message cut in half ends inside resource_spans: its length prefix points past the end.
        #expect(summary.messagesRejected["length_out_of_bounds"] == 2)
        #expect(summary.spansRejected["invalid_trace_id"] == 1)
        #expect(summary.deadLettered == 3)

        let text = engine.metrics.prometheusText()
        #expect(text.contains("tailgate_messages_rejected_total{reason=\"invalid_wire_type\"} 1\n"))
        #expect(text.contains("tailgate_messages_rejected_total{reason=\"invalid_json\"} 0\n"))
        #expect(text.contains("tailgate_spans_rejected_total{reason=\"invalid_trace_id\"} 1\n"))
        #expect(text.contains("tailgate_spans_received_total \(goodSpans)\n"))

        // The dead-letter topic holds the refused messages byte for byte, in order.
        let dlq = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "inspect", topics: ["spans.dlq"], statisticsInterval: nil),
            logger: quietLogger)
        var copies: [[UInt8]] = []
        #expect(waitUntil(.seconds(30)) {
            dlq.poll(timeout: .milliseconds(100)) { copies.append(Array($0.payload)) }
            return copies.count == 3
        })
        #expect(copies == badPayloads)
        dlq.close()
    }

    /// Issue 26, item 6: a refused message's offset is committed past only once its dead-letter
    /// copy is acknowledged. The cluster refuses the copy's first produce requests; while it does,
    /// the partition's committable offset stays at the refused message though the good trace after
    /// it is stored (before, the copy was fire-and-forget and the offset moved on at once); once the
    /// copy lands, the offset moves past everything.
    @Test func aRefusedMessageIsCommittedPastOnlyOnceItsCopyLands() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1), ("spans.dlq", 1)], logger: quietLogger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        var traffic = DogBookTraffic(seed: 8)
        for payload in [DogBookTraffic.protobuf([traffic.nextTrace(startUnixNano: 1)]), [0x0F, 0x01], DogBookTraffic.protobuf([traffic.nextTrace(startUnixNano: 1)])] {
            try producer.send(topic: "spans", key: nil, value: payload)
        }
        try producer.flush(timeout: .seconds(10))
        // The copy's first three attempts are refused (retried after 0.2, 0.4 and 0.8 s).
        cluster.refuseNextProduceRequestsAsTooLarge(3)

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.deadLetterTopic = "spans.dlq"
        configuration.rulesPath = try writeRules("decision_wait: 100ms\npolicies: [{name: all, type: always_sample}]")
        configuration.statusInterval = .seconds(60)
        let kept = KeptTraces()
        let running = RunningEngine(try Engine(configuration: configuration, kept: kept, logger: quietLogger))
        defer { running.stop() }
        let engine = running.engine
        let partition = TopicPartition("spans", 0)
        // Both good traces stored and the copy refused twice: the offset is held at the refused message.
        #expect(waitUntil(.seconds(30)) { kept.snapshot.count == 2 && engine.metrics.snapshot.deadLetterFailures >= 2 })
        let polls = engine.metrics.polls
        #expect(waitUntil(.seconds(10)) { engine.metrics.polls >= polls + 2 })
        let held = engine.sampling?.lastCommittableOffsets[partition]
        #expect(held == nil || held == 1, "committable \(String(describing: held)) while the copy of offset 1 is not acknowledged")
        // The copy lands on its fourth attempt; then the offset moves past everything.
        #expect(waitUntil(.seconds(30)) { engine.sampling?.lastCommittableOffsets[partition] == 3 })
        let dlq = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                bootstrapServers: cluster.bootstrapServers, groupID: "inspect", topics: ["spans.dlq"], statisticsInterval: nil),
            logger: quietLogger)
        defer { dlq.close() }
        var copies: [[UInt8]] = []
        #expect(waitUntil(.seconds(30)) {
            dlq.poll(timeout: .milliseconds(100)) { copies.append(Array($0.payload)) }
            return !copies.isEmpty
        })
        #expect(copies == [[0x0F, 0x01]], "one copy, byte for byte")
        #expect(engine.metrics.snapshot.deadLetterFailures == 3)
        let summary = try #require(running.stop())
        #expect(summary.deadLettered == 1)
    }

    /// The same traffic as OTLP/JSON, several traces per unkeyed message (exporter without
    /// partition_traces_by_id): every span arrives.
    @Test func jsonMultiTraceMessages() throws {
        let cluster = try KafkaMockCluster(topics: [("json", 3)], logger: quietLogger)
        let sent = try produceTraffic(to: "json", on: cluster, traces: 120, encoding: .otlpJSON, tracesPerMessage: 8)
        #expect(sent.messages == 15)

        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["json"]
        configuration.encoding = .otlpJSON
        configuration.exitOnEOF = true
        let sink = AcknowledgeOnDecode(countTraces: true)
        let summary = try Engine(configuration: configuration, sink: sink, logger: quietLogger).run()
        #expect(summary.spans == sent.spans)
        #expect(sink.distinctTraces == 120)
        #expect(summary.messagesRejected.isEmpty)
    }

    /// Backpressure: while paused nothing is consumed; on resume everything arrives.
    @Test func pauseAndResumeThroughTheEngine() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 2)], logger: quietLogger)
        var configuration = EngineConfiguration(brokers: cluster.bootstrapServers)
        configuration.topics = ["spans"]
        configuration.statusInterval = .seconds(60)
        configuration.kafkaProperties = KafkaProperties(["heartbeat.interval.ms": "250", "session.timeout.ms": "6000"])
        let running = RunningEngine(try Engine(configuration: configuration, logger: quietLogger))
        let engine = running.engine
        defer { running.stop(timeout: .seconds(30)) }
        #expect(waitUntil(.seconds(30)) { engine.metrics.partitionsAssigned == 2 })
        engine.setPaused(true)
        #expect(waitUntil(.seconds(5)) { engine.metrics.prometheusText().contains("tailgate_kafka_partitions_paused 2\n") })

        let sent = try produceTraffic(to: "spans", on: cluster, traces: 50)
        // The messages are in the topic (produced and flushed); the loop has polled a dozen times since
        // (a positive sign it had every chance to receive them), and received nothing.
        let pollsBefore = engine.metrics.polls
        #expect(waitUntil(.seconds(30)) { engine.metrics.polls >= pollsBefore + 12 })
        #expect(engine.metrics.snapshot.spansReceived == 0)

        engine.setPaused(false)
        #expect(waitUntil(.seconds(20)) { engine.metrics.snapshot.spansReceived == sent.spans })
    }
}

@Suite struct ConfigurationTests {
    @Test func durations() throws {
        #expect(try parseDuration("500ms") == .milliseconds(500))
        #expect(try parseDuration("2s") == .seconds(2))
        #expect(try parseDuration("5m") == .seconds(300))
        #expect(try parseDuration("1m30s") == .seconds(90))
        #expect(throws: ConfigurationError.self) { try parseDuration("10") }
        #expect(throws: ConfigurationError.self) { try parseDuration("fast") }
    }

    @Test func byteSizes() throws {
        #expect(try parseByteSize("512MiB") == 512 << 20)
        #expect(try parseByteSize("4GiB") == 4 << 30)
        #expect(try parseByteSize("65536") == 65536)
        #expect(throws: ConfigurationError.self) { try parseByteSize("12 parsecs") }
    }

    @Test func validationNamesTheOptionAndTheFix() {
        var configuration = EngineConfiguration(brokers: " ")
        #expect { try configuration.validate() } throws: { "\($0)".contains("--brokers is required") }
        configuration = EngineConfiguration(brokers: "k:9092")
        configuration.deadLetterTopic = "otlp_spans"
        #expect { try configuration.validate() } throws: { "\($0)".contains("also an input topic") }
    }
}
