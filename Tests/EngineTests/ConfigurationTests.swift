import HTTP
import Ingest
import Route
import Sampling
import Sinks
import Engine
import Kafka
import Logging
import Testing

@Suite struct ConfigurationLogTests {
    /// The startup line shows what runs and none of the secrets it was given.
    @Test func secretsAreMaskedInTheStartupLine() throws {
        var configuration = EngineConfiguration(brokers: "ns.servicebus.windows.net:9093")
        try configuration.kafkaProperties.set(assignment: "security.protocol=SASL_SSL")
        try configuration.kafkaProperties.set(assignment: "sasl.username=$ConnectionString")
        try configuration.kafkaProperties.set(assignment: "sasl.password=Endpoint=sb://ns/;SharedAccessKey=HUNTER2")
        try configuration.kafkaProperties.set(assignment: "sasl.oauthbearer.client.secret=OAUTHSECRET")
        try configuration.kafkaProperties.set(assignment: "ssl.key.pem=-----BEGIN PRIVATE KEY-----PEMSECRET")
        configuration.otlpEndpoint = "https://tempo:GRAFANAPASS@tempo.example.com/v1/traces"
        configuration.otlpHeaders = [("Authorization", "Bearer OTLPTOKEN"), ("X-Scope-OrgID", "dogbook")]
        configuration.adminToken = "ADMINTOKEN"
        let line = configuration.loggableMetadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        for secret in ["HUNTER2", "OAUTHSECRET", "PEMSECRET", "GRAFANAPASS", "OTLPTOKEN", "ADMINTOKEN", "dogbook"] {
            #expect(!line.contains(secret), "\(secret) leaked: \(line)")
        }
        #expect(line.contains("sasl.password=***"))
        #expect(line.contains("security.protocol=SASL_SSL"))
        #expect(line.contains("otlp_endpoint=https://***@tempo.example.com/v1/traces"))
        #expect(line.contains("otlp_headers=Authorization=***,X-Scope-OrgID=***"))
        #expect(line.contains("admin_routes=on (token set)"))
        #expect(line.contains("brokers=ns.servicebus.windows.net:9093"))
    }
}

@Suite struct MemoryBudgetTests {
    /// Kafka's prefetch and the poll size follow the buffer limit, within their floors and ceilings.
    @Test func sharesFollowTheLimit() {
        let small = MemoryBudget(bufferLimit: 4 << 20)
        #expect(small.prefetchKiB == 1024 && small.pollBytes == 256 << 10 && small.heapPadBytes == 1 << 20)
        let medium = MemoryBudget(bufferLimit: 256 << 20)
        #expect(medium.prefetchKiB == 32 << 10 && medium.pollBytes == 4 << 20 && medium.heapPadBytes == 16 << 20)
        let large = MemoryBudget(bufferLimit: 12 << 30)
        #expect(large.prefetchKiB == 256 << 10 && large.pollBytes == 4 << 20 && large.heapPadBytes == 64 << 20)
    }
}

@Suite struct MemoryReturnPolicyTests {
    /// Memory goes back once a burst has drained (by 32 MiB and by half), not while it is held, and
    /// not more often than the interval; a new peak arms it again.
    @Test func returnsAfterABurstDrainsAtMostEveryInterval() {
        var policy = MemoryReturnPolicy()
        let start = ContinuousClock.now
        let mib = 1 << 20
        func at(_ seconds: Int, held: Int) -> Bool { policy.shouldReturn(held: held * mib, now: start + .seconds(seconds)) }
        #expect(!at(0, held: 100))
        #expect(!at(1, held: 80), "a drop of 20 MiB is too small")
        #expect(!at(2, held: 60), "40 MiB less but not half")
        #expect(at(3, held: 10))
        #expect(!at(4, held: 0), "nothing new to give back")
        #expect(!at(5, held: 200))
        #expect(!at(10, held: 1), "within the interval of the last return")
        #expect(at(34, held: 1))
        // Small buffers never trigger it.
        var small = MemoryReturnPolicy()
        func smallAt(_ seconds: Int, held: Int) -> Bool { small.shouldReturn(held: held * mib, now: start + .seconds(seconds)) }
        #expect(!smallAt(0, held: 20))
        #expect(!smallAt(60, held: 0))
    }
}
