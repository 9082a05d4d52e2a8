public import Storage
import Foundation

/// Where kept traces go: the file store, an OTLP/HTTP receiver, a Kafka topic. The engine hands every
/// kept trace, encoded once, to each configured sink, and counts it stored when every sink has
/// acknowledged it; only then may the offsets of its spans be committed (the delivery ledger's rule).
///
/// A sink never drops what it was given: failures are retried (or, for input the receiver refuses for
/// good, counted and logged), and what it holds counts toward the buffer limit so that a slow or dead
/// sink pauses Kafka instead of growing memory.
public protocol TraceSink: AnyObject, Sendable {
    /// The `sink` label of its metrics: `store`, `otlp`, `kafka`.
    var name: String { get }
    /// Takes one kept trace (an `ExportTraceServiceRequest` with `tailgate.policy` on its spans).
    /// `acknowledged` runs exactly once, on any thread, when the trace is durable there. Must not block.
    func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void)
    /// Waits until everything sent is acknowledged, at most `timeout`; false if something is left.
    @discardableResult func flush(timeout: Duration) -> Bool
    /// Stops after a ``flush(timeout:)`` bounded by `timeout`.
    func stop(timeout: Duration)
    /// Bytes taken and not yet acknowledged.
    var queuedBytes: Int { get }
    /// Traces durably accepted, failed attempts (each retried) and permanent rejections.
    var statistics: TraceSinkStatistics { get }
}

/// A sink's counters, for `tailgate_sink_*` metrics.
public struct TraceSinkStatistics: Sendable, Equatable {
    /// Traces (and late-span pieces) durably accepted.
    public var delivered = 0
    /// Failed attempts (retried) and traces refused for good.
    public var errors = 0
    /// Requests sent again.
    public var retries = 0
    /// Taken and not yet acknowledged.
    public var pending = 0
    /// Pieces split in two because the receiver found them too large.
    public var splits = 0
    /// Spans too large for the receiver even alone (not delivered; dead-lettered where possible).
    public var oversizeSpans = 0
    /// Why the latest attempt failed, while it has not succeeded since (nil: working).
    public var failing: String?
    public init(
        delivered: Int = 0, errors: Int = 0, retries: Int = 0, pending: Int = 0, splits: Int = 0, oversizeSpans: Int = 0,
        failing: String? = nil
    ) {
        self.delivered = delivered
        self.errors = errors
        self.retries = retries
        self.pending = pending
        self.splits = splits
        self.oversizeSpans = oversizeSpans
        self.failing = failing
    }
}

/// How every sink's `flush(timeout:)` waits: until `drained` holds or `timeout` has passed; whether it
/// drained. (Sinks acknowledge from their own threads; polling a counter keeps them free of a
/// condition variable each.)
func waitUntilDrained(timeout: Duration, every interval: Double = 0.01, _ drained: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !drained() {
        guard ContinuousClock.now < deadline else { return false }
        Thread.sleep(forTimeInterval: interval)
    }
    return true
}
