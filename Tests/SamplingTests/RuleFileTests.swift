import Foundation
import OTLP
import Sampling
import Testing

/// Rule files in the collector's syntax, and the errors `check` reports.
@Suite struct RuleFileTests {
    func errors(_ yaml: String) -> [RuleFileError] {
        do {
            _ = try RuleFile.parse(yaml, file: "rules.yaml")
            return []
        } catch {
            return error.errors
        }
    }

    @Test func theCollectorReadmeExampleParses() throws {
        let yaml = """
            processors:
              tail_sampling:
                decision_wait: 10s
                num_traces: 100
                expected_new_traces_per_sec: 10
                decision_cache:
                  sampled_cache_size: 100_000
                  non_sampled_cache_size: 100_000
                policies:
                  [
                      { name: test-policy-1, type: always_sample },
                      { name: test-policy-2, type: latency, latency: {threshold_ms: 5000, upper_threshold_ms: 10000} },
                      { name: test-policy-3, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50, max_value: 100} },
                      { name: test-policy-4, type: probabilistic, probabilistic: {sampling_percentage: 10} },
                      { name: test-policy-5, type: status_code, status_code: {status_codes: [ERROR, UNSET]} },
                      { name: test-policy-6, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]} },
                      { name: test-policy-7, type: string_attribute, string_attribute: {key: key2, values: [value1, val*], enabled_regex_matching: true, cache_max_size: 10} },
                      { name: test-policy-8, type: rate_limiting, rate_limiting: {spans_per_second: 35} },
                      { name: test-policy-9, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1024000, burst_capacity: 2048000} },
                      { name: test-policy-10, type: span_count, span_count: {min_spans: 2, max_spans: 20} },
                      { name: test-policy-11, type: trace_state, trace_state: { key: key3, values: [value1, value2] } },
                      { name: test-policy-12, type: boolean_attribute, boolean_attribute: {key: key4, value: true} },
                      { name: and-policy-1, type: and, and: { and_sub_policy: [
                          { name: test-and-policy-1, type: numeric_attribute, numeric_attribute: { key: key1, min_value: 50, max_value: 100 } },
                          { name: test-and-policy-2, type: string_attribute, string_attribute: { key: key2, values: [ value1, value2 ] } } ] } },
                      { name: drop-policy-1, type: drop, drop: { drop_sub_policy: [
                          { name: test-drop-policy-1, type: string_attribute, string_attribute: {key: url.path, values: [\\/health, \\/metrics], enabled_regex_matching: true} } ] } },
                      { name: composite-policy-1, type: composite, composite: {
                          max_total_spans_per_second: 1000,
                          policy_order: [test-composite-policy-1, test-composite-policy-2, test-composite-policy-3],
                          composite_sub_policy: [
                            { name: test-composite-policy-1, type: numeric_attribute, numeric_attribute: {key: key1, min_value: 50} },
                            { name: test-composite-policy-2, type: string_attribute, string_attribute: {key: key2, values: [value1, value2]} },
                            { name: test-composite-policy-3, type: always_sample } ],
                          rate_allocation: [ { policy: test-composite-policy-1, percent: 50 }, { policy: test-composite-policy-2, percent: 25 } ] } },
                  ]
            service:
              pipelines:
                traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}
            """
        let configuration = try RuleFile.parse(yaml, file: "collector.yaml")
        #expect(configuration.policies.count == 15)
        #expect(configuration.settings.decisionWait == .seconds(10))
        #expect(configuration.settings.numTraces == 100)
        #expect(configuration.settings.sampledCacheSize == 100_000)
        #expect(configuration.policies[1].kind == .latency(thresholdMs: 5000, upperThresholdMs: 10000))
        #expect(configuration.policies[2].line == 13)
        let set = RuleSet(configuration: configuration)
        #expect(Set(set.selection.keys) == ["key1", "key2", "key4", "url.path"])
    }

    @Test func namedTailSamplingProcessorAndTopLevelFile() throws {
        let named = """
            processors:
              batch: {}
              tail_sampling/dogbook:
                policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]
            """
        #expect(try RuleFile.parse(named, file: "c.yaml").policies.map(\.name) == ["errors"])
        let plain = """
            decision_wait: 5s
            decision_wait_after_root_received: 500ms
            max_spans_per_trace: 2000
            policies:
              - name: errors
                type: status_code
                status_code: {status_codes: [ERROR]}
            """
        let configuration = try RuleFile.parse(plain, file: "r.yaml")
        #expect(configuration.settings.decisionWait == .seconds(5))
        #expect(configuration.settings.decisionWaitAfterRootReceived == .milliseconds(500))
        #expect(configuration.settings.maxSpansPerTrace == 2000)
    }

