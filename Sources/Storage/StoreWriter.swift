import Foundation
public import Logging
public import OTLP
public import Sampling
public import Storage
import Synchronization

/// Writes kept traces to the file store in blocks (every 100 ms, or sooner past 4 MiB), durably,
/// and only then reports them stored — which lets their offsets be committed. A failing disk is
/// retried, never skipped: offsets stay put and the buffer limit eventually pauses Kafka.
public final class StoreWriter: KeptTraceSink, @unchecked Sendable {
    public let store: TraceStore
    private let logger: Logger
    private let queue = Mutex<(items: [(StoredTrace, @Sendable () -> Void)], bytes: Int)>(([], 0))
    private let wake = DispatchSemaphore(value: 0)
    private let idle = Mutex<Bool>(true)
    private let stopping = Atomic<Bool>(false)
    private let flushed = DispatchSemaphore(value: 0)
    private let written = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let unwritten = Atomic<Int>(0)
    private let interval: Duration
    private let batchBytes: Int

    public init(store: TraceStore, interval: Duration = .milliseconds(100), batchBytes: Int = 4 << 20, logger: Logger) {
        self.store = store
        self.interval = interval
        self.batchBytes = batchBytes
        self.logger = logger
        let thread = Thread { [self] in run() }
        thread.name = "tailgate-store"
        thread.start()
    }

    public func keep(_ trace: TraceData, policy: String, stored: @escaping @Sendable () -> Void) {
        enqueue(StoredTrace(traceID: trace.traceID, policy: policy, request: trace.exportRequest()), stored)
    }

    /// A kept trace already in its final form (redacted).
    public func keep(_ trace: StoredTrace, stored: @escaping @Sendable () -> Void) {
        enqueue(trace, stored)
    }

    public func keepLate(_ span: SpanRecord, from batch: SpanBatch, stored: @escaping @Sendable () -> Void) {
        var single = TraceData(traceID: span.traceID)
        single.append(span, from: batch, batchGeneration: 0)
        enqueue(StoredTrace(traceID: span.traceID, policy: "", request: single.exportRequest()), stored)
    }

    private func enqueue(_ trace: StoredTrace, _ stored: @escaping @Sendable () -> Void) {
        let size = queue.withLock { state -> Int in
            state.items.append((trace, stored))
            state.bytes += trace.request.count
            return state.bytes
        }
        unwritten.add(trace.request.count, ordering: .relaxed)
        if size >= batchBytes { wake.signal() }
    }

    /// Writes everything queued now and waits for it (shutdown, drain).
    public func flush() {
        guard queue.withLock({ !$0.items.isEmpty }) else { return }
        wake.signal()
        while queue.withLock({ !$0.items.isEmpty }) || !idle.withLock({ $0 }) {
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    /// Stops the writer thread after writing what is queued.
    public func stop() {
        flush()
        stopping.store(true, ordering: .relaxed)
        wake.signal()
    }

    /// Bytes of kept traces queued or being written, not yet durable (they count toward the buffer limit).
    public var queuedBytes: Int { unwritten.load(ordering: .relaxed) }

    public var tracesWritten: Int { written.load(ordering: .relaxed) }
    public var writeFailures: Int { failures.load(ordering: .relaxed) }

    private func run() {
        while !stopping.load(ordering: .relaxed) {
            _ = wake.wait(timeout: .now() + interval.timeInterval)
            let batch = queue.withLock { state -> [(StoredTrace, @Sendable () -> Void)] in
                defer { state = ([], 0) }
                if !state.items.isEmpty { idle.withLock { $0 = false } }
                return state.items
            }
            guard !batch.isEmpty else { continue }
            var attempt = 0
            while true {
                do {
                    try store.write(batch.map(\.0))
                    break
                } catch {
                    failures.add(1, ordering: .relaxed)
                    attempt += 1
                    logger.error("writing kept traces failed (attempt \(attempt)); retrying, offsets wait: \(error)")
                    Thread.sleep(forTimeInterval: min(5, 0.1 * Double(1 << min(attempt, 6))))
                }
            }
            written.add(batch.count, ordering: .relaxed)
            unwritten.add(-batch.reduce(0) { $0 + $1.0.request.count }, ordering: .relaxed)
            for (_, stored) in batch { stored() }
            idle.withLock { $0 = true }
        }
    }
}
