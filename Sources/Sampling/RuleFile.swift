import OTLP
import Yams

/// One problem in a rule file, located: file, line, column, policy, what is wrong and how to fix it.
public struct RuleFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    /// The policy it concerns (path through sub-policies), when it concerns one.
    public var policy: String?
    public var message: String

    public init(file: String, line: Int, column: Int, policy: String?, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.policy = policy
        self.message = message
    }

    public var description: String {
        "\(file):\(line):\(column): " + (policy.map { "policy \"\($0)\": " } ?? "") + message
    }
}

/// Every problem found in a rule file (parsing goes on after the first, so `check` lists them all).
public struct RuleFileErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [RuleFileError]
    public init(errors: [RuleFileError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// Reads the OpenTelemetry Collector's `tail_sampling` configuration: a file with top-level
/// `policies:` (and optional settings), or a whole collector configuration whose
/// `processors.tail_sampling` (or `tail_sampling/NAME`) is read.
public enum RuleFile {
    public static let policyTypes = [
        "always_sample", "latency", "numeric_attribute", "probabilistic", "status_code", "string_attribute",
        "rate_limiting", "bytes_limiting", "span_count", "trace_state", "trace_flags", "boolean_attribute", "and", "not",
        "drop", "composite", "ema_dynamic", "ema_throughput", "windowed_throughput", "byte_budget",
    ]

    /// Parses and validates `text` (named `file` in messages). A Honeycomb Refinery rules file
    /// (`RulesVersion: 2`) is read too: `refineryEnvironment`'s sampler (default `__default__`).
    public static func parse(_ text: String, file: String, refineryEnvironment: String = "__default__") throws(RuleFileErrors) -> RuleConfiguration {
        var parser = RuleFileParser(file: file)
        parser.refineryEnvironment = refineryEnvironment
        let configuration = parser.parseDocument(text)
        if !parser.errors.isEmpty || configuration == nil {
            throw RuleFileErrors(errors: parser.errors.isEmpty
                ? [RuleFileError(file: file, line: 1, column: 1, policy: nil, message: "no rules found")] : parser.errors)
        }
        return configuration!
    }
}

/// Durations as Go writes them (`500ms`, `2s`, `1m30s`, `1h`), which collector configs use.
public enum GoDuration {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Duration)] = [
            ("ms", .milliseconds(1)), ("us", .microseconds(1)), ("µs", .microseconds(1)), ("ns", .nanoseconds(1)),
            ("h", .seconds(3600)), ("m", .seconds(60)), ("s", .seconds(1)),
        ]
        var rest = Substring(text.filter { $0 != " " })
        guard !rest.isEmpty else { return nil }
        if rest == "0" { return .zero }
        var total = Duration.zero
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (suffix, unit) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(suffix.count)
            total += unit * value
        }
        return total
    }
}

struct RuleFileParser {
    let file: String
    var errors: [RuleFileError] = []
    var refineryEnvironment = "__default__"

    init(file: String) { self.file = file }

