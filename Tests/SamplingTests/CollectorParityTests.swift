import OTLP
import Sampling
import Testing

/// Parity with the OpenTelemetry Collector's tail_sampling processor, case by case, from its own
/// tests and README (opentelemetry-collector-contrib, processor/tailsamplingprocessor). Each case
/// names its source. The intended differences are listed in the README ("Differences from the
/// collector") and `tailgate check` warns about them.
@Suite struct CollectorParityTests {
    // MARK: makeDecision precedence (processor.go makeDecision; processor_decisions_test.go)

    struct PrecedenceCase: Sendable, CustomStringConvertible {
        var source: String
        var decisions: [PolicyDecision]
        /// Index of the policy that keeps the trace; nil: dropped.
        var keptBy: Int?
        var description: String { source }
    }

    static let precedence: [PrecedenceCase] = [
        PrecedenceCase(source: "TestSamplingPolicyTypicalPath", decisions: [.sampled], keptBy: 0),
        PrecedenceCase(source: "TestSamplingPolicyInvertSampled", decisions: [.invertSampled], keptBy: 0),
        PrecedenceCase(source: "TestSamplingMultiplePolicies_WithRecordPolicy (the first policy is recorded)", decisions: [.sampled, .sampled], keptBy: 0),
        PrecedenceCase(source: "TestSamplingPolicyDecisionNotSampled", decisions: [.notSampled], keptBy: nil),
        PrecedenceCase(source: "TestSamplingPolicyDecisionInvertNotSampled", decisions: [.invertNotSampled, .sampled], keptBy: nil),
        PrecedenceCase(source: "TestLateArrivingSpansAssignedOriginalDecision (InvertSampled + NotSampled = NotSampled)", decisions: [.invertSampled, .notSampled], keptBy: nil),
        PrecedenceCase(source: "makeDecision: InvertSampled keeps only when no policy returned NotSampled", decisions: [.notSampled, .invertSampled], keptBy: nil),
        PrecedenceCase(source: "makeDecision: Sampled wins over NotSampled", decisions: [.notSampled, .sampled], keptBy: 1),
        PrecedenceCase(source: "makeDecision: Sampled is named before an earlier InvertSampled", decisions: [.invertSampled, .sampled], keptBy: 1),
        PrecedenceCase(source: "makeDecision: the first InvertSampled is named", decisions: [.invertSampled, .invertSampled], keptBy: 0),
        PrecedenceCase(source: "makeDecision: Dropped takes precedence", decisions: [.sampled, .dropped], keptBy: nil),
        PrecedenceCase(source: "makeDecision: InvertNotSampled beats InvertSampled", decisions: [.invertSampled, .invertNotSampled], keptBy: nil),
        PrecedenceCase(source: "makeDecision: no decision at all is NotSampled", decisions: [], keptBy: nil),
    ]

    @Test(arguments: precedence)
    func precedenceIsTheCollectors(_ c: PrecedenceCase) {
        var combiner = DecisionCombiner()
        for (index, decision) in c.decisions.enumerated() { combiner.add(decision, policy: "p\(index)") }
        #expect(combiner.result == (c.keptBy.map { .keep(policy: "p\($0)") } ?? .drop))
    }

    // MARK: Policies over traces

    struct TraceCase: Sendable, CustomStringConvertible {
        var source: String
        var yaml: String
        var spans: [TestSpan]
        var kept: String?
        var description: String { source }
    }

    static let int32Range = "{key: example, min_value: -2147483648, max_value: 2147483647"