    @Test func unknownTypeNamesLineAndSuggestsTheFix() throws {
        let found = errors("""
            policies:
              - name: slow
                type: latancy
                latancy: {threshold_ms: 100}
            """)
        try #require(found.count >= 1)
        #expect(found[0].line == 3)
        #expect(found[0].policy == "slow")
        #expect(found[0].description.hasPrefix("rules.yaml:3:"))
        #expect(found[0].message.contains("did you mean \"latency\""))
    }

    @Test func unknownStatusCode() {
        let found = errors("policies: [{name: errs, type: status_code, status_code: {status_codes: [ERROR, FAILED]}}]")
        #expect(found.count == 1)
        #expect(found.first?.message.contains("unknown status code \"FAILED\"; use OK, ERROR or UNSET") == true)
    }

    @Test func duplicateAndEmptyNames() {
        let duplicate = errors("""
            policies:
              - {name: a, type: always_sample}
              - {name: a, type: trace_flags}
            """)
        #expect(duplicate.count == 1)
        #expect(duplicate.first?.message.contains("duplicate policy name") == true)
        #expect(duplicate.first?.line == 3)
        let empty = errors("policies: [{name: '', type: always_sample}]")
        #expect(empty.first?.message.contains("empty policy name") == true)
        let missing = errors("policies: [{type: always_sample}]")
        #expect(missing.first?.message.contains("without `name`") == true)
    }

