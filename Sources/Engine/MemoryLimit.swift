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
    /// librdkafka's `queued.max.messages.kbytes`: a sixteenth of the limit, 1–64 MiB.
    public var prefetchKiB: Int
    /// Bytes of messages taken per poll: a sixteenth of the limit, 256 KiB–4 MiB.
    public var pollBytes: Int

    public init(bufferLimit: Int) {
        prefetchKiB = min(max(bufferLimit / 16 / 1024, 1024), 65536)
        pollBytes = min(max(bufferLimit / 16, 256 << 10), 4 << 20)
    }
}
