import OTLP
import Sampling
import Testing

/// Every policy type and key, with the collector's semantics.
@Suite struct PolicyTests {
    func decide(_ yaml: String, _ spans: [TestSpan], now: UInt64 = 0) throws -> TraceDecision {
        let set = try rules(yaml)
        return set.decide(try makeTrace(spans, selection: set.selection), now: now)
    }

    @Test func alwaysSample() throws {
        #expect(try decide("policies: [{name: all, type: always_sample}]", [TestSpan()]) == .keep(policy: "all"))
    }

    @Test func latencyUsesEarliestStartToLatestEnd() throws {
        let yaml = "policies: [{name: slow, type: latency, latency: {threshold_ms: 500}}]"
        // Two spans of 300 ms, 250 ms apart: the trace lasts 550 ms.
        #expect(try decide(yaml, [TestSpan(startMs: 0, durationMs: 300), TestSpan(startMs: 250, durationMs: 300)]) == .keep(policy: "slow"))
        #expect(try decide(yaml, [TestSpan(startMs: 0, durationMs: 499)]) == .drop)
        #expect(try decide(yaml, [TestSpan(startMs: 0, durationMs: 500)]) == .keep(policy: "slow"), "threshold inclusive without upper bound")
        let band = "policies: [{name: band, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}]"
        #expect(try decide(band, [TestSpan(durationMs: 100)]) == .drop, "lower bound exclusive with an upper bound, as the collector")
        #expect(try decide(band, [TestSpan(durationMs: 150)]) == .keep(policy: "band"))
        #expect(try decide(band, [TestSpan(durationMs: 200)]) == .keep(policy: "band"))
        #expect(try decide(band, [TestSpan(durationMs: 201)]) == .drop)
    }

    @Test func numericAttributeOnSpansAndResources() throws {
        let yaml = "policies: [{name: fivexx, type: numeric_attribute, numeric_attribute: {key: http.response.status_code, min_value: 500, max_value: 599}}]"
        #expect(try decide(yaml, [TestSpan(attributes: [("http.response.status_code", .int(503))])]) == .keep(policy: "fivexx"))
        #expect(try decide(yaml, [TestSpan(attributes: [("http.response.status_code", .int(404))])]) == .drop)
        #expect(try decide(yaml, [TestSpan(resourceAttributes: [("http.response.status_code", .int(500))])]) == .keep(policy: "fivexx"))
        #expect(try decide(yaml, [TestSpan(attributes: [("http.response.status_code", .string("503"))])]) == .drop, "strings are not numbers")
        let minOnly = "policies: [{name: big, type: numeric_attribute, numeric_attribute: {key: bytes, min_value: 1000}}]"
        #expect(try decide(minOnly, [TestSpan(attributes: [("bytes", .int(Int64.max))])]) == .keep(policy: "big"))
        #expect(try decide(minOnly, [TestSpan(attributes: [("bytes", .double(1500.5))])]) == .keep(policy: "big"))
        let inverted = "policies: [{name: not-ok, type: numeric_attribute, numeric_attribute: {key: code, min_value: 200, max_value: 299, invert_match: true}}]"
        #expect(try decide(inverted, [TestSpan(attributes: [("code", .int(500))])]) == .keep(policy: "not-ok"), "InvertSampled keeps")
        #expect(try decide(inverted, [TestSpan(attributes: [("code", .int(200))])]) == .drop, "InvertNotSampled drops")
    }

