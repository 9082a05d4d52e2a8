import Foundation

/// The memory this process may use: the cgroup limit (v2, then v1) when one is set, else physical memory.
enum MemoryLimit {
    static func bytes() -> Int {
        let physical = Int(ProcessInfo.processInfo.physicalMemory)
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0, value < physical
            {
                return value
            }
        }
        return physical
    }

    /// The default buffer limit: half of what the process may use, leaving room for Kafka's fetch
    /// buffers, the sinks and the runtime.
    static var defaultBufferLimit: Int { bytes() / 2 }
}

/// How the buffer limit is shared out among what holds span bytes besides the trace windows, so the
/// process's resident memory follows the limit instead of fixed defaults sized for a big machine:
/// librdkafka's prefetch queue (64 MiB by default, whatever the limit) and the ingest loop's polls
/// (up to 2 048 messages each, several kept for reuse).
public struct MemoryBudget: Sendable, Equatable {
    /// librdkafka's `queued.max.messages.kbytes`: an eighth of the limit, 1–256 MiB.
    ///
    /// librdkafka 2.0 stops fetching once its queue holds this much and looks again only on its
    /// broker thread's next wake-up, up to a second later (librdkafka#2879; 2.2 made that wait
    /// `fetch.queue.backoff.ms`). An engine slower than its brokers — catching up on lag — drains a
    /// queue smaller than about a second of its reading and then waits. The 640 k-span benchmark
    /// (about 180 MB/s of reading at full speed here) ran at 312–436 k spans/s with 64 or 128 MiB
    /// and at 568–773 k with 256 MiB.
    public var prefetchKiB: Int
    /// Bytes of messages taken per poll: a sixteenth of the limit, 256 KiB–4 MiB.
    public var pollBytes: Int
    /// glibc's `M_TOP_PAD`: a sixteenth of the limit, 1–64 MiB. Each thread's heap grows by at least
    /// this much at a time (one `mprotect` call instead of one per allocation) and — what it costs —
    /// keeps as much of its freed top resident when it shrinks: a fixed 64 MiB kept up to 50 MiB per
    /// busy thread resident beyond a 128 MiB limit (peak 248 MiB, 196–204 with glibc's own pad).
    public var heapPadBytes: Int

    public init(bufferLimit: Int) {
        prefetchKiB = min(max(bufferLimit / 8 / 1024, 1024), 262144)
        pollBytes = min(max(bufferLimit / 16, 256 << 10), 4 << 20)
        heapPadBytes = min(max(bufferLimit / 16, 1 << 20), 64 << 20)
    }

    /// The shares of the limit `--buffer-limit` sets, or of the default (half of what the process
    /// may use) without it.
    public init(configuredLimit: Int?) {
        self.init(bufferLimit: configuredLimit ?? MemoryLimit.defaultBufferLimit)
    }
}

/// When to hand freed heap memory back to the kernel (`malloc_trim`): after a burst, once the bytes
/// held have fallen well below their peak — at least 32 MiB and by half — and at most every 30 s.
/// Without it glibc keeps the freed pages, and a pod's resident memory stays at its burst peak.
public struct MemoryReturnPolicy: Sendable {
    public var minimumDrop = 32 << 20
    public var interval: Duration = .seconds(30)
    private var highWater = 0
    private var lastReturn: ContinuousClock.Instant?

    public init() {}

    /// Called periodically with the bytes held now; true when memory should be returned now.
    public mutating func shouldReturn(held: Int, now: ContinuousClock.Instant) -> Bool {
        highWater = max(highWater, held)
        guard highWater - held >= minimumDrop, held <= highWater / 2 else { return false }
        if let lastReturn, now - lastReturn < interval { return false }
        lastReturn = now
        highWater = held
        return true
    }
}

/// Returns freed heap memory to the kernel; the resident bytes before and after.
func returnFreedMemory() -> (before: Int, after: Int) {
    let before = residentBytes()
    #if os(Linux)
    _ = glibcMallocTrim(0)
    #endif
    return (before, residentBytes())
}

/// The resident set now (`/proc/self/statm`), bytes; 0 when unknown.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

#if os(Linux)
@_silgen_name("malloc_trim") private func glibcMallocTrim(_ pad: Int) -> Int32
#endif
