public import Logging

extension EngineConfiguration {
    /// The configuration as logged when the engine starts: what an operator needs to see what is
    /// running, with every secret masked — Kafka properties by name (`sasl.password`, tokens, key
    /// material), OTLP header values (they carry credentials), userinfo in the endpoint URL, and the
    /// admin token (only whether one is set).
    public var loggableMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "brokers": "\(brokers)",
            "topics": "\(topics.joined(separator: ","))",
            "group": "\(group)",
            "encoding": "\(encoding.rawValue)",
            "rules": "\(rulesPath ?? "(none: keep every trace)")",
            "buffer_limit": "\(bufferLimit.map(String.init) ?? "default (half the memory limit)")",
            "admin_routes": "\(adminToken == nil ? "off" : "on (token set)")",
        ]
        if !kafkaProperties.values.isEmpty {
            metadata["kafka_properties"] = "\(kafkaProperties.redacted.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"
        }
        if let dataDirectory {
            metadata["data"] = "\(dataDirectory)"
            metadata["retention"] = "\(storeOptions.retentionAge.map { "\($0.components.seconds)s" } ?? "none")"
            if let bytes = storeOptions.retentionBytes { metadata["retention_size"] = "\(bytes)" }
        }
        if let outputTopic { metadata["output_topic"] = "\(outputTopic)" }
        if let deadLetterTopic { metadata["dead_letter_topic"] = "\(deadLetterTopic)" }
        if let otlpEndpoint { metadata["otlp_endpoint"] = "\(Self.withoutUserinfo(otlpEndpoint))" }
        if !otlpHeaders.isEmpty { metadata["otlp_headers"] = "\(otlpHeaders.map { "\($0.0)=***" }.joined(separator: ","))" }
        if let httpAddress { metadata["http"] = "\(httpAddress)" }
        return metadata
    }

    /// `scheme://user:pass@host/…` → `scheme://***@host/…`.
    static func withoutUserinfo(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<scheme.upperBound]) + "***" + String(rest[at...])
    }
}
