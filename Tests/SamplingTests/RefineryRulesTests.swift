import OTLP
@testable import Sampling
import Testing

/// Refinery rules files read as tailgate policies: the first matching rule decides (Refinery's
/// semantics, from its rules-based sampler), what cannot be mapped exactly is refused, located.
@Suite struct RefineryRulesTests {
    static let rules = """
        RulesVersion: 2
        Samplers:
          __default__:
            RulesBasedSampler:
              Rules:
                - Name: drop healthchecks
                  Drop: true
                  Conditions:
                    - Field: http.route
                      Operator: starts-with
                      Value: /healthz
                - Name: keep errors
                  SampleRate: 1
                  Conditions:
                    - Field: error
                      Operator: exists
                - Name: keep 5xx
                  SampleRate: 1
                  Conditions:
                    - Field: http.response.status_code
                      Operator: ">="
                      Value: 500
                      Datatype: int
                - Name: one in four of the rest
                  SampleRate: 4
          production:
            DeterministicSampler:
              SampleRate: 10
        """

    private func trace(route: String, status: Int64, error: Bool = false, low: UInt64, selection: AttributeSelection) throws -> TraceData {
        try makeTrace(
            [TestSpan(name: "GET \(route)", status: error ? .error : .unset,
                      attributes: [("http.route", .string(route)), ("http.response.status_code", .int(status))])],
            traceID: TraceID(high: 7, low: low), selection: selection)
    }

    /// Each trace gets the outcome of the first rule it matches, as Refinery gives it. The last rule
    /// keeps 1 in 4 by the trace's randomness: a trace id ending in 0xc0000000000000 (R = 0.75 × 2^56,
    /// the threshold of 1/4) is kept, one just below is not.
    @Test func theFirstMatchingRuleDecides() throws {
        try decidesAsRefinery(RuleSet(configuration: try RuleFile.parse(Self.rules, file: "rules.yaml")))
    }

    /// The outcomes Refinery's rules-based sampler gives the rules file above (first match wins;
    /// `SampleRate: 4` keeps by the trace's randomness), written by hand.
    private func decidesAsRefinery(_ set: RuleSet) throws {
        let keep = UInt64(0x00c0_0000_0000_0000), miss = UInt64(0x00bf_ffff_ffff_ffff)
        let s = set.selection
        // A health check that also fails: the drop rule comes first.
        #expect(set.decide(try trace(route: "/healthz", status: 500, error: true, low: keep, selection: s), now: 0) == .drop)
        #expect(set.decide(try trace(route: "/feed", status: 200, error: true, low: miss, selection: s), now: 0) == .keep(policy: "keep errors"))
        #expect(set.decide(try trace(route: "/feed", status: 503, low: miss, selection: s), now: 0) == .keep(policy: "keep 5xx"))
        #expect(set.decide(try trace(route: "/feed", status: 200, low: keep, selection: s), now: 0) == .keep(policy: "one in four of the rest"))
        #expect(set.decide(try trace(route: "/feed", status: 200, low: miss, selection: s), now: 0) == .drop)
        // An error with a 5xx is kept by "keep errors" only (the first match), not twice.
        let both = set.explain(try trace(route: "/feed", status: 503, error: true, low: miss, selection: s), now: 0)
        #expect(both.decision == .keep(policy: "keep errors"))
        #expect(both.policies.first { $0.name == "keep 5xx" }?.decision == .notSampled)
    }

    /// Another environment's sampler; DeterministicSampler is a consistent 1-in-N probabilistic.
    @Test func environmentsAndTheDeterministicSampler() throws {
        let production = try RuleFile.parse(Self.rules, file: "rules.yaml", refineryEnvironment: "production")
        #expect(production.policies.map(\.kind) == [.probabilistic(samplingPercentage: 10, hashSalt: "", mode: .equalizing, precision: 4)])
        #expect(throws: RuleFileErrors.self) { try RuleFile.parse(Self.rules, file: "rules.yaml", refineryEnvironment: "staging") }
    }

    /// `convert` prints a tailgate rule file that decides every trace as Refinery decides it with the
    /// original (the same hand-written outcomes as above, not a comparison of parsed policies), and
    /// whose policies keep the Refinery rules' names, in order.
    @Test func theConvertedFileDecidesAsRefinery() throws {
        let original = try RuleFile.parse(Self.rules, file: "rules.yaml")
        let text = RuleFileWriter.yaml(original, header: ["converted"])
        #expect(!text.contains("RulesBasedSampler"), "a tailgate rule file, not Refinery's:\n\(text)")
        let again = try RuleFile.parse(text, file: "converted.yaml")
        #expect(again.policies.map(\.name) == ["drop healthchecks", "keep errors", "keep 5xx", "one in four of the rest"])
        try decidesAsRefinery(RuleSet(configuration: again))
    }

    /// The example in Refinery's rules documentation: its __default__ loads; its production
    /// DynamicSampler (superseded by EMADynamicSampler) is refused at its line.
    @Test func refinerysDocumentedExample() throws {
        let example = """
            RulesVersion: 2
            Samplers:
              __default__:
                DeterministicSampler:
                  SampleRate: 1
              production:
                DynamicSampler:
                  SampleRate: 2
                  ClearFrequency: 30s
                  FieldList:
                    - request.method
                    - http.target
                    - response.status_code
            """
        #expect(try RuleFile.parse(example, file: "rules.yaml").policies.map(\.kind) == [.alwaysSample])
        do {
            _ = try RuleFile.parse(example, file: "rules.yaml", refineryEnvironment: "production")
            Issue.record("DynamicSampler accepted")
        } catch {
            #expect(error.description.contains("rules.yaml:7:"), "\(error.description)")
            #expect(error.description.contains("DynamicSampler is not supported; use EMADynamicSampler"))
        }
    }

    /// Constructs without an exact meaning here are refused, each at its line, all listed.
    @Test func unmappableConstructsAreRefusedWhereTheyAre() {
        let text = """
            RulesVersion: 2
            Samplers:
              __default__:
                RulesBasedSampler:
                  Rules:
                    - Name: keep 500s
                      SampleRate: 1
                      Conditions:
                        - Fields: [http.status_code, http.response.status_code]
                          Operator: ">="
                          Value: 500
                          Datatype: int
                    - Name: slow roots
                      Scope: span
                      Conditions:
                        - Field: trace.parent_id
                          Operator: not-exists
                        - Field: duration_ms
                          Operator: ">="
                          Value: 5000
                    - Name: root route
                      Conditions:
                        - Field: root.http.route
                          Operator: "="
                          Value: /feed
            """
        do {
            _ = try RuleFile.parse(text, file: "r.yaml")
            Issue.record("accepted")
        } catch {
            let messages = error.errors.map(\.description)
            #expect(messages.contains { $0.hasPrefix("r.yaml:9:") && $0.contains("Fields with 2 names") }, "\(messages)")
            #expect(messages.contains { $0.hasPrefix("r.yaml:14:") && $0.contains("Scope: span with 2 conditions") }, "\(messages)")
            #expect(messages.contains { $0.hasPrefix("r.yaml:24:") && $0.contains("root. fields") }, "\(messages)")
        }
        #expect(throws: RuleFileErrors.self) { try RuleFile.parse("RulesVersion: 1\nSamplers: {__default__: {DeterministicSampler: {SampleRate: 1}}}", file: "r.yaml") }
    }
}