    static let traces: [TraceCase] = [
        // The issue's example: InvertSampled from the second policy does not keep a trace the first
        // policy answered NotSampled.
        TraceCase(
            source: "README, invert_match + makeDecision: /feed from prod is not kept",
            yaml: """
                policies:
                  - {name: checkout, type: string_attribute, string_attribute: {key: http.route, values: [/checkout]}}
                  - {name: not-test, type: string_attribute, string_attribute: {key: deployment.environment, values: [test], invert_match: true}}
                """,
            spans: [TestSpan(attributes: [("http.route", .string("/feed"))], resourceAttributes: [("deployment.environment", .string("prod"))])],
            kept: nil),
        TraceCase(
            source: "README, invert_match + makeDecision: /checkout from prod is kept by checkout",
            yaml: """
                policies:
                  - {name: checkout, type: string_attribute, string_attribute: {key: http.route, values: [/checkout]}}
                  - {name: not-test, type: string_attribute, string_attribute: {key: deployment.environment, values: [test], invert_match: true}}
                """,
            spans: [TestSpan(attributes: [("http.route", .string("/checkout"))], resourceAttributes: [("deployment.environment", .string("prod"))])],
            kept: "checkout"),
        TraceCase(
            source: "README, invert_match alone: a trace without the value is kept (InvertSampled)",
            yaml: "policies: [{name: not-test, type: string_attribute, string_attribute: {key: deployment.environment, values: [test], invert_match: true}}]",
            spans: [TestSpan(resourceAttributes: [("deployment.environment", .string("prod"))])],
            kept: "not-test"),
        // not.go: only Sampled and NotSampled are swapped.
        TraceCase(
            source: "not.go: InvertNotSampled passes through `not` (was turned into Sampled)",
            yaml: """
                policies:
                  - {name: n, type: not, not: {not_sub_policy: {name: s, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}}}
                """,
            spans: [TestSpan(attributes: [("env", .string("test"))])],
            kept: nil),
        TraceCase(
            source: "not.go: InvertSampled passes through `not` and keeps",
            yaml: """
                policies:
                  - {name: n, type: not, not: {not_sub_policy: {name: s, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}}}
                """,
            spans: [TestSpan(attributes: [("env", .string("prod"))])],
            kept: "n"),
        TraceCase(
            source: "not_test.go: Sampled becomes NotSampled",
            yaml: "policies: [{name: n, type: not, not: {not_sub_policy: {name: s, type: status_code, status_code: {status_codes: [ERROR]}}}}]",
            spans: [TestSpan(status: .error)],
            kept: nil),
        TraceCase(
            source: "not_test.go: NotSampled becomes Sampled",
            yaml: "policies: [{name: n, type: not, not: {not_sub_policy: {name: s, type: status_code, status_code: {status_codes: [ERROR]}}}}]",
            spans: [TestSpan(status: .ok)],
            kept: "n"),
        // and.go / drop.go: NotSampled or InvertNotSampled refuses; anything else goes on.
        TraceCase(
            source: "and.go: an InvertNotSampled sub-policy makes `and` NotSampled",
            yaml: """
                policies:
                  - name: a
                    type: and
                    and: {and_sub_policy: [{name: all, type: always_sample}, {name: s, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}]}
                """,
            spans: [TestSpan(attributes: [("env", .string("test"))])],
            kept: nil),
        TraceCase(
            source: "and.go: an InvertSampled sub-policy lets `and` sample",
            yaml: """
                policies:
                  - name: a
                    type: and
                    and: {and_sub_policy: [{name: all, type: always_sample}, {name: s, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}]}
                """,
            spans: [TestSpan(attributes: [("env", .string("prod"))])],
            kept: "a"),
        TraceCase(
            source: "drop.go: every sub-policy matches: Dropped beats Sampled",
            yaml: """
                policies:
                  - {name: all, type: always_sample}
                  - {name: d, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}]}}
                """,
            spans: [TestSpan(attributes: [("http.route", .string("/healthz"))])],
            kept: nil),
        TraceCase(
            source: "drop.go: an InvertNotSampled sub-policy stops the drop",
            yaml: """
                policies:
                  - {name: all, type: always_sample}
                  - {name: d, type: drop, drop: {drop_sub_policy: [{name: s, type: string_attribute, string_attribute: {key: env, values: [test], invert_match: true}}]}}
                """,
            spans: [TestSpan(attributes: [("env", .string("test"))])],
            kept: "all"),
        // numeric_tag_filter_test.go, TestNumericTagFilter (MinInt32 … MaxInt32).
        TraceCase(source: "TestNumericTagFilter: nonmatching span attribute", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range)}}]",
                  spans: [TestSpan(attributes: [("non_matching", .int(-2_147_483_648))])], kept: nil),
        TraceCase(source: "TestNumericTagFilter: span attribute at the lower limit", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range)}}]",
                  spans: [TestSpan(attributes: [("example", .int(-2_147_483_648))])], kept: "n"),
        TraceCase(source: "TestNumericTagFilter: span attribute at the upper limit", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range)}}]",
                  spans: [TestSpan(attributes: [("example", .int(2_147_483_647))])], kept: "n"),
        TraceCase(source: "TestNumericTagFilter: span attribute below min limit", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range)}}]",
                  spans: [TestSpan(attributes: [("example", .int(-2_147_483_649))])], kept: nil),
        TraceCase(source: "TestNumericTagFilter: span attribute above max limit", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range)}}]",
                  spans: [TestSpan(attributes: [("example", .int(2_147_483_648))])], kept: nil),
        // TestNumericTagFilterInverted.
        TraceCase(source: "TestNumericTagFilterInverted: nonmatching span attribute", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range), invert_match: true}}]",
                  spans: [TestSpan(attributes: [("non_matching", .int(-2_147_483_648))])], kept: "n"),
        TraceCase(source: "TestNumericTagFilterInverted: span attribute at the lower limit", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range), invert_match: true}}]",
                  spans: [TestSpan(attributes: [("example", .int(-2_147_483_648))])], kept: nil),
        TraceCase(source: "TestNumericTagFilterInverted: span attribute above max limit", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: \(int32Range), invert_match: true}}]",
                  spans: [TestSpan(attributes: [("example", .int(2_147_483_648))])], kept: "n"),
        // policy config: an explicit 0 is "not set" (getSharedPolicyEvaluator).
        TraceCase(source: "config: min_value 0 is no lower bound", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: {key: x, min_value: 0, max_value: 100}}]",
                  spans: [TestSpan(attributes: [("x", .int(-5))])], kept: "n"),
        TraceCase(source: "config: max_value 0 is no upper bound", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: {key: x, min_value: 10, max_value: 0}}]",
                  spans: [TestSpan(attributes: [("x", .int(1_000_000))])], kept: "n"),
        TraceCase(source: "config: min_value 10 still bounds", yaml: "policies: [{name: n, type: numeric_attribute, numeric_attribute: {key: x, min_value: 10, max_value: 0}}]",
                  spans: [TestSpan(attributes: [("x", .int(9))])], kept: nil),
        // status_code_test.go.
        TraceCase(source: "status_code_test.go: ERROR matches [ERROR]", yaml: "policies: [{name: s, type: status_code, status_code: {status_codes: [ERROR]}}]",
                  spans: [TestSpan(status: .ok), TestSpan(status: .error)], kept: "s"),
        TraceCase(source: "status_code_test.go: OK and UNSET do not match [ERROR]", yaml: "policies: [{name: s, type: status_code, status_code: {status_codes: [ERROR]}}]",
                  spans: [TestSpan(status: .ok), TestSpan(status: .unset)], kept: nil),
        TraceCase(source: "status_code_test.go: UNSET matches [OK, UNSET]", yaml: "policies: [{name: s, type: status_code, status_code: {status_codes: [OK, UNSET]}}]",
                  spans: [TestSpan(status: .unset)], kept: "s"),
        // span_count_test.go.
        TraceCase(source: "span_count_test.go: 3 spans within [2, 4]", yaml: "policies: [{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 4}}]",
                  spans: [TestSpan(), TestSpan(), TestSpan()], kept: "c"),
        TraceCase(source: "span_count_test.go: 1 span below min_spans 2", yaml: "policies: [{name: c, type: span_count, span_count: {min_spans: 2}}]",
                  spans: [TestSpan()], kept: nil),
        TraceCase(source: "span_count_test.go: 5 spans above max_spans 4", yaml: "policies: [{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 4}}]",
                  spans: [TestSpan(), TestSpan(), TestSpan(), TestSpan(), TestSpan()], kept: nil),
        // boolean_tag_filter_test.go.
        TraceCase(source: "boolean_tag_filter_test.go: true matches value true", yaml: "policies: [{name: b, type: boolean_attribute, boolean_attribute: {key: example, value: true}}]",
                  spans: [TestSpan(attributes: [("example", .bool(true))])], kept: "b"),
        TraceCase(source: "boolean_tag_filter_test.go: false does not match value true", yaml: "policies: [{name: b, type: boolean_attribute, boolean_attribute: {key: example, value: true}}]",
                  spans: [TestSpan(attributes: [("example", .bool(false))])], kept: nil),
        TraceCase(source: "boolean_tag_filter_test.go: inverted, a missing key samples", yaml: "policies: [{name: b, type: boolean_attribute, boolean_attribute: {key: example, value: true, invert_match: true}}]",
                  spans: [TestSpan()], kept: "b"),
        // trace_state_test.go.
        TraceCase(source: "trace_state_test.go: key=value matches", yaml: "policies: [{name: t, type: trace_state, trace_state: {key: example, values: [value]}}]",
                  spans: [TestSpan(traceState: "example=value")], kept: "t"),
        TraceCase(source: "trace_state_test.go: another value does not match", yaml: "policies: [{name: t, type: trace_state, trace_state: {key: example, values: [value]}}]",
                  spans: [TestSpan(traceState: "example=non_matching")], kept: nil),
        // string_tag_filter_test.go.
        TraceCase(source: "string_tag_filter_test.go: matching resource attribute", yaml: "policies: [{name: s, type: string_attribute, string_attribute: {key: example, values: [value]}}]",
                  spans: [TestSpan(resourceAttributes: [("example", .string("value"))])], kept: "s"),
        TraceCase(source: "string_tag_filter_test.go: regex ^v.*e$ matches value", yaml: "policies: [{name: s, type: string_attribute, string_attribute: {key: example, values: ['^v.*e$'], enabled_regex_matching: true}}]",
                  spans: [TestSpan(attributes: [("example", .string("value"))])], kept: "s"),
        TraceCase(source: "string_tag_filter_test.go: inverted, matching span attribute is InvertNotSampled", yaml: "policies: [{name: s, type: string_attribute, string_attribute: {key: example, values: [value], invert_match: true}}]",
                  spans: [TestSpan(attributes: [("example", .string("value"))])], kept: nil),
        // latency_test.go (whole trace: earliest start to latest end).
        TraceCase(source: "latency_test.go: a trace lasting longer than threshold_ms", yaml: "policies: [{name: l, type: latency, latency: {threshold_ms: 5000}}]",
                  spans: [TestSpan(startMs: 0, durationMs: 3000), TestSpan(startMs: 3000, durationMs: 3000)], kept: "l"),
        TraceCase(source: "latency_test.go: a trace shorter than threshold_ms", yaml: "policies: [{name: l, type: latency, latency: {threshold_ms: 5000}}]",
                  spans: [TestSpan(startMs: 0, durationMs: 3000)], kept: nil),
        TraceCase(source: "latency_test.go: upper_threshold_ms bounds the range", yaml: "policies: [{name: l, type: latency, latency: {threshold_ms: 1000, upper_threshold_ms: 2000}}]",
                  spans: [TestSpan(startMs: 0, durationMs: 2500)], kept: nil),
    ]

    @Test(arguments: traces)
    func policiesDecideAsTheCollector(_ c: TraceCase) throws {
        let set = try rules(c.yaml)
        let decision = set.decide(try makeTrace(c.spans, selection: set.selection), now: 0)
        #expect(decision == (c.kept.map { .keep(policy: $0) } ?? .drop), "\(c.source)")
    }

    /// A drop stops evaluation, as in the collector: a rate limit after it spends nothing on the trace.
    @Test func aDropStopsEvaluationBeforeLaterLimiters() throws {
        let set = try rules("""
            policies:
              - {name: d, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}]}}
              - {name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 1}}
            """)
        let health = try makeTrace([TestSpan(attributes: [("http.route", .string("/healthz"))])], selection: set.selection)
        let other = try makeTrace([TestSpan(attributes: [("http.route", .string("/feed"))])], selection: set.selection)
        for _ in 0..<3 { #expect(set.decide(health, now: 0) == .drop) }
        #expect(set.decide(other, now: 0) == .keep(policy: "budget"), "the budget's one span per second was not spent on dropped traces")
    }
}

