public import Sampling

/// tailgate's default rules — every error, every slow trace, a 5% baseline, no health checks — as
/// `pipelines/default.yaml` holds them (a test keeps the two identical). The demo runs with them.
public enum DefaultRules {
    public static let text = """
        # tailgate's default rules, in the OpenTelemetry Collector's tail_sampling syntax.
        # Keep every trace with an error, every slow trace, and a 5% baseline; never keep health checks.
        decision_wait: 10s
        decision_wait_after_root_received: 2s
        decision_cache:
          sampled_cache_size: 100000
          non_sampled_cache_size: 1000000
        policies:
          - name: errors
            type: status_code
            status_code:
              status_codes: [ERROR]
          - name: slow
            type: latency
            latency:
              threshold_ms: 1000
          - name: baseline
            type: probabilistic
            probabilistic:
              sampling_percentage: 5
          - name: drop-health-checks
            type: drop
            drop:
              drop_sub_policy:
                - name: health-routes
                  type: string_attribute
                  string_attribute:
                    key: http.route
                    values: ["^/(healthz|readyz|livez|health|ready|metrics)$"]
                    enabled_regex_matching: true

        """

    /// The rules, parsed.
    public static func ruleSet() throws -> RuleSet {
        RuleSet(configuration: try RuleFile.parse(text, file: "default.yaml"), hash: "default")
    }
}
