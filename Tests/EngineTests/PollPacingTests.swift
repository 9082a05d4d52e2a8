import Engine
import Ingest
import Kafka
import OTLP
import Synchronization
import Testing
import TestSupport

/// The polling thread keeps at most two polls with the shards: it waits (briefly, bounded) before a
/// third while they have not taken in the first — and never when they keep up.
@Suite(.timeLimit(.minutes(2))) struct PollPacingTests {
    /// A sink that counts the polls handed to it and lets go of them all at once, or of none.
    final class CountingSink: IngestSink {
        let releases: Bool
        private let handed = Atomic<UInt64>(0)
        init(releases: Bool) { self.releases = releases }
        var attributeSelection: AttributeSelection { .none }
        func ingest(_ batch: SpanBatch, messages: [IngestedMessage]) { handed.add(1, ordering: .relaxed) }
        func committableOffsets() -> [Lane: Int64] { [:] }
        func assigned(_ lanes: [Lane: TopicPartition], committed: [Lane: Int64]) {}
        func revoked(_ lanes: [Lane]) -> [Lane: Int64] { [:] }
        func lost(_ lanes: [Lane]) {}
        func drain() {}
        var handedOver: UInt64 { handed.load(ordering: .relaxed) }
        var batchesReleased: UInt64? { releases ? handed.load(ordering: .relaxed) : 0 }
    }

    /// Polls by hand until the sink has been handed `polls` polls, producing one message before each.
    func handOver(_ polls: UInt64, loop: IngestLoop, sink: CountingSink, cluster: KafkaMockCluster) throws {
        for round in 0..<200 where sink.handedOver < polls {
            if round % 10 == 0 { _ = try produceTraffic(to: "spans", on: cluster, traces: 1, seed: UInt64(round + 1)) }
            loop.pollOnce(timeout: .milliseconds(100))
        }
        #expect(sink.handedOver >= polls)
    }

    func loop(_ sink: CountingSink, _ cluster: KafkaMockCluster, metrics: IngestMetrics) throws -> IngestLoop {
        var configuration = KafkaConsumerConfiguration(
            bootstrapServers: cluster.bootstrapServers, groupID: "pacing", topics: ["spans"], statisticsInterval: nil)
        configuration.properties = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "250"])
        return try IngestLoop(consumer: configuration, encoding: .otlpProto, sink: sink, metrics: metrics, logger: quietLogger)
    }

    @Test func aThirdPollWaitsWhileTheSinkHoldsTwo() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: quietLogger)
        let sink = CountingSink(releases: false)
        let metrics = IngestMetrics()
        let loop = try loop(sink, cluster, metrics: metrics)
        try handOver(1, loop: loop, sink: sink, cluster: cluster)
        #expect(metrics.pollsWaited == 0, "one poll with the sink: no wait")
        try handOver(2, loop: loop, sink: sink, cluster: cluster)
        let before = metrics.pollsWaited
        loop.pollOnce(timeout: .milliseconds(10))
        #expect(metrics.pollsWaited == before + 1, "two polls with the sink: the next one waits first")
        #expect(metrics.prometheusText().contains("tailgate_polls_waited_total \(before + 1)\n"))
    }

    @Test func aSinkThatKeepsUpIsNeverWaitedFor() throws {
        let cluster = try KafkaMockCluster(topics: [("spans", 1)], logger: quietLogger)
        let sink = CountingSink(releases: true)
        let metrics = IngestMetrics()
        let loop = try loop(sink, cluster, metrics: metrics)
        try handOver(4, loop: loop, sink: sink, cluster: cluster)
        #expect(metrics.pollsWaited == 0)
    }
}
