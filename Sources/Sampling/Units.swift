/// A value on the command line or in a config file that does not parse; says which and how to fix it.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Parses durations as the collector and Prometheus write them: `500ms`, `2s`, `5m`, `1h`, `1m30s`
/// (the rule file's parser, so flags and files agree).
public func parseDuration(_ text: String, option: String = "duration") throws(ConfigurationError) -> Duration {
    guard let duration = GoDuration.parse(text) else {
        throw ConfigurationError("\(option): '\(text)' is not a duration; write e.g. 500ms, 2s, 5m")
    }
    return duration
}

/// Parses byte sizes: `512MiB`, `4GiB`, `100MB`, `65536`.
public func parseByteSize(_ text: String, option: String = "size") throws(ConfigurationError) -> Int {
    let units: [(String, Double)] = [
        ("KiB", 1024), ("MiB", 1024 * 1024), ("GiB", 1024 * 1024 * 1024), ("TiB", 1024 * 1024 * 1024 * 1024),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]
    let trimmed = text.trimmingSpaces
    let number = trimmed.prefix { $0.isNumber || $0 == "." }
    let suffix = String(trimmed.dropFirst(number.count)).trimmingSpaces
    guard let value = Double(number), value >= 0 else {
        throw ConfigurationError("\(option): '\(text)' is not a size; write e.g. 512MiB or 4GiB")
    }
    if suffix.isEmpty { return Int(value) }
    guard let unit = units.first(where: { $0.0 == suffix }) else {
        throw ConfigurationError("\(option): unknown unit '\(suffix)' in '\(text)'; use KiB, MiB, GiB, KB, MB, GB")
    }
    return Int(value * unit.1)
}

extension Duration {
    /// Seconds as a `Double` (for Dispatch timeouts and rates).
    public var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
