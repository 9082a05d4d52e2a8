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