    @Test func minAboveMax() {
        #expect(errors("policies: [{name: n, type: numeric_attribute, numeric_attribute: {key: k, min_value: 10, max_value: 5}}]")
            .first?.message.contains("min_value (10) is greater than max_value (5)") == true)
        #expect(errors("policies: [{name: s, type: span_count, span_count: {min_spans: 10, max_spans: 5}}]")
            .first?.message.contains("min_spans (10) is greater than max_spans (5)") == true)
        #expect(errors("policies: [{name: l, type: latency, latency: {threshold_ms: 500, upper_threshold_ms: 100}}]")
            .first?.message.contains("must be below upper_threshold_ms") == true)
    }

    @Test func badRegex() {
        let found = errors(#"policies: [{name: r, type: string_attribute, string_attribute: {key: k, values: ["(unclosed"], enabled_regex_matching: true}}]"#)
        #expect(found.count == 1)
        #expect(found.first?.message.contains("invalid regular expression \"(unclosed\"") == true)
    }

    @Test func yamlSyntaxErrorHasALine() {
        let found = errors("policies:\n  - name: a\n    type: [always_sample\n")
        #expect(found.count == 1)
        #expect(found.first?.message.hasPrefix("YAML syntax") == true)
        #expect((found.first?.line ?? 0) >= 3)
    }

    @Test func ottlConditionIsRefusedByName() {
        let found = errors(#"policies: [{name: o, type: ottl_condition, ottl_condition: {span: ["true"]}}]"#)
        #expect(found.first?.message.contains("ottl_condition is not supported") == true)
    }

    @Test func everyErrorIsReportedNotJustTheFirst() {
        let found = errors("""
            decision_wait: soon
            policies:
              - {name: a, type: probabilistic, probabilistic: {sampling_percentage: 120}}
              - {name: b, type: rate_limiting, rate_limiting: {spans_per_second: 0}}
              - {name: c, type: string_attribute, string_attribute: {key: k, values: [x], typo_key: 1}}
            """)
        #expect(found.count == 4)
        #expect(found.map(\.line) == [1, 3, 4, 5])
    }

    @Test func sameBehaviourCarriesLimiterStateOverAReload() throws {
        let yaml = "policies: [{name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 1}}]"
        let first = try rules(yaml)
        let trace = try makeTrace([TestSpan()], selection: first.selection)
        #expect(first.decide(trace, now: 0).isKeep)
        // Reloading the same policy (plus a new one) keeps the spent bucket.
        let second = RuleSet(
            configuration: try RuleFile.parse(yaml.replacingOccurrences(of: "]", with: ", {name: extra, type: trace_flags}]"), file: "r"),
            previous: first)
        #expect(!second.decide(trace, now: 0).isKeep)
        // A changed limit starts fresh.
        let third = RuleSet(configuration: try RuleFile.parse(yaml.replacingOccurrences(of: ": 1}", with: ": 5}"), file: "r"), previous: second)
        #expect(third.decide(trace, now: 0).isKeep)
    }

    @Test func attributeIdsOnlyGrowAcrossReloads() throws {
        let first = try rules("policies: [{name: a, type: string_attribute, string_attribute: {key: alpha, values: [x]}}]")
        let second = RuleSet(
            configuration: try RuleFile.parse("policies: [{name: b, type: string_attribute, string_attribute: {key: beta, values: [x]}}]", file: "r"),
            previous: first)
        #expect(second.selection.keys == ["alpha", "beta"])
    }
}

/// The `redaction:` section: parsed into rules, errors located.
@Suite struct RedactionRuleFileTests {
    @Test func parsesRules() throws {
        let configuration = try RuleFile.parse("""
            policies: [{name: all, type: always_sample}]
            redaction:
              - {action: delete, keys: ["http.request.header.*"]}
              - {action: hash, keys: [user.email, enduser.id]}
              - {action: mask, values: ['[0-9]{13,16}'], replacement: "[card]"}
            """, file: "r.yaml")
        #expect(configuration.redaction.count == 3)
        #expect(configuration.redaction[2] == RedactionRule(action: .mask, values: ["[0-9]{13,16}"], replacement: "[card]"))
        #expect(configuration.redactionHashes)
    }

    @Test func errorsNameTheRuleAndTheFix() {
        do {
            _ = try RuleFile.parse("""
                policies: [{name: all, type: always_sample}]
                redaction:
                  - {action: hide, keys: [a]}
                  - {action: mask, keys: [b]}
                  - {action: delete}
                  - {action: mask, values: ['([']}
                """, file: "r.yaml")
            Issue.record("expected errors")
        } catch {
            let text = error.description
            #expect(text.contains("r.yaml:3") && text.contains("redaction[0]") && text.contains("hide"))
            #expect(text.contains("redaction[1]") && text.contains("mask needs `values`"))
            #expect(text.contains("redaction[2]") && text.contains("give `keys`"))
            #expect(text.contains("redaction[3]") && text.contains("not a valid regular expression"))
        }
    }
}

/// The rule-file parser's share of the bounded CI fuzz: mutated pipeline files give rules or located
/// errors, never a crash (libFuzzer's long runs: Fuzz/README.md).
@Suite struct RuleFileFuzzRegressionTests {
    @Test func mutatedRuleFilesParseOrFailWithLocations() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/rules")
        let seeds = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
            .map { [UInt8](try Data(contentsOf: folder.appendingPathComponent($0))) }
        try #require(!seeds.isEmpty)
        // Every reproducer kept in Fuzz/crashes/rules first (a crash libFuzzer found stays found).
        let crashes = folder.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("crashes/rules")
        let reproducers = try FileManager.default.contentsOfDirectory(atPath: crashes.path).filter { !$0.hasPrefix(".") }.sorted()
        for name in reproducers {
            let text = String(decoding: try Data(contentsOf: crashes.appendingPathComponent(name)), as: UTF8.self)
            do {
                _ = try RuleFile.parse(text, file: name)
            } catch {
                #expect(error.errors.allSatisfy { $0.file == name && !$0.message.isEmpty }, "\(name): \(error.errors.map(\.description))")
            }
        }
        #expect(reproducers.count >= 2, "the kept reproducers: \(reproducers)")
        var state: UInt64 = 3
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        let alphabet = Array("{}[]:,-#&*!|>'\"\n \t0123456789abcdefghijklmnopqrstuvwxyz_.".utf8)
        var parsed = 0
        var refused = 0
        for _ in 0..<1_500 {
            var bytes = seeds[next() % seeds.count]
            for _ in 0..<(1 + next() % 3) {
                let at = next() % max(1, bytes.count)
                switch next() % 3 {
                case 0: if !bytes.isEmpty { bytes[at] = alphabet[next() % alphabet.count] }
                case 1: bytes.insert(alphabet[next() % alphabet.count], at: min(at, bytes.count))
                default: if !bytes.isEmpty { bytes.remove(at: at) }
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
            do {
                _ = try RuleFile.parse(text, file: "fuzz.yaml")
                parsed += 1
            } catch {
                refused += 1
                // Located inside the file (YAML lines count from 1; 0 only for the file as a whole).
                #expect(error.errors.allSatisfy { $0.file == "fuzz.yaml" && $0.line >= 0 && $0.line <= lines + 1 && !$0.message.isEmpty },
                        "\(error.errors.map(\.description)) in \(lines) lines")
            }
        }
        #expect(parsed > 0 && refused > 0, "parsed \(parsed), refused \(refused)")
    }
}
