/// A hashed timing wheel: deadlines fall into 10 ms buckets of a 4096-bucket ring (≈41 s per turn),
/// each in the bucket of the tick boundary that follows it (so a trace is decided at most 10 ms late);
/// later deadlines wait in their bucket for the turn they belong to. Scheduling is O(1); advancing
/// visits each elapsed bucket once. Moving a deadline earlier schedules again; the old entry turns
/// up stale and is skipped.
struct DeadlineWheel: Sendable {
    struct Item {
        var slot: Int32
        var generation: UInt32
        var deadline: UInt64
    }

    static let tick: UInt64 = 10_000_000
    static let size = 4096
    private var buckets: [[Item]] = Array(repeating: [], count: DeadlineWheel.size)
    private var current: UInt64?

    /// - Parameter now: the caller's clock; the wheel starts turning at the first call.
    mutating func schedule(slot: Int32, generation: UInt32, at deadline: UInt64, now: UInt64) {
        // The first tick boundary at or after the deadline: when the wheel reaches that bucket, every
        // deadline in it has passed. (Rounding down instead would drain the bucket while the clock is
        // still inside its tick, before some of its deadlines, and strand those for a whole turn.)
        let tick = (deadline &+ Self.tick &- 1) / Self.tick
        if current == nil { current = now / Self.tick }
        // Buckets up to `current` were visited already: a deadline there goes in the next one.
        let bucketTick = max(tick, current! + 1)
        buckets[Int(bucketTick % UInt64(Self.size))].append(Item(slot: slot, generation: generation, deadline: deadline))
    }

    /// Moves every item due by `now` into `due`; the rest stay.
    mutating func advance(to now: UInt64, into due: inout [Item]) {
        guard let start = current else { return }
        let target = now / Self.tick
        if target > start {
            // Visit each bucket once even if more than a turn elapsed.
            let steps = min(target - start, UInt64(Self.size))
            for step in 1...steps {
                drain(bucket: Int((start + step) % UInt64(Self.size)), now: now, into: &due)
            }
            current = target
        }
        // The tick in progress: its bucket holds deadlines up to the tick's end; those already past
        // are due now (exact deadlines, not rounded up to the tick), the others wait for it.
        drain(bucket: Int((target + 1) % UInt64(Self.size)), now: now, into: &due)
    }

    private mutating func drain(bucket: Int, now: UInt64, into due: inout [Item]) {
        guard !buckets[bucket].isEmpty else { return }
        var kept = 0
        for i in buckets[bucket].indices {
            let item = buckets[bucket][i]
            if item.deadline <= now {
                due.append(item)
            } else {
                buckets[bucket][kept] = item
                kept += 1
            }
        }
        buckets[bucket].removeSubrange(kept...)
    }
}
