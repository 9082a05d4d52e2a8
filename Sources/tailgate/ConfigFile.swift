import Engine
import Foundation
import Sampling
import Yams

/// `tailgate run --config FILE`: every run flag, settable in a YAML file whose keys are the flag
/// names (flags given on the command line win):
///
///     brokers: kafka-0.kafka:9092,kafka-1.kafka:9092
///     topic: [otlp_spans]
///     rules: /etc/tailgate/rules/rules.yaml
///     kafka-property: {security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512}
///     exit-on-eof: false
///
/// The file becomes command-line arguments, so it is validated by the same parser, with the same
/// messages, as flags are.
enum ConfigFile {
    /// The arguments `path` stands for, leaving out settings that `commandLine` already gives.
    static func arguments(path: String, commandLine: [String]) throws(ConfigurationError) -> [String] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("--config \(path): cannot read it (\(error.localizedDescription))")
        }
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw ConfigurationError("--config \(path): not valid YAML: \(error)")
        }
        guard let document else { return [] }
        guard let settings = document as? [String: Any] else {
            throw ConfigurationError("--config \(path): expected a mapping of run flags to values, e.g. `brokers: kafka:9092`")
        }
        let given = Set(commandLine.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return argument.dropFirst(2).split(separator: "=", maxSplits: 1).first.map(String.init)
        })
        var arguments: [String] = []
        for key in settings.keys.sorted() {
            guard key != "config" else { throw ConfigurationError("--config \(path): a config file cannot name another (`config:`)") }
            guard !given.contains(key) else { continue }
            switch settings[key] {
            case let flag as Bool:
                if flag { arguments.append("--\(key)") }
            case let list as [Any]:
                for item in list { arguments += ["--\(key)", scalar(item)] }
            case let map as [String: Any]:
                for (name, value) in map.sorted(by: { $0.key < $1.key }) { arguments += ["--\(key)", "\(name)=\(scalar(value))"] }
            case nil, is NSNull:
                continue
            case let value?:
                arguments += ["--\(key)", scalar(value)]
            }
        }
        return arguments
    }

    private static func scalar(_ value: Any) -> String {
        if let bool = value as? Bool { return bool ? "true" : "false" }
        return "\(value)"
    }
}
