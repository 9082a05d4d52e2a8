import Sampling
import Synchronization

/// Polls handed to the shards and not yet in every window: their bytes count toward the buffer
/// limit (a lagging shard must not hide them).
struct PollsInFlight {
    private var polls: [(sequence: UInt64, bytes: Int)] = []
    private var head = 0

    mutating func append(sequence: UInt64, bytes: Int) { polls.append((sequence, bytes)) }

    /// Bytes of polls after `completed` (the oldest poll every shard has finished).
    mutating func bytes(after completed: UInt64) -> Int {
        while head < polls.count && polls[head].sequence <= completed { head += 1 }
        if head > 64 && head * 2 > polls.count {
            polls.removeFirst(head)
            head = 0
        }
        return polls[head...].reduce(0) { $0 + $1.bytes }
    }
}

extension SamplingStage {
    /// What the buffer limit weighs: buffered traces, kept traces queued in sinks, and polls in flight.
    var heldBytes: Int {
        let completed = shards.map { $0.completedSequence.load(ordering: .acquiring) }.min() ?? 0
        return metrics.buffered.bytes + fanOut.queuedBytes + inFlight.bytes(after: completed)
    }

    public var headroom: Int? { max(0, bufferLimit - heldBytes) }

    /// Pauses consumption above the buffer limit, resumes below 80% of it; far above it (a giant
    /// trace, or fetches in flight), shards decide their heaviest traces early.
    func applyPressure() {
        let buffered = metrics.buffered
        let bytes = heldBytes
        // `num_traces` bounds the count as the byte limit bounds memory: both pause, neither drops.
        let maxTraces = rules.rules.configuration.settings.numTraces
        if !paused && buffered.traces >= maxTraces {
            paused = true
            pressureHandler.withLock { $0 }?(true)
            logger.warning("num_traces reached: pausing consumption", metadata: ["buffered_traces": "\(buffered.traces)"])
            return
        }
        if paused && buffered.traces >= maxTraces / 10 * 8 { return }
        if !paused && bytes > bufferLimit {
            paused = true
            pressureHandler.withLock { $0 }?(true)
            // Under sustained load this is the steady state (pause, drain, resume): said once a minute.
            pressureLog.log(
                logger, level: .warning, key: "pause", "buffer limit reached: pausing consumption",
                metadata: ["buffered_bytes": "\(bytes)", "limit": "\(bufferLimit)"])
        } else if paused && bytes < bufferLimit / 10 * 8 {
            paused = false
            pressureHandler.withLock { $0 }?(false)
            pressureLog.log(
                logger, level: .info, key: "resume", "buffer below 80% of its limit: resuming consumption",
                metadata: ["buffered_bytes": "\(bytes)"])
        }
        let overloaded = bytes > bufferLimit + bufferLimit / 4
        for shard in shards { shard.underPressure.store(overloaded, ordering: .relaxed) }
    }
}
