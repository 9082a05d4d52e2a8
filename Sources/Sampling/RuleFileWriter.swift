import OTLP

/// Writes a rule configuration as a tailgate rule file (the collector's tail_sampling syntax with
/// tailgate's extensions), which ``RuleFile/parse(_:file:refineryEnvironment:)`` reads back to the
/// same policies: what `tailgate convert` prints for a user to read and own.
public enum RuleFileWriter {
    public static func yaml(_ configuration: RuleConfiguration, header: [String] = []) -> String {
        var out = header.map { "# \($0)\n" }.joined()
        let settings = configuration.settings
        let defaults = SamplingSettings()
        if settings.decisionWait != defaults.decisionWait { out += "decision_wait: \(duration(settings.decisionWait))\n" }
        if settings.decisionWaitAfterRootReceived != defaults.decisionWaitAfterRootReceived {
            out += "decision_wait_after_root_received: \(duration(settings.decisionWaitAfterRootReceived))\n"
        }
        out += "policies:\n"
        for policy in configuration.policies { write(policy, indent: 2, into: &out) }
        return out
    }

    private static func write(_ policy: PolicySpec, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        out += "\(pad)- name: \(quoted(policy.name))\n"
        out += "\(pad)  type: \(policy.kind.typeName)\n"
        let inner = pad + "    "
        func block(_ lines: [String]) {
            out += "\(pad)  \(policy.kind.typeName):\n"
            for line in lines { out += inner + line + "\n" }
        }
        switch policy.kind {
        case .alwaysSample, .traceFlags:
            break
        case .latency(let threshold, let upper):
            block(["threshold_ms: \(threshold)"] + (upper > 0 ? ["upper_threshold_ms: \(upper)"] : []))
        case .numericAttribute(let key, let min, let max, let invert):
            var lines = ["key: \(quoted(key))"]
            if min != .min { lines.append("min_value: \(min)") }
            if max != .max { lines.append("max_value: \(max)") }
            if invert { lines.append("invert_match: true") }
            block(lines)
        case .probabilistic(let percentage, let salt, let mode, let precision):
            var lines = ["sampling_percentage: \(percentage)"]
            if !salt.isEmpty { lines.append("hash_salt: \(quoted(salt))") }
            if mode != .hashSeed { lines.append("mode: \(mode.rawValue)") }
            if precision != 4 { lines.append("sampling_precision: \(precision)") }
            block(lines)
        case .statusCode(let codes):
            block(["status_codes: [\(codes.map { $0 == .error ? "ERROR" : $0 == .ok ? "OK" : "UNSET" }.joined(separator: ", "))]"])
        case .stringAttribute(let key, let values, let regex, let cache, let invert):
            var lines = ["key: \(quoted(key))", "values: [\(values.map(quoted).joined(separator: ", "))]"]
            if regex { lines.append("enabled_regex_matching: true") }
            if cache > 0 { lines.append("cache_max_size: \(cache)") }
            if invert { lines.append("invert_match: true") }
            block(lines)
        case .rateLimiting(let rate):
            block(["spans_per_second: \(rate)"])
        case .bytesLimiting(let rate, let burst):
            block(["bytes_per_second: \(rate)"] + (burst > 0 ? ["burst_capacity: \(burst)"] : []))
        case .spanCount(let min, let max):
            block(["min_spans: \(min)"] + (max > 0 ? ["max_spans: \(max)"] : []))
        case .traceState(let key, let values):
            block(["key: \(quoted(key))", "values: [\(values.map(quoted).joined(separator: ", "))]"])
        case .booleanAttribute(let key, let value, let invert):
            block(["key: \(quoted(key))", "value: \(value)"] + (invert ? ["invert_match: true"] : []))
        case .and(let subs), .drop(let subs):
            out += "\(pad)  \(policy.kind.typeName):\n"
            out += "\(pad)    \(policy.kind.typeName)_sub_policy:\n"
            for sub in subs { write(sub, indent: indent + 6, into: &out) }
        case .not(let sub):
            out += "\(pad)  not:\n"
            out += "\(pad)    not_sub_policy:\n"
            var nested = ""
            write(sub, indent: indent + 6, into: &nested)
            // A single mapping, not a list item.
            out += nested.replacingFirst("- ", with: "  ")
        case .composite(let maxTotal, let order, let subs, let allocation):
            out += "\(pad)  composite:\n"
            out += "\(inner)max_total_spans_per_second: \(maxTotal)\n"
            out += "\(inner)policy_order: [\(order.map(quoted).joined(separator: ", "))]\n"
            out += "\(inner)composite_sub_policy:\n"
            for sub in subs { write(sub, indent: indent + 6, into: &out) }
            if !allocation.isEmpty {
                out += "\(inner)rate_allocation:\n"
                for entry in allocation { out += "\(inner)  - {policy: \(quoted(entry.policy)), percent: \(entry.percent)}\n" }
            }
        case .dynamic(let c):
            var lines = ["key_fields: [\(c.keyFields.map(quoted).joined(separator: ", "))]"]
            if c.useTraceLength { lines.append("use_trace_length: true") }
            if c.maxKeys != 500 { lines.append("max_keys: \(c.maxKeys)") }
            switch c.algorithm {
            case .emaDynamic:
                lines.append("goal_sample_rate: \(c.goalSampleRate)")
            case .emaThroughput:
                lines.append("goal_throughput_per_sec: \(c.goalThroughputPerSecond)")
                lines.append("initial_sample_rate: \(c.initialSampleRate)")
            case .windowedThroughput:
                lines.append("goal_throughput_per_sec: \(c.goalThroughputPerSecond)")
                lines.append("lookback: \(nanos(c.lookback))")
                lines.append("update_interval: \(nanos(c.updateInterval))")
            case .byteBudget:
                lines.append("goal_bytes_per_sec: \(c.goalBytesPerSecond)")
                if c.floorBytesPerSecond > 0 { lines.append("floor_bytes_per_sec: \(c.floorBytesPerSecond)") }
                lines.append("initial_sample_rate: \(c.initialSampleRate)")
            }
            if c.algorithm != .windowedThroughput {
                lines.append("adjustment_interval: \(nanos(c.adjustmentInterval))")
                lines.append("weight: \(c.weight)")
                if let ageOut = c.ageOutValue { lines.append("age_out_value: \(ageOut)") }
            }
            if c.algorithm == .emaDynamic || c.algorithm == .emaThroughput {
                lines.append("burst_multiple: \(c.burstMultiple)")
                lines.append("burst_detection_delay: \(c.burstDetectionDelay)")
            }
            block(lines)
        }
    }

    /// A double-quoted YAML scalar (JSON's escapes, which YAML reads the same).
    static func quoted(_ text: String) -> String { JSONText.quoted(text) }

    static func duration(_ duration: Duration) -> String {
        nanos(UInt64(duration.components.seconds) * 1_000_000_000 + UInt64(duration.components.attoseconds / 1_000_000_000))
    }

    static func nanos(_ value: UInt64) -> String {
        if value % 1_000_000_000 == 0 { return "\(value / 1_000_000_000)s" }
        if value % 1_000_000 == 0 { return "\(value / 1_000_000)ms" }
        return "\(value)ns"
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }

}
