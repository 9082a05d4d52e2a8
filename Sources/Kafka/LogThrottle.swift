public import Logging
import Synchronization

/// Lets through at most one log line per key and interval, and says how many were held back, so a
/// broker outage or a stream of bad messages cannot flood the log.
public final class LogThrottle: Sendable {
    private struct Entry {
        var lastEmitted: ContinuousClock.Instant
        var suppressed: Int
    }

    private let interval: Duration
    private let entries = Mutex<[String: Entry]>([:])

    public init(interval: Duration = .seconds(10)) {
        self.interval = interval
    }

    /// Logs `message` unless a line with the same `key` was logged within the interval.
    public func log(
        _ logger: Logger, level: Logger.Level, key: String, _ message: @autoclosure () -> String,
        metadata: Logger.Metadata? = nil, now: ContinuousClock.Instant = .now
    ) {
        let suppressed: Int? = entries.withLock { entries in
            if let entry = entries[key], now - entry.lastEmitted < interval {
                entries[key]!.suppressed += 1
                return nil
            }
            let held = entries[key]?.suppressed ?? 0
            entries[key] = Entry(lastEmitted: now, suppressed: 0)
            return held
        }
        guard let suppressed else { return }
        var metadata = metadata ?? [:]
        if suppressed > 0 { metadata["suppressed_since_last"] = "\(suppressed)" }
        logger.log(level: level, "\(message())", metadata: metadata)
    }
}