/// `tailgate check` warns where a file relies on an intended difference from the collector.
@Suite struct CollectorDifferenceTests {
    @Test func everyIntendedDifferenceIsWarnedWithItsPolicy() throws {
        let configuration = try RuleFile.parse("""
            decision_wait: 1500ms
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: slow, type: latency, latency: {threshold_ms: 1000, upper_threshold_ms: 5000}}
              - {name: big, type: numeric_attribute, numeric_attribute: {key: bytes, min_value: 0, max_value: 100}}
              - {name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 100}}
              - name: mix
                type: composite
                composite:
                  max_total_spans_per_second: 100
                  policy_order: [b, a]
                  composite_sub_policy:
                    - {name: a, type: always_sample}
                    - {name: b, type: status_code, status_code: {status_codes: [ERROR]}}
            """, file: "rules.yaml")
        let found = CollectorDifference.find(in: configuration)
        #expect(found.map(\.policy) == [nil, "slow", "big", "big", "budget", "mix"])
        #expect(found[0].message.contains("not whole seconds"))
        #expect(found[1].message.contains("upper_threshold_ms"))
        #expect(found[2].message.contains("double"))
        #expect(found[3].message.contains("negative values match too"))
        #expect(found[4].message.contains("token bucket"))
        #expect(found[5].message.contains("policy_order (b, a)") && found[5].message.contains("file order (a, b)"))
        #expect(found.allSatisfy { $0.policy == nil || $0.line > 0 }, "policies are located")
        // A file that relies on nothing tailgate does differently gets no warning.
        let plain = try RuleFile.parse("policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]", file: "r.yaml")
        #expect(CollectorDifference.find(in: plain).isEmpty)
    }
}

