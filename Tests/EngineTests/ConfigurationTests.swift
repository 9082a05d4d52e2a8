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
        #expect(small.prefetchKiB == 1024 && small.pollBytes == 256 << 10)
        let medium = MemoryBudget(bufferLimit: 256 << 20)
        #expect(medium.prefetchKiB == 16 << 10 && medium.pollBytes == 4 << 20)
        let large = MemoryBudget(bufferLimit: 12 << 30)
        #expect(large.prefetchKiB == 65536 && large.pollBytes == 4 << 20)
    }
}
