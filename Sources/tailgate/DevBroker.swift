import ArgumentParser
import Engine
import Foundation
import Sampling
import Kafka

struct DevBroker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-broker",
        abstract: "Run librdkafka's mock Kafka cluster on loopback (for the demo, tests and local work).",
        discussion: """
            Prints the bootstrap server list as the first line on stdout, then serves until SIGINT/SIGTERM. \
            The mock cluster speaks the real Kafka protocol (produce, fetch, consumer groups, offset commits); \
            it keeps data in memory only.
            """)

    @Option(help: "Partitions per topic.")
    var partitions: Int = 6

    @Option(name: .customLong("topic"), help: "Topic to create (repeatable; default otlp_spans).")
    var topics: [String] = []

    @Option(help: "Number of mock brokers.")
    var brokerCount: Int = 1

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard partitions >= 1 else { throw ValidationError("--partitions must be at least 1") }
        guard brokerCount >= 1 else { throw ValidationError("--broker-count must be at least 1") }
    }

    func run() throws {
        let logger = logging.bootstrap(label: "tailgate.dev-broker")
        let topicNames = topics.isEmpty ? ["otlp_spans"] : topics
        let cluster = try KafkaMockCluster(brokers: brokerCount, topics: topicNames.map { ($0, partitions) }, logger: logger)
        // The first stdout line is the bootstrap list; written unbuffered so a parent process sees it at once.
        FileHandle.standardOutput.write(Data((cluster.bootstrapServers + "\n").utf8))
        logger.info("mock cluster ready", metadata: ["bootstrap": "\(cluster.bootstrapServers)", "topics": "\(topicNames.joined(separator: ","))", "partitions": "\(partitions)"])
        let stop = DispatchSemaphore(value: 0)
        let trap = SignalTrap([SIGINT, SIGTERM]) { _ in stop.signal() }
        stop.wait()
        withExtendedLifetime((trap, cluster)) {}
        logger.info("mock cluster stopped")
    }
}
