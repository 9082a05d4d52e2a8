/// The delivery ledger's two lookups, without SipHash: a Swift `Dictionary` hashes every key with a
/// seeded SipHash, and the ledger looks up a lane and an offset for every hold and every release — a
/// trace's arrival and its decision — at ~600 instructions each (callgrind, session 19).
///
/// Both are open-addressing tables with linear probing over a power-of-two number of slots, keys
/// placed by a Fibonacci multiply (lanes and offsets are consecutive integers: the multiply spreads
/// them), entries removed by shifting the probe run back (no tombstones), and a large table's slots
/// halved when seven eighths of them are empty after a removal, so their memory stays proportional to
/// what is held, never to what was processed.

/// Per held offset of one lane, how many obligations hold it (always ≥ 1 while present).
struct OffsetCounts: Sendable {
    private var keys: [Int64]
    /// 0: an empty slot.
    private var counts: [Int32]
    private(set) var count = 0
    private var shift: UInt64

    /// Slots allocated (tests: memory follows what is held).
    var slotCount: Int { keys.count }

    private static let minimumSlots = 16
    /// Up to this many slots stay when offsets are released (48 KiB): a lane whose held offsets rise
    /// and fall with every poll would otherwise shrink and regrow its table each time (the pipeline
    /// benchmark's allocation gate caught 17 allocations per iteration of that).
    private static let slotsKeptWhenEmptying = 4096

    init() {
        keys = Array(repeating: 0, count: Self.minimumSlots)
        counts = Array(repeating: 0, count: Self.minimumSlots)
        shift = UInt64(64 - Self.minimumSlots.trailingZeroBitCount)
    }

    @inline(__always)
    private func home(_ key: Int64) -> Int {
        Int(truncatingIfNeeded: (UInt64(bitPattern: key) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The slot holding `key`, or the empty slot where it would go.
    @inline(__always)
    private func slot(of key: Int64) -> Int {
        let mask = keys.count - 1
        var slot = home(key)
        while counts[slot] != 0 && keys[slot] != key { slot = (slot + 1) & mask }
        return slot
    }

    func contains(_ key: Int64) -> Bool { counts[slot(of: key)] != 0 }

    /// One more hold on `key`; returns how many held it before (0: newly held).
    @discardableResult
    mutating func increment(_ key: Int64) -> Int32 {
        var slot = slot(of: key)
        let before = counts[slot]
        if before == 0 {
            if (count + 1) * 2 > keys.count {
                resize(to: keys.count * 2)
                slot = self.slot(of: key)
            }
            keys[slot] = key
            count += 1
        }
        counts[slot] = before + 1
        return before
    }

    /// One hold on `key` fewer; returns how many hold it now, or nil when it was not held.
    mutating func decrement(_ key: Int64) -> Int32? {
        let slot = slot(of: key)
        let before = counts[slot]
        guard before != 0 else { return nil }
        if before > 1 {
            counts[slot] = before - 1
            return before - 1
        }
        remove(at: slot)
        return 0
    }

    /// Every held offset, in no order.
    var heldOffsets: [Int64] {
        var result: [Int64] = []
        result.reserveCapacity(count)
        for slot in keys.indices where counts[slot] != 0 { result.append(keys[slot]) }
        return result
    }

    private mutating func remove(at removed: Int) {
        let mask = keys.count - 1
        var hole = removed
        var next = (hole + 1) & mask
        // Backward shift: an entry further along the run moves into the hole unless its home lies
        // cyclically in (hole, next] — then it already sits as close to home as the hole would be.
        while counts[next] != 0 {
            let home = home(keys[next])
            let stays = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !stays {
                keys[hole] = keys[next]
                counts[hole] = counts[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        counts[hole] = 0
        count -= 1
        if keys.count > Self.slotsKeptWhenEmptying && count * 8 < keys.count { resize(to: keys.count / 2) }
    }

    private mutating func resize(to slots: Int) {
        let oldKeys = keys
        let oldCounts = counts
        keys = Array(repeating: 0, count: slots)
        counts = Array(repeating: 0, count: slots)
        shift = UInt64(64 - slots.trailingZeroBitCount)
        let mask = slots - 1
        for index in oldKeys.indices where oldCounts[index] != 0 {
            var slot = home(oldKeys[index])
            while counts[slot] != 0 { slot = (slot + 1) & mask }
            keys[slot] = oldKeys[index]
            counts[slot] = oldCounts[index]
        }
    }
}

/// The ledger's lanes: their states in one dense array (reached by index, mutated in place) and a
/// table from lane to index. Lanes come and go only with rebalances; the table is rebuilt then.
struct LaneStates: Sendable {
    typealias Lane = DeliveryLedger.Lane

    private(set) var keys: [Lane] = []
    /// Reached by index from ``index(forKey:)``; an index holds until the next insertion or removal.
    var values: [LaneState] = []
    /// Index + 1 per slot; 0: empty.
    private var slots: [Int32] = Array(repeating: 0, count: 8)

    @inline(__always)
    private func home(_ lane: Lane) -> Int {
        Int(truncatingIfNeeded: (UInt64(lane) &* 0x9E37_79B9_7F4A_7C15) >> 32) & (slots.count - 1)
    }

    func index(forKey lane: Lane) -> Int? {
        let mask = slots.count - 1
        var slot = home(lane)
        while true {
            let entry = Int(slots[slot])
            if entry == 0 { return nil }
            if keys[entry - 1] == lane { return entry - 1 }
            slot = (slot + 1) & mask
        }
    }

    var indices: Range<Int> { values.indices }

    subscript(lane: Lane) -> LaneState? {
        index(forKey: lane).map { values[$0] }
    }

    /// Adds `lane` with `state`; a lane already present keeps its state.
    mutating func insert(_ lane: Lane, _ state: LaneState) {
        guard index(forKey: lane) == nil else { return }
        keys.append(lane)
        values.append(state)
        if keys.count * 2 > slots.count {
            rebuild(slots: slots.count * 2)
        } else {
            place(lane, at: keys.count - 1)
        }
    }

    mutating func remove(_ lane: Lane) {
        guard let index = index(forKey: lane) else { return }
        keys.swapAt(index, keys.count - 1)
        values.swapAt(index, values.count - 1)
        keys.removeLast()
        values.removeLast()
        var slots = 8
        while keys.count * 2 > slots { slots *= 2 }
        rebuild(slots: slots)
    }

    private mutating func place(_ lane: Lane, at index: Int) {
        let mask = slots.count - 1
        var slot = home(lane)
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Int32(index + 1)
    }

    private mutating func rebuild(slots count: Int) {
        slots = Array(repeating: 0, count: count)
        for (index, lane) in keys.enumerated() { place(lane, at: index) }
    }
}
