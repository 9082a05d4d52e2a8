import HTTP
import Ingest
import Route
import Sinks
import Foundation
import Engine
import Sampling
import Testing
import TestSupport

/// The engine's side of the adaptive samplers: tables saved beside the store and restored at start,
/// the goal share a rebalance gives, and their metrics.
@Suite struct SamplerStateTests {
    @Test func tablesSurviveARestartAndGoalsFollowThePartitionShare() throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-samplers-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let rules = try writeRules("""
            policies:
              - {name: adaptive, type: ema_throughput, ema_throughput: {key_fields: [http.route], goal_throughput_per_sec: 100}}
            """)
        var configuration = EngineConfiguration(brokers: "127.0.0.1:1")
        configuration.dataDirectory = data.path
        configuration.rulesPath = rules
        let saved = DynamicRateTable.Snapshot(rates: ["/feed": 7, "/login": 2], movingAverage: ["/feed": 700, "/login": 40])
        do {
            let engine = try Engine(configuration: configuration, logger: quietLogger)
            let sampler = try #require(engine.sampling?.rules.rules.policies[0].dynamicSampler)
            sampler.restore(saved)
            engine.saveSamplerTables()
        }
        #expect(FileManager.default.fileExists(atPath: data.appendingPathComponent("samplers.json").path))

        let restarted = try Engine(configuration: configuration, logger: quietLogger)
        let sampling = try #require(restarted.sampling)
        let sampler = try #require(sampling.rules.rules.policies[0].dynamicSampler)
        #expect(sampler.snapshot == saved, "the restarted engine starts from the saved table")
        // A member that owns 3 of 12 partitions aims at a quarter of the goal.
        sampling.ownership(owned: 3, total: 12)
        #expect(sampler.goalShare == 0.25)
        let metrics = restarted.prometheusText()
        #expect(metrics.contains("tailgate_sampler_keys{policy=\"adaptive\"} 2"))
        #expect(metrics.contains("tailgate_sampler_rate{policy=\"adaptive\",key=\"/feed\"} 7"))
        #expect(metrics.contains("tailgate_sampler_goal_share 0.25"))
        let check = try promtoolCheckMetrics(metrics)
        #expect(check.status == 0, "\(check.report)")

        // Other settings: the table is not theirs, the sampler starts from cold.
        let changed = try writeRules("""
            policies:
              - {name: adaptive, type: ema_throughput, ema_throughput: {key_fields: [http.route], goal_throughput_per_sec: 50}}
            """)
        configuration.rulesPath = changed
        let other = try Engine(configuration: configuration, logger: quietLogger)
        #expect(try #require(other.sampling?.rules.rules.policies[0].dynamicSampler).snapshot.rates.isEmpty)
    }
}