/// `eval --explain`: every policy's own decision and the precedence rule that decided.
@Suite struct ExplainTests {
    @Test func theIssuesExampleExplainsItsDrop() throws {
        let set = try rules("""
            policies:
              - {name: checkout, type: string_attribute, string_attribute: {key: http.route, values: [/checkout]}}
              - {name: not-test, type: string_attribute, string_attribute: {key: deployment.environment, values: [test], invert_match: true}}
            """)
        let trace = try makeTrace([TestSpan(attributes: [("http.route", .string("/feed"))], resourceAttributes: [("deployment.environment", .string("prod"))])], selection: set.selection)
        let explanation = set.explain(trace, now: 0)
        #expect(explanation.decision == .drop)
        #expect(explanation.policies.map(\.name) == ["checkout", "not-test"])
        #expect(explanation.policies.map(\.decision) == [.notSampled, .invertSampled])
        #expect(explanation.rule == .invertSampledOutvoted)
        #expect(explanation.threshold == nil)
    }

    @Test func aDropLeavesLaterPoliciesUnevaluatedAndAProbabilisticKeepShowsItsThreshold() throws {
        let dropped = try rules("""
            policies:
              - {name: d, type: drop, drop: {drop_sub_policy: [{name: all, type: always_sample}]}}
              - {name: later, type: always_sample}
            """)
        let trace = try makeTrace([TestSpan()], selection: dropped.selection)
        let explanation = dropped.explain(trace, now: 0)
        #expect(explanation.policies.map(\.decision) == [.dropped, nil], "evaluation stops at a drop")
        #expect(explanation.rule == .dropped)
        let quarter = try rules("policies: [{name: q, type: probabilistic, probabilistic: {sampling_percentage: 25, mode: equalizing}}]")
        let lucky = try makeTrace([TestSpan(root: true)], traceID: TraceID(high: 1, low: 0xF0_0000_0000_0000), selection: quarter.selection)
        let kept = quarter.explain(lucky, now: 0)
        #expect(kept.decision == .keep(policy: "q") && kept.rule == .sampled)
        #expect(kept.threshold?.encoded == "c" && kept.threshold?.adjustedCount == 4)
        // The JSON line: the contract's fields first, then the explanation.
        let line = EvaluatedTrace(trace: lucky, decision: kept.decision).jsonLine(explanation: kept)
        #expect(line == #"{"traceId":"000000000000000100f0000000000000","decision":"keep","policy":"q","spans":1,"policies":[{"name":"q","decision":"Sampled"}],"rule":"Sampled keeps","threshold":"c","adjustedCount":4.0}"#)
    }
}
