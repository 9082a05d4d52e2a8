/// A value on the command line or in a config file that does not parse; says which and how to fix it.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Parses durations as the collector and Prometheus write them: `500ms`, `2s`, `5m`, `1h`, `1m30s`.
public func parseDuration(_ text: String, option: String = "duration") throws(ConfigurationError) -> Duration {
    let units: [(String, Duration)] = [
        ("ms", .milliseconds(1)), ("us", .microseconds(1)), ("µs", .microseconds(1)), ("ns", .nanoseconds(1)),
        ("h", .seconds(3600)), ("m", .seconds(60)), ("s", .seconds(1)),
    ]
    var rest = Substring(text.trimmingSpaces())
    var total = Duration.zero
    guard !rest.isEmpty else { throw ConfigurationError("\(option): empty duration; write e.g. 500ms, 2s, 5m") }
    while !rest.isEmpty {
        let number = rest.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(number) else {
            throw ConfigurationError("\(option): '\(text)' is not a duration; write e.g. 500ms, 2s, 5m")
        }
        rest = rest.dropFirst(number.count)
        guard let (suffix, unit) = units.first(where: { rest.hasPrefix($0.0) }) else {
            throw ConfigurationError("\(option): '\(text)' needs a unit (ms, s, m, h); write e.g. \(number)s")
        }
        rest = rest.dropFirst(suffix.count)
        total += unit * value
    }
    return total
}

/// Parses byte sizes: `512MiB`, `4GiB`, `100MB`, `65536`.
public func parseByteSize(_ text: String, option: String = "size") throws(ConfigurationError) -> Int {
    let units: [(String, Double)] = [
        ("KiB", 1024), ("MiB", 1024 * 1024), ("GiB", 1024 * 1024 * 1024), ("TiB", 1024 * 1024 * 1024 * 1024),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]
    let trimmed = text.trimmingSpaces()
    let number = trimmed.prefix { $0.isNumber || $0 == "." }
    let suffix = String(trimmed.dropFirst(number.count)).trimmingSpaces()
    guard let value = Double(number), value >= 0 else {
        throw ConfigurationError("\(option): '\(text)' is not a size; write e.g. 512MiB or 4GiB")
    }
    if suffix.isEmpty { return Int(value) }
    guard let unit = units.first(where: { $0.0 == suffix }) else {
        throw ConfigurationError("\(option): unknown unit '\(suffix)' in '\(text)'; use KiB, MiB, GiB, KB, MB, GB")
    }
    return Int(value * unit.1)
}

extension String {
    func trimmingSpaces() -> String {
        var slice = Substring(self)
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return String(slice)
    }
}
