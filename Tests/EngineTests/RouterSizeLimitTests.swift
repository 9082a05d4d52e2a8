import Foundation
import HTTP
import Ingest
import Kafka
import OTLP
import Route
import Synchronization
import Testing
import TestSupport

/// `tailgate route` and the output topic's size limit: a span that alone is over it is counted and
/// dead-lettered, never produced (the broker would refuse it and the batch be read again forever);
/// when the broker refuses messages as too large, the router lowers its limit below them and the
/// batch goes through on its next read. Expected values are the requests the test wrote.
@Suite(.serialized, .timeLimit(.minutes(10))) struct RouterSizeLimitTests {
    struct Output {
        var keyed: [TraceID: Set<SpanID>] = [:]
        var largestKeyed = 0
        var deadLetters: [(key: String, bytes: Int)] = []
    }

    /// Every message on the keyed and dead-letter topics, read from the start.
    func readOutput(_ cluster: KafkaMockCluster, keyedMessages: Int, deadLetters: Int) -> Output {
        var output = Output()
        var seen = Set<String>()  // topic/partition/offset: a second reader must not count a message twice
        var keyedSeen = 0
        let deadline = ContinuousClock.now + .seconds(60)
        // A reader that joined while the mock still answered the output topic's metadata with the
        // refusal the test set up (seen under load: "partition count changed from 1 to 0") is never
        // assigned it; a fresh reader (a new group, fresh metadata) is started every 15 s until every
        // message is read. Messages truly lost still fail the test: no reader finds them.
        while ContinuousClock.now < deadline && !(keyedSeen >= keyedMessages && output.deadLetters.count >= deadLetters) {
            guard
                let reader = try? KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        bootstrapServers: cluster.bootstrapServers, groupID: "check-\(UUID().uuidString)", topics: ["otlp_keyed", "dead"],
                        properties: KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]), statisticsInterval: nil),
                    logger: quietLogger)
            else { return output }
            defer { reader.close() }
            _ = waitUntil(.seconds(15)) {
                reader.poll(timeout: .milliseconds(100)) { message in
                    guard seen.insert("\(message.topic)/\(message.partition)/\(message.offset)").inserted else { return }
                    if message.topic == "dead" {
                        let key = message.key.map { String(decoding: $0, as: UTF8.self) } ?? ""
                        output.deadLetters.append((key, message.payload.count))
                        return
                    }
                    keyedSeen += 1
                    output.largestKeyed = max(output.largestKeyed, message.payload.count)
                    var batch = SpanBatch()
                    guard (try? SpanDecoder(encoding: .otlpProto).decode(message.payload, into: &batch)) != nil else { return }
                    for span in batch.spans { output.keyed[span.traceID, default: []].insert(span.spanID) }
                }
                return keyedSeen >= keyedMessages && output.deadLetters.count >= deadLetters
            }
        }
        return output
    }

    /// Runs the router to the end of its input (a wedged router fails the test by its time limit).
    func route(_ configuration: RouterConfiguration) throws -> (summary: RouteSummary?, metrics: RouterMetrics.Counts, limit: String) {
        let router = try Router(configuration: configuration, logger: quietLogger)
        let summary: RouteSummary? = router.run()
        let limit = router.metricsText(format: .prometheus).split(separator: "\n")
            .first { $0.hasPrefix("tailgate_route_output_limit_bytes ") }.map { String($0.split(separator: " ")[1]) } ?? ""
        return (summary, router.metrics.snapshot, limit)
    }

    func configuration(_ cluster: KafkaMockCluster, delivery: RouterDelivery, maxMessageBytes: Int) -> RouterConfiguration {
        var configuration = RouterConfiguration(brokers: cluster.bootstrapServers, outputTopic: "otlp_keyed")
        configuration.delivery = delivery
        configuration.transactionalID = "size-limit-\(UUID().uuidString)"
        configuration.deadLetterTopic = "dead"
        configuration.maxMessageBytes = maxMessageBytes
        configuration.exitOnEOF = true
        configuration.statisticsInterval = .seconds(60)
        configuration.kafkaProperties = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])
        return configuration
    }

    /// A span between `--max-message-bytes` (4 096) and librdkafka's own limit (64 KiB above it):
    /// before, it passed the local check, and a broker holding the topic's limit refused it
    /// asynchronously, so the batch was read again forever.
    @Test(arguments: [RouterDelivery.atLeastOnce, .transactional])
    func aSpanOverTheLimitIsDeadLetteredAndTheRestFlows(delivery: RouterDelivery) throws {
        let cluster = try KafkaMockCluster(topics: [("otlp_spans", 2), ("otlp_keyed", 2), ("dead", 1)], logger: quietLogger)
        let small = TraceID(high: 0x5A, low: 1), mixed = TraceID(high: 0x5A, low: 2), other = TraceID(high: 0x5A, low: 3)
        // One unkeyed message of three traces; `mixed` has one 6 000-byte span and two small ones.
        var request = otlpTrace(small, spans: 1...3)
        request += otlpTrace(mixed, spans: 10...12) { $0 == 11 ? String(repeating: "x", count: 6_000) : "op-\($0)" }
        request += otlpTrace(other, spans: 20...21)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        try producer.send(topic: "otlp_spans", key: nil, value: request)
        try producer.flush(timeout: .seconds(10))

        let (summary, counts, limit) = try route(configuration(cluster, delivery: delivery, maxMessageBytes: 4096))
        #expect(summary?.outcome == "end_of_input", "the router reached the end of its input: \(String(describing: summary))")
        #expect(counts.oversizeSpans == 1)
        #expect(counts.rewinds == 0, "nothing was refused by the broker, nothing read again")
        #expect(limit == "4096")

        let output = readOutput(cluster, keyedMessages: 3, deadLetters: 1)
        #expect(output.keyed[small] == Set((1...3).map { SpanID(rawValue: $0) }))
        #expect(output.keyed[mixed] == [SpanID(rawValue: 10), SpanID(rawValue: 12)], "the trace's other spans go on")
        #expect(output.keyed[other] == Set((20...21).map { SpanID(rawValue: $0) }))
        #expect(output.largestKeyed <= 4096, "nothing over --max-message-bytes reaches the output topic")
        #expect(output.deadLetters.count == 1)
        #expect(output.deadLetters.first?.key == mixed.hex)
        #expect((output.deadLetters.first?.bytes ?? 0) > 6_000)
    }

    /// A broker whose limit is below `--max-message-bytes` refuses the messages: the router reads the
    /// batch again and splits below what was refused, and every span arrives.
    @Test(arguments: [RouterDelivery.atLeastOnce, .transactional])
    func refusalsLowerTheLimitAndEverySpanArrives(delivery: RouterDelivery) throws {
        let cluster = try KafkaMockCluster(topics: [("otlp_spans", 1), ("otlp_keyed", 1), ("dead", 1)], logger: quietLogger)
        // Ten traces of 20 spans with 200-byte names (~5 KB each), in one message.
        let ids = (1...10).map { TraceID(high: 0x7E, low: UInt64($0)) }
        var request: [UInt8] = []
        for (index, id) in ids.enumerated() {
            let first = UInt64(index * 100 + 1)
            request += otlpTrace(id, spans: first...(first + 19)) { _ in String(repeating: "n", count: 200) }
        }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        try producer.send(topic: "otlp_spans", key: nil, value: request)
        try producer.flush(timeout: .seconds(10))
        cluster.refuseNextProduceRequestsAsTooLarge(1)

        let (summary, counts, limit) = try route(configuration(cluster, delivery: delivery, maxMessageBytes: 1_000_000))
        #expect(summary?.outcome == "end_of_input", "the router reached the end of its input: \(String(describing: summary))")
        #expect(counts.rewinds >= 1, "the refused batch was read again")
        #expect(counts.oversizeSpans == 0)
        let lowered = Int(limit) ?? .max
        #expect(lowered < 1_000_000, "the limit came down below the refused message")

        let output = readOutput(cluster, keyedMessages: ids.count, deadLetters: 0)
        for (index, id) in ids.enumerated() {
            let first = UInt64(index * 100 + 1)
            #expect(output.keyed[id]?.isSuperset(of: (first...(first + 19)).map { SpanID(rawValue: $0) }) == true, "every span of \(id.hex) arrived")
        }
        #expect(output.deadLetters.isEmpty)
    }

    /// At least once, the next batch is read while the previous one is acknowledged: when that one is
    /// refused, both are read again from the first's offsets and every span still arrives (six
    /// messages in batches of two, the first produce requests refused).
    @Test func aRefusedBatchIsReadAgainWithTheBatchReadAfterIt() throws {
        let cluster = try KafkaMockCluster(topics: [("otlp_spans", 1), ("otlp_keyed", 1), ("dead", 1)], logger: quietLogger)
        let ids = (1...6).map { TraceID(high: 0xB0B, low: UInt64($0)) }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        for (index, id) in ids.enumerated() {
            try producer.send(topic: "otlp_spans", key: nil, value: otlpTrace(id, spans: UInt64(index * 10 + 1)...UInt64(index * 10 + 4)))
        }
        try producer.flush(timeout: .seconds(10))
        cluster.refuseNextProduceRequests(3, as: .topicAuthorizationFailed)
        var settings = configuration(cluster, delivery: .atLeastOnce, maxMessageBytes: 1_000_000)
        settings.maxBatchMessages = 2
        let router = try Router(configuration: settings, logger: quietLogger)
        let run = RouterRun(router)
        #expect(run.done.wait(timeout: .now() + 120) == .success, "the router reached the end of its input")
        #expect(run.summary.withLock { $0 }?.outcome == "end_of_input")
        #expect(router.metrics.snapshot.rewinds >= 1)
        let output = readOutput(cluster, keyedMessages: 6, deadLetters: 0)
        for (index, id) in ids.enumerated() {
            #expect(output.keyed[id] == Set((1...4).map { SpanID(rawValue: UInt64(index * 10) + $0) }), "\(id.hex) arrived whole")
        }
    }

    /// An output that refuses to be written (the principal lost its ACL): the batch is read again
    /// (`tailgate_route_rewinds_total`), `/-/ready` answers 503 naming the failure while it lasts, and
    /// once the topic accepts again every span arrives and the router is ready.
    @Test func anOutputThatRefusesIsNotReadyAndLosesNothing() throws {
        let cluster = try KafkaMockCluster(topics: [("otlp_spans", 1), ("otlp_keyed", 1), ("dead", 1)], logger: quietLogger)
        let ids = (1...3).map { TraceID(high: 0xACE, low: UInt64($0)) }
        var request: [UInt8] = []
        for (index, id) in ids.enumerated() { request += otlpTrace(id, spans: UInt64(index * 10 + 1)...UInt64(index * 10 + 4)) }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, logger: quietLogger)
        try producer.send(topic: "otlp_spans", key: nil, value: request)
        try producer.flush(timeout: .seconds(10))
        cluster.refuseNextProduceRequests(8, as: .topicAuthorizationFailed)

        let router = try Router(configuration: configuration(cluster, delivery: .atLeastOnce, maxMessageBytes: 1_000_000), logger: quietLogger)
        let routes = HTTPRoutes(backend: router, adminToken: nil)
        let run = RouterRun(router)
        let failing = Mutex("")
        #expect(waitUntil(.seconds(60)) {
            let answer = routes.respond(to: HTTPRequest(method: "GET", path: "/-/ready"))
            if answer.status == 503 && answer.text.contains("output failing") { failing.withLock { $0 = answer.text } }
            return !failing.withLock { $0 }.isEmpty
        }, "not ready while the output refuses")
        #expect(failing.withLock { $0 }.lowercased().contains("authoriz"), "the reason names the refusal: \(failing.withLock { $0 })")
        #expect(run.done.wait(timeout: .now() + 120) == .success, "the router reached the end of its input")
        #expect(run.summary.withLock { $0 }?.outcome == "end_of_input")
        #expect(router.metrics.snapshot.rewinds >= 1)
        let output = readOutput(cluster, keyedMessages: 3, deadLetters: 0)
        for (index, id) in ids.enumerated() {
            #expect(output.keyed[id] == Set((1...4).map { SpanID(rawValue: UInt64(index * 10) + $0) }), "\(id.hex) arrived whole")
        }
        #expect(output.deadLetters.isEmpty, "a refused output is not bad data: nothing dead-lettered")
    }
}

/// A router running on a thread of its own: `done` is signalled when it returns, with its summary.
final class RouterRun: Sendable {
    let done = DispatchSemaphore(value: 0)
    let summary = Mutex<RouteSummary?>(nil)

    init(_ router: Router) {
        Thread { [self] in
            summary.withLock { $0 = router.run() }
            done.signal()
        }.start()
    }
}
