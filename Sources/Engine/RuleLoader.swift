import Foundation
import OTLP
public import Sampling

/// Reads rule files from disk (the Sampling room parses text; I/O stays here).
public enum RuleLoader {
    /// Loads and compiles `path`; `previous` lends attribute ids and limiter state (hot reload).
    public static func load(_ path: String, previous: RuleSet? = nil, requiredKeys: [String] = []) throws(RuleFileErrors) -> RuleSet {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw RuleFileErrors(errors: [RuleFileError(file: path, line: 0, column: 0, policy: nil, message: "cannot read the rule file: \(error.localizedDescription)")])
        }
        let text = String(decoding: data, as: UTF8.self)
        let configuration = try RuleFile.parse(text, file: path)
        let key = Array((ProcessInfo.processInfo.environment["TAILGATE_REDACTION_KEY"] ?? "").utf8)
        if configuration.redactionHashes && key.count < 16 {
            throw RuleFileErrors(errors: [RuleFileError(
                file: path, line: 0, column: 0, policy: "redaction",
                message: "a `hash` rule needs a secret key of at least 16 bytes in TAILGATE_REDACTION_KEY (equal values hash alike only under one key; keep it in a Secret)")])
        }
        return RuleSet(configuration: configuration, previous: previous, hash: contentHash(data), requiredKeys: requiredKeys, redactionKey: key,
            source: String(decoding: data, as: UTF8.self))
    }

    /// A short, stable hash of the file's bytes (FNV-1a 64, hex).
    static func contentHash(_ data: Data) -> String {
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in data {
            hash ^= UInt64(byte)
            hash &*= 1_099_511_628_211
        }
        return String(HexDigits.string(hash).prefix(12))
    }
}