    mutating func error(_ node: Node?, policy: String? = nil, _ message: String) {
        let mark = node?.mark
        errors.append(RuleFileError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, policy: policy, message: message))
    }

    // MARK: Document and section

    mutating func parseDocument(_ text: String) -> RuleConfiguration? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let yamlError as YamlError {
            errors.append(yamlSyntaxError(yamlError))
            return nil
        } catch {
            errors.append(RuleFileError(file: file, line: 1, column: 1, policy: nil, message: "YAML syntax: \(error)"))
            return nil
        }
        guard let root, let mapping = root.mapping else {
            error(root, "expected a mapping with `policies:` (or a collector configuration with processors.tail_sampling)")
            return nil
        }
        if mapping["policies"] != nil { return parseSection(root) }
        if mapping["RulesVersion"] != nil || mapping["Samplers"] != nil { return parseRefinery(root, environment: refineryEnvironment) }
        guard let processors = mapping["processors"] else {
            error(root, "no `policies:` and no `processors:` section; start the file with `policies:` or give a collector configuration")
            return nil
        }
        guard let processorMap = processors.mapping else {
            error(processors, "`processors:` must be a mapping")
            return nil
        }
        let candidates = processorMap.compactMap { key, value -> (String, Node, Node)? in
            guard let name = key.string, name == "tail_sampling" || name.hasPrefix("tail_sampling/") else { return nil }
            return (name, key, value)
        }
        guard let first = candidates.first else {
            error(processors, "the collector configuration has no tail_sampling processor; add processors.tail_sampling with policies")
            return nil
        }
        if candidates.count > 1 {
            error(candidates[1].1, "several tail_sampling processors (\(candidates.map(\.0).joined(separator: ", "))); keep one per rule file")
            return nil
        }
        return parseSection(first.2)
    }

    private func yamlSyntaxError(_ error: YamlError) -> RuleFileError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return RuleFileError(file: file, line: mark.line, column: mark.column, policy: nil, message: "YAML syntax: \(problem)")
        case .composer(_, let problem, let mark, _):
            return RuleFileError(file: file, line: mark.line, column: mark.column, policy: nil, message: "YAML syntax: \(problem)")
        default:
            return RuleFileError(file: file, line: 1, column: 1, policy: nil, message: "YAML: \(error)")
        }
    }

    static let sectionKeys = [
        "policies", "decision_wait", "decision_wait_after_root_received", "num_traces", "expected_new_traces_per_sec",
        "decision_cache", "sample_on_first_match", "drop_pending_traces_on_shutdown", "block_on_overflow",
        "max_spans_per_trace", "redaction", "dry_run",
    ]

    mutating func parseSection(_ node: Node) -> RuleConfiguration? {
        guard let mapping = node.mapping else {
            error(node, "tail_sampling must be a mapping with `policies:`")
            return nil
        }
        var settings = SamplingSettings()
        var policies: [PolicySpec] = []
        var redaction: [RedactionRule] = []
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? ""
            switch key {
            case "policies":
                guard let sequence = value.sequence else {
                    error(value, "`policies` must be a list of policies")
                    continue
                }
                for item in sequence {
                    if let policy = parsePolicy(item, path: nil) { policies.append(policy) }
                }
                checkUniqueNames(policies, parent: nil)
            case "decision_wait":
                if let duration = duration(value, key: key) { settings.decisionWait = duration }
            case "decision_wait_after_root_received":
                if let duration = duration(value, key: key) { settings.decisionWaitAfterRootReceived = duration }
            case "num_traces":
                // Consumption resumes below 80% of it: under 10, that is never.
                if let n = integer(value, key: key, policy: nil, minimum: 10) { settings.numTraces = Int(n) }
            case "max_spans_per_trace":
                if let n = integer(value, key: key, policy: nil, minimum: 0) { settings.maxSpansPerTrace = Int(n) }
            case "dry_run":
                if let b = boolean(value, key: key, policy: nil) { settings.dryRun = b }
            case "sample_on_first_match":
                if let b = boolean(value, key: key, policy: nil) { settings.sampleOnFirstMatch = b }
            case "drop_pending_traces_on_shutdown":
                if let b = boolean(value, key: key, policy: nil) { settings.dropPendingTracesOnShutdown = b }
            case "redaction":
                redaction = parseRedaction(value)
            case "expected_new_traces_per_sec", "block_on_overflow":
                break  // sizing hints and overflow behaviour of the collector; tailgate pauses Kafka instead
            case "decision_cache":
                guard let cache = value.mapping else {
                    error(value, "`decision_cache` must be a mapping (sampled_cache_size, non_sampled_cache_size)")
                    continue
                }
                for (cacheKey, cacheValue) in cache {
                    switch cacheKey.string ?? "" {
                    case "sampled_cache_size":
                        if let n = integer(cacheValue, key: "sampled_cache_size", policy: nil, minimum: 0) { settings.sampledCacheSize = Int(n) }
                    case "non_sampled_cache_size":
                        if let n = integer(cacheValue, key: "non_sampled_cache_size", policy: nil, minimum: 0) { settings.nonSampledCacheSize = Int(n) }
                    default:
                        unknownKey(cacheKey, policy: nil, allowed: ["sampled_cache_size", "non_sampled_cache_size"])
                    }
                }
            default:
                unknownKey(keyNode, policy: nil, allowed: Self.sectionKeys)
            }
        }
        if settings.decisionWait <= .zero {
            error(mapping["decision_wait"], "decision_wait must be greater than zero, e.g. 10s")
        }
        if policies.isEmpty && errors.isEmpty {
            error(mapping["policies"] ?? node, "`policies` is empty: with no policy every trace is dropped; add at least one")
        }
        return RuleConfiguration(settings: settings, policies: policies, redaction: redaction)
    }

    /// `redaction:` — a list of `{action: delete|hash|mask, keys: [globs], values: [regexes], replacement}`.
    mutating func parseRedaction(_ node: Node) -> [RedactionRule] {
        guard let sequence = node.sequence else {
            error(node, "`redaction` must be a list of rules, e.g. [{action: delete, keys: [http.request.header.authorization]}]")
            return []
        }
        var rules: [RedactionRule] = []
        for (index, item) in sequence.enumerated() {
            let label = "redaction[\(index)]"
            guard let mapping = item.mapping else {
                error(item, policy: label, "a redaction rule is a mapping with `action` and `keys` and/or `values`")
                continue
            }
            var rule = RedactionRule(action: .delete)
            var valid = true
            for (keyNode, value) in mapping {
                switch keyNode.string ?? "" {
                case "action":
                    guard let text = value.string, let action = RedactionAction(rawValue: text) else {
                        error(value, policy: label, "action \"\(value.string ?? "")\" is not one of \(RedactionAction.allCases.map(\.rawValue).joined(separator: ", "))\(suggestion(value.string ?? "", RedactionAction.allCases.map(\.rawValue)))")
                        valid = false
                        continue
                    }
                    rule.action = action
                case "keys":
                    rule.keys = stringList(value, key: "keys", config: nil, policy: label) ?? []
                case "values":
                    rule.values = stringList(value, key: "values", config: nil, policy: label) ?? []
                    for pattern in rule.values where (try? Regex(pattern)) == nil {
                        error(value, policy: label, "\"\(pattern)\" is not a valid regular expression")
                        valid = false
                    }
                case "replacement":
                    guard let text = value.string else {
                        error(value, policy: label, "replacement must be a string")
                        continue
                    }
                    rule.replacement = text
                default:
                    unknownKey(keyNode, policy: label, allowed: ["action", "keys", "values", "replacement"])
                }
            }
            if mapping["action"] == nil {
                error(item, policy: label, "missing `action` (delete, hash or mask)")
                valid = false
            }
            if rule.action == .mask && rule.values.isEmpty {
                error(item, policy: label, "mask needs `values`: regular expressions of what to mask, e.g. ['[0-9]{13,16}']")
                valid = false
            }
            if rule.keys.isEmpty && rule.values.isEmpty {
                error(item, policy: label, "give `keys` (attribute-key globs) or `values` (patterns); a rule for every attribute is surely a mistake")
                valid = false
            }
            if valid { rules.append(rule) }
        }
        return rules
    }

    // MARK: Policies

    mutating func parsePolicy(_ node: Node, path: String?) -> PolicySpec? {
        guard let mapping = node.mapping else {
            error(node, policy: path, "a policy must be a mapping with `name` and `type`")
            return nil
        }
        guard let nameNode = mapping["name"] else {
            error(node, policy: path, "policy without `name`; every policy needs a unique name")
            return nil
        }
        guard let name = nameNode.string, !name.trimmingSpaces.isEmpty else {
            error(nameNode, policy: path, "empty policy name; give it a unique name")
            return nil
        }
        let fullName = path.map { "\($0)/\(name)" } ?? name
        guard let typeNode = mapping["type"], let type = typeNode.string else {
            error(node, policy: fullName, "missing `type`; use one of \(RuleFile.policyTypes.joined(separator: ", "))")
            return nil
        }
        if type == "ottl_condition" {
            error(typeNode, policy: fullName, "ottl_condition is not supported by tailgate; express it with string_attribute, numeric_attribute, boolean_attribute, status_code or and/not/drop")
            return nil
        }
        guard RuleFile.policyTypes.contains(type) else {
            error(typeNode, policy: fullName, "unknown type \"\(type)\"\(suggestion(type, RuleFile.policyTypes)); use one of \(RuleFile.policyTypes.joined(separator: ", "))")
            return nil
        }
        for (key, _) in mapping {
            let text = key.string ?? ""
            if text == "name" || text == "type" || RuleFile.policyTypes.contains(text) || text == "ottl_condition" { continue }
            unknownKey(key, policy: fullName, allowed: ["name", "type", type])
        }
        let config = mapping[Node(type)]
        let line = node.mark?.line ?? 0
        guard let kind = parseKind(type, config: config, policyNode: node, name: fullName) else { return nil }
        return PolicySpec(name: name, line: line, kind: kind)
    }

    mutating func parseKind(_ type: String, config: Node?, policyNode: Node, name: String) -> PolicyKind? {
        if type == "always_sample" { return .alwaysSample }
        if type == "trace_flags" { return .traceFlags }
        guard let config, let map = config.mapping else {
            error(config ?? policyNode, policy: name, "type \(type) needs a `\(type):` mapping with its settings")
            return nil
        }
        func allow(_ keys: [String]) {
            for (key, _) in map where !keys.contains(key.string ?? "") { unknownKey(key, policy: name, allowed: keys) }
        }
        switch type {
        case "latency":
            allow(["threshold_ms", "upper_threshold_ms"])
            let threshold = integer(map["threshold_ms"], key: "threshold_ms", policy: name, minimum: 0) ?? 0
            let upper = integer(map["upper_threshold_ms"], key: "upper_threshold_ms", policy: name, minimum: 0) ?? 0
            if map["threshold_ms"] == nil && map["upper_threshold_ms"] == nil {
                error(config, policy: name, "latency needs threshold_ms (and optionally upper_threshold_ms)")
            }
            if upper > 0 && threshold >= upper {
                error(map["upper_threshold_ms"], policy: name, "threshold_ms (\(threshold)) must be below upper_threshold_ms (\(upper))")
            }
            return .latency(thresholdMs: threshold, upperThresholdMs: upper)

        case "numeric_attribute":
            allow(["key", "min_value", "max_value", "invert_match"])
            let key = requiredString(map, "key", config: config, policy: name)
            // As in the collector, an explicit 0 is "not set": `min_value: 0` puts no lower bound
            // (negative values match too), `max_value: 0` no upper bound.
            let min = integer(map["min_value"], key: "min_value", policy: name, minimum: .min).flatMap { $0 == 0 ? nil : $0 }
            let max = integer(map["max_value"], key: "max_value", policy: name, minimum: .min).flatMap { $0 == 0 ? nil : $0 }
            if min == nil && max == nil {
                error(config, policy: name, "numeric_attribute needs a non-zero min_value and/or max_value (0 means \"not set\", as in the collector)")
            }
            if let min, let max, min > max {
                error(map["min_value"], policy: name, "min_value (\(min)) is greater than max_value (\(max)); swap them")
            }
            let invert = boolean(map["invert_match"], key: "invert_match", policy: name) ?? false
            guard let key else { return nil }
            return .numericAttribute(key: key, min: min ?? .min, max: max ?? .max, invertMatch: invert)

        case "probabilistic":
            allow(["sampling_percentage", "hash_salt", "mode", "sampling_precision"])
            guard let node = map["sampling_percentage"] else {
                error(config, policy: name, "probabilistic needs sampling_percentage (0–100)")
                return nil
            }
            guard let percentage = number(node), percentage >= 0, percentage <= 100 else {
                error(node, policy: name, "sampling_percentage must be a number from 0 to 100")
                return nil
            }
            let salt = map["hash_salt"].flatMap(\.string) ?? ""
            var mode = ProbabilisticMode.hashSeed
            if let node = map["mode"] {
                guard let parsed = node.string.flatMap(ProbabilisticMode.init(rawValue:)) else {
                    error(node, policy: name, "mode must be hash_seed, proportional or equalizing, got \"\(node.string ?? "")\"")
                    return nil
                }
                mode = parsed
            }
            let precision = integer(map["sampling_precision"], key: "sampling_precision", policy: name, minimum: 1) ?? 4
            guard precision <= 14 else {
                error(map["sampling_precision"], policy: name, "sampling_precision is 1 to 14 hex digits, got \(precision)")
                return nil
            }
            if mode != .hashSeed && !salt.isEmpty {
                error(map["hash_salt"], policy: name, "hash_salt applies to mode hash_seed only; \(mode.rawValue) uses the trace's randomness (rv or trace id)")
            }
            return .probabilistic(samplingPercentage: percentage, hashSalt: salt, mode: mode, precision: Int(precision))

        case "ema_dynamic", "ema_throughput", "windowed_throughput", "byte_budget":
            return parseDynamic(type, map: map, config: config, name: name)

        case "status_code":
            allow(["status_codes"])
            guard let list = map["status_codes"]?.sequence, list.count > 0 else {
                error(map["status_codes"] ?? config, policy: name, "status_code needs status_codes: a list of OK, ERROR, UNSET")
                return nil
            }
            var codes: [StatusCode] = []
            for item in list {
                switch item.string ?? "" {
                case "OK": codes.append(.ok)
                case "ERROR": codes.append(.error)
                case "UNSET": codes.append(.unset)
                default: error(item, policy: name, "unknown status code \"\(item.string ?? "")\"; use OK, ERROR or UNSET")
                }
            }
            return .statusCode(codes)

        case "string_attribute":
            allow(["key", "values", "enabled_regex_matching", "cache_max_size", "invert_match"])
            let key = requiredString(map, "key", config: config, policy: name)
            let values = stringList(map["values"], key: "values", config: config, policy: name)
            let regex = boolean(map["enabled_regex_matching"], key: "enabled_regex_matching", policy: name) ?? false
            let cache = integer(map["cache_max_size"], key: "cache_max_size", policy: name, minimum: 0) ?? 0
            let invert = boolean(map["invert_match"], key: "invert_match", policy: name) ?? false
            if regex, let values, let valueNodes = map["values"]?.sequence {
                for (value, node) in zip(values, valueNodes) {
                    do { _ = try Regex(value) } catch {
                        self.error(node, policy: name, "invalid regular expression \"\(value)\": \(error)")
                    }
                }
            }
            guard let key, let values else { return nil }
            return .stringAttribute(key: key, values: values, regex: regex, cacheMaxSize: Int(cache), invertMatch: invert)

        case "rate_limiting":
            allow(["spans_per_second"])
            guard let rate = integer(map["spans_per_second"], key: "spans_per_second", policy: name, minimum: 1) else {
                if map["spans_per_second"] == nil { error(config, policy: name, "rate_limiting needs spans_per_second (> 0)") }
                return nil
            }
            return .rateLimiting(spansPerSecond: rate)

        case "bytes_limiting":
            allow(["bytes_per_second", "burst_capacity"])
            guard let rate = integer(map["bytes_per_second"], key: "bytes_per_second", policy: name, minimum: 1) else {
                if map["bytes_per_second"] == nil { error(config, policy: name, "bytes_limiting needs bytes_per_second (> 0)") }
                return nil
            }
            let burst = integer(map["burst_capacity"], key: "burst_capacity", policy: name, minimum: 0) ?? 0
            return .bytesLimiting(bytesPerSecond: rate, burstCapacity: burst)

        case "span_count":
            allow(["min_spans", "max_spans"])
            let min = integer(map["min_spans"], key: "min_spans", policy: name, minimum: 0) ?? 0
            let max = integer(map["max_spans"], key: "max_spans", policy: name, minimum: 0) ?? 0
            if map["min_spans"] == nil && map["max_spans"] == nil {
                error(config, policy: name, "span_count needs min_spans and/or max_spans")
            }
            if max > 0 && min > max {
                error(map["min_spans"], policy: name, "min_spans (\(min)) is greater than max_spans (\(max)); swap them")
            }
            return .spanCount(min: min, max: max)

        case "trace_state":
            allow(["key", "values"])
            let key = requiredString(map, "key", config: config, policy: name)
            let values = stringList(map["values"], key: "values", config: config, policy: name)
            guard let key, let values else { return nil }
            return .traceState(key: key, values: values)

        case "boolean_attribute":
            allow(["key", "value", "invert_match"])
            let key = requiredString(map, "key", config: config, policy: name)
            guard let valueNode = map["value"] else {
                error(config, policy: name, "boolean_attribute needs value: true or false")
                return nil
            }
            let value = boolean(valueNode, key: "value", policy: name)
            let invert = boolean(map["invert_match"], key: "invert_match", policy: name) ?? false
            guard let key, let value else { return nil }
            return .booleanAttribute(key: key, value: value, invertMatch: invert)

        case "and", "drop":
            let listKey = type == "and" ? "and_sub_policy" : "drop_sub_policy"
            allow([listKey])
            guard let list = map[Node(listKey)]?.sequence, list.count > 0 else {
                error(map[Node(listKey)] ?? config, policy: name, "\(type) needs \(listKey): a non-empty list of policies")
                return nil
            }
            let subs = list.compactMap { parsePolicy($0, path: name) }
            checkUniqueNames(subs, parent: name)
            guard subs.count == list.count else { return nil }
            return type == "and" ? .and(subs) : .drop(subs)

        case "not":
            allow(["not_sub_policy"])
            guard let sub = map["not_sub_policy"] else {
                error(config, policy: name, "not needs not_sub_policy: one policy (a mapping with name and type)")
                return nil
            }
            guard let parsed = parsePolicy(sub, path: name) else { return nil }
            return .not(parsed)

        case "composite":
            allow(["max_total_spans_per_second", "policy_order", "composite_sub_policy", "rate_allocation"])
            let maxTotal = integer(map["max_total_spans_per_second"], key: "max_total_spans_per_second", policy: name, minimum: 1)
            if map["max_total_spans_per_second"] == nil {
                error(config, policy: name, "composite needs max_total_spans_per_second (> 0)")
            }
            guard let list = map["composite_sub_policy"]?.sequence, list.count > 0 else {
                error(map["composite_sub_policy"] ?? config, policy: name, "composite needs composite_sub_policy: a non-empty list of policies")
                return nil
            }
            let subs = list.compactMap { parsePolicy($0, path: name) }
            checkUniqueNames(subs, parent: name)
            let subNames = Set(subs.map(\.name))
            let order = stringList(map["policy_order"], key: "policy_order", config: nil, policy: name) ?? []
            if let orderNodes = map["policy_order"]?.sequence {
                for (entry, node) in zip(order, orderNodes) where !subNames.contains(entry) {
                    error(node, policy: name, "policy_order names \"\(entry)\", which is not in composite_sub_policy")
                }
            }
            var allocation: [RateAllocation] = []
            var total = 0.0
            for item in map["rate_allocation"]?.sequence ?? [] {
                guard let entry = item.mapping, let policy = entry["policy"]?.string else {
                    error(item, policy: name, "rate_allocation entries are {policy: NAME, percent: N}")
                    continue
                }
                if !subNames.contains(policy) {
                    error(entry["policy"], policy: name, "rate_allocation names \"\(policy)\", which is not in composite_sub_policy")
                }
                let percent = entry["percent"].flatMap(number) ?? 0
                if percent < 0 || percent > 100 { error(entry["percent"], policy: name, "percent must be from 0 to 100") }
                total += percent
                allocation.append(RateAllocation(policy: policy, percent: percent))
            }
            if total > 100 {
                error(map["rate_allocation"], policy: name, "rate_allocation percentages add up to \(total) (over 100)")
            }
            guard let maxTotal, subs.count == list.count else { return nil }
            return .composite(maxTotalSpansPerSecond: maxTotal, policyOrder: order, subPolicies: subs, rateAllocation: allocation)

        default:
            return nil
        }
    }

    mutating func checkUniqueNames(_ policies: [PolicySpec], parent: String?) {
        var seen = Set<String>()
        for policy in policies where !seen.insert(policy.name).inserted {
            errors.append(RuleFileError(
                file: file, line: policy.line, column: 1, policy: parent.map { "\($0)/\(policy.name)" } ?? policy.name,
                message: "duplicate policy name; names must be unique (metrics and logs use them)"))
        }
    }

    /// tailgate's adaptive samplers, with Refinery's settings and defaults.
    mutating func parseDynamic(_ type: String, map: Node.Mapping, config: Node, name: String) -> PolicyKind? {
        let algorithm = DynamicSamplerConfiguration.Algorithm(rawValue: type)!
        var allowed = ["key_fields", "use_trace_length", "max_keys"]
        switch algorithm {
        case .emaDynamic: allowed += ["goal_sample_rate", "adjustment_interval", "weight", "age_out_value", "burst_multiple", "burst_detection_delay"]
        case .emaThroughput: allowed += ["goal_throughput_per_sec", "initial_sample_rate", "adjustment_interval", "weight", "age_out_value", "burst_multiple", "burst_detection_delay"]
        case .windowedThroughput: allowed += ["goal_throughput_per_sec", "lookback", "update_interval"]
        case .byteBudget: allowed += ["goal_bytes_per_sec", "goal_bytes_per_day", "floor_bytes_per_sec", "initial_sample_rate", "adjustment_interval", "weight", "age_out_value"]
        }
        for (key, _) in map where !allowed.contains(key.string ?? "") { unknownKey(key, policy: name, allowed: allowed) }
        guard let fields = stringList(map["key_fields"], key: "key_fields", config: config, policy: name) else { return nil }
        if fields.isEmpty || fields.contains(where: { $0.isEmpty || $0 == "root." }) {
            error(map["key_fields"] ?? config, policy: name, "key_fields must list attribute names (or name, the span name; a root. prefix reads the root span only), e.g. [service.name, http.route]")
            return nil
        }
        var result = DynamicSamplerConfiguration(algorithm: algorithm, keyFields: fields)
        result.useTraceLength = boolean(map["use_trace_length"], key: "use_trace_length", policy: name) ?? false
        if let keys = integer(map["max_keys"], key: "max_keys", policy: name, minimum: 1) { result.maxKeys = Int(keys) }
        if let rate = integer(map["goal_sample_rate"], key: "goal_sample_rate", policy: name, minimum: 1) { result.goalSampleRate = Int(rate) }
        if let rate = integer(map["initial_sample_rate"], key: "initial_sample_rate", policy: name, minimum: 1) { result.initialSampleRate = Int(rate) }
        if algorithm == .byteBudget {
            let perSecond = map["goal_bytes_per_sec"], perDay = map["goal_bytes_per_day"]
            if perSecond != nil && perDay != nil {
                error(perDay!, policy: name, "give goal_bytes_per_sec or goal_bytes_per_day, not both")
                return nil
            }
            guard let node = perSecond ?? perDay else {
                error(config, policy: name, "byte_budget needs goal_bytes_per_day (e.g. 50GB) or goal_bytes_per_sec (e.g. 600KB): kept bytes across the deployment, every policy's keeps included")
                return nil
            }
            let key = perSecond != nil ? "goal_bytes_per_sec" : "goal_bytes_per_day"
            guard let goal = byteSize(node, key: key, policy: name), goal > 0 else {
                if byteSize(node, key: key, policy: nil) == 0 { error(node, policy: name, "\(key) must be above 0") }
                return nil
            }
            result.goalBytesPerSecond = perSecond != nil ? goal : goal / 86_400
            if let node = map["floor_bytes_per_sec"] {
                guard let floor = byteSize(node, key: "floor_bytes_per_sec", policy: name) else { return nil }
                guard floor <= result.goalBytesPerSecond else {
                    error(node, policy: name, "floor_bytes_per_sec (\(Int(floor))) must not exceed the goal (\(Int(result.goalBytesPerSecond)) bytes per second)")
                    return nil
                }
                result.floorBytesPerSecond = floor
            }
        } else if algorithm != .emaDynamic {
            guard let node = map["goal_throughput_per_sec"] else {
                error(config, policy: name, "\(type) needs goal_throughput_per_sec: kept spans per second across the deployment")
                return nil
            }
            guard let goal = number(node), goal > 0 else {
                error(node, policy: name, "goal_throughput_per_sec must be a number above 0")
                return nil
            }
            result.goalThroughputPerSecond = goal
        }
        func nanoseconds(_ key: String) -> UInt64? {
            guard let node = map[Node(key)] else { return nil }
            guard let duration = duration(node, key: key) else { return nil }
            let value = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
            guard value > 0 else {
                error(node, policy: name, "\(key) must be above 0")
                return nil
            }
            return UInt64(value)
        }
        if let interval = nanoseconds("adjustment_interval") { result.adjustmentInterval = interval }
        if let lookback = nanoseconds("lookback") { result.lookback = lookback }
        if let update = nanoseconds("update_interval") { result.updateInterval = update }
        if result.lookback < result.updateInterval {
            error(map["lookback"] ?? config, policy: name, "lookback must be at least update_interval")
        }
        if let node = map["weight"] {
            guard let weight = number(node), weight > 0, weight < 1 else {
                error(node, policy: name, "weight must be between 0 and 1 (exclusive), e.g. 0.5")
                return nil
            }
            result.weight = weight
        }
        if let node = map["age_out_value"] {
            guard let value = number(node), value >= 0 else {
                error(node, policy: name, "age_out_value must be a number, at least 0")
                return nil
            }
            result.ageOutValue = value
        }
        if let node = map["burst_multiple"] {
            guard let value = number(node) else {
                error(node, policy: name, "burst_multiple must be a number (negative turns burst detection off)")
                return nil
            }
            result.burstMultiple = value
        }
        if let delay = integer(map["burst_detection_delay"], key: "burst_detection_delay", policy: name, minimum: 0) {
            result.burstDetectionDelay = Int(delay)
        }
        return .dynamic(result)
    }

    // MARK: Values

    mutating func unknownKey(_ key: Node, policy: String?, allowed: [String]) {
        let text = key.string ?? "?"
        error(key, policy: policy, "unknown key \"\(text)\"\(suggestion(text, allowed)); allowed here: \(allowed.joined(separator: ", "))")
    }

    mutating func duration(_ node: Node, key: String) -> Duration? {
        guard let text = node.string, let duration = GoDuration.parse(text) else {
            error(node, "\(key): \"\(node.string ?? "")\" is not a duration; write e.g. 500ms, 10s, 1m")
            return nil
        }
        return duration
    }

    mutating func integer(_ node: Node?, key: String, policy: String?, minimum: Int64) -> Int64? {
        guard let node else { return nil }
        guard let text = node.string, let value = Int64(text.replacingUnderscores) else {
            error(node, policy: policy, "\(key) must be a whole number, got \"\(node.string ?? "a list or mapping")\"")
            return nil
        }
        guard value >= minimum else {
            error(node, policy: policy, "\(key) must be at least \(minimum), got \(value)")
            return nil
        }
        return value
    }

    func number(_ node: Node) -> Double? {
        node.string.flatMap { Double($0.replacingUnderscores) }
    }

    /// Bytes: a number, or a size with its unit (`600KB`, `50GB`, `1.5GiB`). `policy` nil: no error
    /// reported (a second look at a value already reported).
    mutating func byteSize(_ node: Node, key: String, policy: String?) -> Double? {
        guard let text = node.string else {
            if policy != nil { error(node, policy: policy, "\(key) must be a size, e.g. 600KB or 50GB") }
            return nil
        }
        if let plain = Double(text.replacingUnderscores), plain >= 0 { return plain }
        do {
            return Double(try parseByteSize(text, option: key))
        } catch {
            if policy != nil { self.error(node, policy: policy, "\(key): \"\(text)\" is not a size; write e.g. 600KB, 50GB or 1.5GiB") }
            return nil
        }
    }

    mutating func boolean(_ node: Node?, key: String, policy: String?) -> Bool? {
        guard let node else { return nil }
        switch node.string?.lowercased() {
        case "true": return true
        case "false": return false
        default:
            error(node, policy: policy, "\(key) must be true or false, got \"\(node.string ?? "a list or mapping")\"")
            return nil
        }
    }

    mutating func requiredString(_ map: Node.Mapping, _ key: String, config: Node, policy: String) -> String? {
        guard let node = map[Node(key)] else {
            error(config, policy: policy, "missing \(key)")
            return nil
        }
        guard let text = node.string, !text.isEmpty else {
            error(node, policy: policy, "\(key) must be a non-empty string")
            return nil
        }
        return text
    }

    mutating func stringList(_ node: Node?, key: String, config: Node?, policy: String) -> [String]? {
        guard let node else {
            if let config { error(config, policy: policy, "missing \(key): a list of strings") }
            return nil
        }
        guard let sequence = node.sequence else {
            error(node, policy: policy, "\(key) must be a list, e.g. [a, b]")
            return nil
        }
        var values: [String] = []
        for item in sequence {
            guard let text = item.string else {
                error(item, policy: policy, "\(key) entries must be strings")
                continue
            }
            values.append(text)
        }
        return values
    }

    func suggestion(_ text: String, _ candidates: [String]) -> String {
        let best = candidates.min { editDistance(text, $0) < editDistance(text, $1) }
        guard let best, editDistance(text, best) <= max(2, text.count / 4) else { return "" }
        return " (did you mean \"\(best)\"?)"
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    var previous = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...max(b.count, 1) where !b.isEmpty {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return a.isEmpty ? b.count : previous[b.count]
}

extension String {
    var trimmingSpaces: String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }
    /// YAML 1.1 allows `100_000`.
    var replacingUnderscores: String { filter { $0 != "_" } }
}
