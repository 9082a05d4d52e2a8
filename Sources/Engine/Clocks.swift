import Foundation

/// A monotonic clock in nanoseconds (injected so tests can drive time).
public protocol MonotonicClock: Sendable {
    func now() -> UInt64
}

/// Wall-clock time in Unix milliseconds (exemplar timestamps), injected like the monotonic clock.
public protocol WallClock: Sendable {
    func unixMillis() -> Int64
}

/// The system's wall clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func unixMillis() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

/// The process's monotonic clock.
public struct SystemMonotonicClock: MonotonicClock {
    public init() {}
    public func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
