public import Storage
import Foundation
public import Logging
import OTLP
import Synchronization

/// Writes kept traces to the file store in blocks (every 100 ms, or sooner past 4 MiB), durably,
/// and only then reports them stored — which lets their offsets be committed. A failing disk is
/// retried, never skipped: offsets stay put and the buffer limit eventually pauses Kafka.
public final class StoreWriter: TraceSink, @unchecked Sendable {
    public let name = "store"
    public let store: TraceStore
    private let logger: Logger
    private let queue = Mutex<(items: [(StoredTrace, @Sendable () -> Void)], bytes: Int)>(([], 0))
    private let wake = DispatchSemaphore(value: 0)
    /// Traces taken and not yet durable.
    private let pending = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let written = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let unwritten = Atomic<Int>(0)
    private let lastFailure = Mutex<String?>(nil)
    private let interval: Duration
    private let batchBytes: Int
    /// How often retention runs on its own.
    private let expiryInterval: Duration

    public init(
        store: TraceStore, interval: Duration = .milliseconds(100), batchBytes: Int = 4 << 20, expiryInterval: Duration = .seconds(60),
        logger: Logger
    ) {
        self.store = store
        self.expiryInterval = expiryInterval
        self.interval = interval
        self.batchBytes = batchBytes
        self.logger = logger
        let thread = Thread { [self] in run() }
        thread.name = "tailgate-store"
        thread.start()
    }

    /// A kept trace in its final form; `acknowledged` runs once it is durable.
    public func send(_ trace: StoredTrace, acknowledged: @escaping @Sendable () -> Void) {
        enqueue(trace, acknowledged)
    }

    private func enqueue(_ trace: StoredTrace, _ stored: @escaping @Sendable () -> Void) {
        let size = queue.withLock { state -> Int in
            state.items.append((trace, stored))
            state.bytes += trace.request.count
            return state.bytes
        }
        unwritten.add(trace.request.count, ordering: .relaxed)
        pending.add(1, ordering: .relaxed)
        if size >= batchBytes { wake.signal() }
    }

    /// Writes everything queued now and waits for it, at most `timeout` (a failing disk is retried
    /// until then; what is left stays unacknowledged, so its offsets are not committed).
    @discardableResult
    public func flush(timeout: Duration) -> Bool {
        wake.signal()
        return waitUntilDrained(timeout: timeout, every: 0.005) { pending.load(ordering: .relaxed) == 0 }
    }

    /// Stops the writer thread after writing what is queued (at most `timeout`).
    public func stop(timeout: Duration) {
        flush(timeout: timeout)
        stopping.store(true, ordering: .relaxed)
        wake.signal()
    }

    /// Bytes of kept traces queued or being written, not yet durable (they count toward the buffer limit).
    public var queuedBytes: Int { unwritten.load(ordering: .relaxed) }

    public var tracesWritten: Int { written.load(ordering: .relaxed) }
    public var writeFailures: Int { failures.load(ordering: .relaxed) }

    public var statistics: TraceSinkStatistics {
        TraceSinkStatistics(
            delivered: tracesWritten, errors: writeFailures, pending: pending.load(ordering: .relaxed), failing: lastFailure.withLock { $0 })
    }

    private func run() {
        var lastExpiry = ContinuousClock.now
        while !stopping.load(ordering: .relaxed) {
            _ = wake.wait(timeout: .now() + Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
            // Retention also runs when nothing is written: an idle store must still expire.
            if ContinuousClock.now - lastExpiry >= expiryInterval {
                store.expire()
                lastExpiry = .now
            }
            let batch = queue.withLock { state -> [(StoredTrace, @Sendable () -> Void)] in
                defer { state = ([], 0) }
                return state.items
            }
            guard !batch.isEmpty else { continue }
            var attempt = 0
            var writtenOK = false
            while !stopping.load(ordering: .relaxed) || attempt == 0 {
                do {
                    try store.write(batch.map(\.0))
                    lastFailure.withLock { $0 = nil }
                    writtenOK = true
                    break
                } catch {
                    failures.add(1, ordering: .relaxed)
                    lastFailure.withLock { $0 = "\(error)" }
                    attempt += 1
                    logger.error("writing kept traces failed (attempt \(attempt)); retrying, offsets wait: \(error)")
                    Thread.sleep(forTimeInterval: min(5, 0.1 * Double(1 << min(attempt, 6))))
                }
            }
            guard writtenOK else { break }  // stopping with a disk that keeps failing: never acknowledged
            written.add(batch.count, ordering: .relaxed)
            unwritten.add(-batch.reduce(0) { $0 + $1.0.request.count }, ordering: .relaxed)
            // Acknowledged before the count drops, so a flush that returns has every acknowledgement out.
            for (_, stored) in batch { stored() }
            pending.add(-batch.count, ordering: .relaxed)
        }
    }
}