    @Test func probabilisticIsTheCollectorsHash() throws {
        // FNV-1a 64 of "default-hash-seed" followed by the 16 id bytes, checked against the
        // reference values (see ProbabilisticHashTests) — here: 0% keeps nothing, 100% everything.
        let none = "policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 0}}]"
        let all = "policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 100}}]"
        #expect(try decide(none, [TestSpan()]) == .drop)
        #expect(try decide(all, [TestSpan()]) == .keep(policy: "p"))
        // Each of 4 000 seeded ids decided as the collector's formula decides it, written out here:
        // keep when FNV-1a-64(salt ‖ the 16 id bytes) ≤ ratio × 2^64−1.
        func collectorKeeps(_ id: TraceID, salt: String, percent: Double) -> Bool {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in Array(salt.utf8) + id.bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
            return hash <= UInt64(Double(UInt64.max) * percent / 100)
        }
        let ten = try rules("policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 10, hash_salt: dogbook}}]")
        var kept = 0, disagreements = 0
        var state: UInt64 = 0x5EED
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state
        }
        for _ in 0..<4000 {
            let id = TraceID(high: next(), low: next())
            let trace = try makeTrace([TestSpan()], traceID: id, selection: ten.selection)
            let keeps = ten.decide(trace, now: 0).isKeep
            if keeps { kept += 1 }
            if keeps != collectorKeeps(id, salt: "dogbook", percent: 10) { disagreements += 1 }
        }
        #expect(disagreements == 0, "\(disagreements) of 4000 decided otherwise than the collector's formula")
        #expect((300...500).contains(kept), "kept \(kept) of 4000 at 10%")
    }

    @Test func statusCode() throws {
        let yaml = "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]"
        #expect(try decide(yaml, [TestSpan(), TestSpan(status: .error)]) == .keep(policy: "errors"))
        #expect(try decide(yaml, [TestSpan(status: .ok)]) == .drop)
        let unsetOrOK = "policies: [{name: fine, type: status_code, status_code: {status_codes: [OK, UNSET]}}]"
        #expect(try decide(unsetOrOK, [TestSpan()]) == .keep(policy: "fine"))
    }

    @Test func stringAttributeExactRegexAndInvert() throws {
        let exact = "policies: [{name: routes, type: string_attribute, string_attribute: {key: http.route, values: [/login, /photos]}}]"
        #expect(try decide(exact, [TestSpan(attributes: [("http.route", .string("/photos"))])]) == .keep(policy: "routes"))
        #expect(try decide(exact, [TestSpan(attributes: [("http.route", .string("/photos/1"))])]) == .drop)
        #expect(try decide(exact, [TestSpan(resourceAttributes: [("http.route", .string("/login"))])]) == .keep(policy: "routes"))
        let regex = #"policies: [{name: api, type: string_attribute, string_attribute: {key: http.route, values: ["^/api/v[0-9]+/", "health"], enabled_regex_matching: true, cache_max_size: 4}}]"#
        #expect(try decide(regex, [TestSpan(attributes: [("http.route", .string("/api/v1/feed"))])]) == .keep(policy: "api"))
        #expect(try decide(regex, [TestSpan(attributes: [("http.route", .string("/healthz"))])]) == .keep(policy: "api"), "unanchored, as RE2 MatchString")
        #expect(try decide(regex, [TestSpan(attributes: [("http.route", .string("/feed"))])]) == .drop)
        let inverted = "policies: [{name: not-health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz], invert_match: true}}]"
        #expect(try decide(inverted, [TestSpan(attributes: [("http.route", .string("/healthz"))])]) == .drop)
        #expect(try decide(inverted, [TestSpan(attributes: [("http.route", .string("/feed"))])]) == .keep(policy: "not-health"))
    }

    @Test func rateLimitingIsATokenBucketOnTheInjectedClock() throws {
        let set = try rules("policies: [{name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 10}}]")
        let fourSpans = try makeTrace(Array(repeating: TestSpan(), count: 4), selection: set.selection)
        #expect(set.decide(fourSpans, now: 0).isKeep)
        #expect(set.decide(fourSpans, now: 0).isKeep)
        #expect(!set.decide(fourSpans, now: 0).isKeep, "12 spans > 10 within the same instant")
        #expect(set.decide(fourSpans, now: second / 2).isKeep, "half a second refills 5 tokens")
        #expect(!set.decide(fourSpans, now: second / 2).isKeep)
        #expect(set.decide(fourSpans, now: 5 * second).isKeep)
    }

    @Test func bytesLimiting() throws {
        let set = try rules("policies: [{name: bytes, type: bytes_limiting, bytes_limiting: {bytes_per_second: 100, burst_capacity: 150}}]")
        let trace = try makeTrace([TestSpan()], selection: set.selection)
        let size = trace.encodedBytes
        #expect(size > 40 && size < 75, "a small span is \(size) bytes")
        #expect(set.decide(trace, now: 0).isKeep)
        #expect(set.decide(trace, now: 0).isKeep == (2 * size <= 150))
        #expect(set.decide(trace, now: 10 * second).isKeep)
    }

    @Test func spanCount() throws {
        let yaml = "policies: [{name: mid, type: span_count, span_count: {min_spans: 2, max_spans: 3}}]"
        #expect(try decide(yaml, [TestSpan()]) == .drop)
        #expect(try decide(yaml, [TestSpan(), TestSpan()]) == .keep(policy: "mid"))
        #expect(try decide(yaml, Array(repeating: TestSpan(), count: 4)) == .drop)
        #expect(try decide("policies: [{name: many, type: span_count, span_count: {min_spans: 2}}]", Array(repeating: TestSpan(), count: 50)) == .keep(policy: "many"))
    }

    @Test func traceStateAndTraceFlags() throws {
        let yaml = "policies: [{name: gold, type: trace_state, trace_state: {key: dogbook, values: [gold, platinum]}}]"
        #expect(try decide(yaml, [TestSpan(traceState: "congo=t61, dogbook=gold")]) == .keep(policy: "gold"))
        #expect(try decide(yaml, [TestSpan(traceState: "dogbook=silver")]) == .drop)
        #expect(try decide(yaml, [TestSpan(traceState: "xdogbook=gold")]) == .drop)
        let flags = "policies: [{name: sampled, type: trace_flags}]"
        #expect(try decide(flags, [TestSpan(flags: 0x100)]) == .drop)
        #expect(try decide(flags, [TestSpan(flags: 0x301)]) == .keep(policy: "sampled"))
    }

    @Test func booleanAttribute() throws {
        let yaml = "policies: [{name: forced, type: boolean_attribute, boolean_attribute: {key: app.force_sample, value: true}}]"
        #expect(try decide(yaml, [TestSpan(attributes: [("app.force_sample", .bool(true))])]) == .keep(policy: "forced"))
        #expect(try decide(yaml, [TestSpan(attributes: [("app.force_sample", .bool(false))])]) == .drop)
        let inverted = "policies: [{name: unless, type: boolean_attribute, boolean_attribute: {key: app.do_not_sample, value: true, invert_match: true}}]"
        #expect(try decide(inverted, [TestSpan(attributes: [("app.do_not_sample", .bool(true))])]) == .drop)
        #expect(try decide(inverted, [TestSpan()]) == .keep(policy: "unless"))
    }

    @Test func andNotDrop() throws {
        let and = """
            policies:
              - name: checkout-errors
                type: and
                and:
                  and_sub_policy:
                    - {name: svc, type: string_attribute, string_attribute: {key: service.name, values: [checkout]}}
                    - {name: err, type: status_code, status_code: {status_codes: [ERROR]}}
            """
        #expect(try decide(and, [TestSpan(service: "checkout", status: .error)]) == .keep(policy: "checkout-errors"))
        #expect(try decide(and, [TestSpan(service: "feed", status: .error)]) == .drop)
        let not = """
            policies:
              - {name: not-health, type: not, not: {not_sub_policy: {name: health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}}}
            """
        #expect(try decide(not, [TestSpan(attributes: [("http.route", .string("/feed"))])]) == .keep(policy: "not-health"))
        #expect(try decide(not, [TestSpan(attributes: [("http.route", .string("/healthz"))])]) == .drop)
        let drop = """
            policies:
              - {name: keep-all, type: always_sample}
              - name: drop-health
                type: drop
                drop:
                  drop_sub_policy:
                    - {name: health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}
            """
        #expect(try decide(drop, [TestSpan(attributes: [("http.route", .string("/healthz"))])]) == .drop, "Dropped beats Sampled")
        #expect(try decide(drop, [TestSpan(attributes: [("http.route", .string("/feed"))])]) == .keep(policy: "keep-all"))
    }

    /// Each policy's own decision per trace, counted by hand: the drop policy stops evaluation of
    /// the policies after it, an inverted match counts as such, and a plain decide counts nothing.
    @Test func theTallyCountsEachPolicysOwnDecision() throws {
        let set = try rules("""
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: not-feed, type: string_attribute, string_attribute: {key: service.name, values: [feed], invert_match: true}}
              - name: drop-health
                type: drop
                drop: {drop_sub_policy: [{name: health, type: string_attribute, string_attribute: {key: http.route, values: [/healthz]}}]}
              - {name: all, type: always_sample}
            """)
        let traces: [[TestSpan]] = [
            [TestSpan(service: "feed", status: .error)],  // errors sampled; not-feed inverted not sampled; drop-health not; all sampled
            [TestSpan(service: "checkout")],  // errors not; not-feed inverted sampled; drop-health not; all sampled
            [TestSpan(service: "feed", attributes: [("http.route", .string("/healthz"))])],  // errors not; inverted not; dropped; all never evaluated
        ]
        var tally = PolicyTally(policies: 4)
        var decisions: [TraceDecision] = []
        for spans in traces { decisions.append(set.decide(try makeTrace(spans, selection: set.selection), now: 0, tally: &tally)) }
        // The collector's precedence: an inverted not-sampled drops the first trace despite its error;
        // a plain sampled beats an inverted sampled for the credit of the second.
        #expect(decisions == [.drop, .keep(policy: "all"), .drop])
        // Columns: sampled, not sampled, dropped, inverted sampled, inverted not sampled.
        #expect(tally.columns(of: 0) == [1, 2, 0, 0, 0])
        #expect(tally.columns(of: 1) == [0, 0, 0, 1, 2])
        #expect(tally.columns(of: 2) == [0, 2, 1, 0, 0])
        #expect(tally.columns(of: 3) == [2, 0, 0, 0, 0])
        #expect(PolicyTally.Column.allCases.map(\.label) == ["sampled", "not_sampled", "dropped", "inverted_sampled", "inverted_not_sampled"])
        var none = PolicyTally.none
        _ = set.decide(try makeTrace(traces[0], selection: set.selection), now: 0, tally: &none)
        #expect(none.isEmpty)
    }

    @Test func compositeAllocatesPerSecondBudgetsInPolicyOrder() throws {
        let yaml = """
            policies:
              - name: budget
                type: composite
                composite:
                  max_total_spans_per_second: 10
                  policy_order: [errors, everything]
                  composite_sub_policy:
                    - {name: everything, type: always_sample}
                    - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
                  rate_allocation:
                    - {policy: errors, percent: 60}
                    - {policy: everything, percent: 40}
            """
        let set = try rules(yaml)
        let errorTrace = try makeTrace([TestSpan(status: .error), TestSpan(status: .error)], selection: set.selection)
        let okTrace = try makeTrace([TestSpan(), TestSpan()], selection: set.selection)
        // errors: 6 spans/s, everything: 4 spans/s.
        #expect(set.decide(errorTrace, now: 0).isKeep)
        #expect(set.decide(errorTrace, now: 0).isKeep)
        #expect(set.decide(errorTrace, now: 0).isKeep)
        #expect(!set.decide(errorTrace, now: 0).isKeep, "errors' 6 spans are used; the first matching sub-policy decides")
        #expect(set.decide(okTrace, now: 0).isKeep)
        #expect(set.decide(okTrace, now: 0).isKeep)
        #expect(!set.decide(okTrace, now: 0).isKeep)
        #expect(set.decide(okTrace, now: second).isKeep, "budgets restart each second")
    }

    @Test func precedenceAndFirstMatch() throws {
        // InvertNotSampled beats Sampled.
        let yaml = """
            policies:
              - {name: all, type: always_sample}
              - {name: not-debug, type: boolean_attribute, boolean_attribute: {key: debug, value: true, invert_match: true}}
            """
        #expect(try decide(yaml, [TestSpan(attributes: [("debug", .bool(true))])]) == .drop)
        #expect(try decide(yaml, [TestSpan()]) == .keep(policy: "all"), "Sampled named before InvertSampled")
        // The first sampling policy in file order names the decision.
        let two = "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: all, type: always_sample}]"
        #expect(try decide(two, [TestSpan(status: .error)]) == .keep(policy: "errors"))
        #expect(try decide(two, [TestSpan()]) == .keep(policy: "all"))
    }

    @Test func sampleOnFirstMatchSkipsLaterLimiters() throws {
        let yaml = """
            sample_on_first_match: true
            policies:
              - {name: all, type: always_sample}
              - {name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 1}}
            """
        let set = try rules(yaml)
        let trace = try makeTrace([TestSpan()], selection: set.selection)
        for _ in 0..<5 { #expect(set.decide(trace, now: 0) == .keep(policy: "all")) }
    }
}
