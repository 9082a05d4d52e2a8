@testable import Sampling
import Testing

/// The ledger's own tables against Swift's `Dictionary` as the reference, over seeded random
/// sequences of holds and releases: what is held, how often, and that memory shrinks with it.
@Suite struct LedgerTablesTests {
    @Test(arguments: 0..<6) func offsetCountsAgreeWithADictionary(seed: Int) {
        var random = SplitMix(seed: UInt64(seed) &+ 77)
        var table = OffsetCounts()
        var reference: [Int64: Int32] = [:]
        // Offsets as the ledger sees them: mostly a moving window of consecutive ones, some far
        // apart, some sharing the low bits a mask-only hash would collide on.
        var base: Int64 = seed.isMultiple(of: 2) ? 0 : 1 << 40
        for step in 0..<40_000 {
            let offset: Int64
            switch random.below(10) {
            case 0: offset = Int64(random.below(64)) << 32
            case 1: offset = base - Int64(random.below(5_000))
            default: offset = base + Int64(random.below(300))
            }
            if step % 7 == 0 { base += Int64(random.below(40)) }
            if random.chance(55) {
                let before = table.increment(offset)
                #expect(before == reference[offset] ?? 0)
                reference[offset, default: 0] += 1
            } else {
                let left = table.decrement(offset)
                if let count = reference[offset] {
                    #expect(left == count - 1)
                    reference[offset] = count == 1 ? nil : count - 1
                } else {
                    #expect(left == nil)
                }
            }
            #expect(table.count == reference.count)
            if step % 997 == 0 {
                #expect(Set(table.heldOffsets) == Set(reference.keys))
                let unreachable = reference.keys.filter { !table.contains($0) }
                #expect(unreachable.isEmpty)
            }
        }
        // Everything released: the table is empty, and no larger than it keeps for the next holds.
        for (offset, count) in reference {
            for _ in 0..<count { _ = table.decrement(offset) }
        }
        #expect(table.count == 0)
        #expect(table.heldOffsets.isEmpty)
        #expect(table.slotCount <= 4096)
    }

    @Test func removalsFromTheMiddleKeepTheRestReachable() {
        // Twelve keys in 32 slots make probe runs; removing every other one must leave the rest
        // reachable (entries further along a run shift back into the holes), and removing the rest
        // must empty the table.
        var table = OffsetCounts()
        let keys = (0..<12).map { Int64($0) * 1_000_003 }
        for key in keys { table.increment(key) }
        for (index, key) in keys.enumerated() where index.isMultiple(of: 2) { #expect(table.decrement(key) == 0) }
        let present = keys.map { table.contains($0) }
        #expect(present == keys.indices.map { !$0.isMultiple(of: 2) })
        for (index, key) in keys.enumerated() where !index.isMultiple(of: 2) { #expect(table.decrement(key) == 0) }
        #expect(table.count == 0)
        #expect(table.decrement(keys[1]) == nil)
    }

    @Test func manyHeldThenReleasedShrinksTheSlots() {
        var table = OffsetCounts()
        for offset in 0..<100_000 { table.increment(Int64(offset)) }
        #expect(table.slotCount >= 200_000)
        for offset in 0..<99_990 { _ = table.decrement(Int64(offset)) }
        #expect(table.count == 10)
        #expect(table.slotCount <= 4096, "slots: \(table.slotCount)")
        let left = (99_990..<100_000).filter { table.contains(Int64($0)) }
        #expect(left.count == 10)
    }

    @Test(arguments: 0..<3) func laneStatesAgreeWithADictionary(seed: Int) {
        var random = SplitMix(seed: UInt64(seed) &+ 5)
        var lanes = LaneStates()
        var reference: [UInt32: Int64] = [:]
        var nextLane: UInt32 = 0
        for _ in 0..<5_000 {
            switch random.below(4) {
            case 0:
                // A new assignment: lanes are numbered as assignments come.
                let lane = nextLane
                nextLane += UInt32(1 + random.below(3))
                lanes.insert(lane, LaneState(end: Int64(lane)))
                reference[lane] = Int64(lane)
            case 1:
                guard let lane = reference.keys.randomElement(using: &random) else { continue }
                lanes.remove(lane)
                reference[lane] = nil
            default:
                let lane = UInt32(random.below(Int(nextLane) + 2))
                let index = lanes.index(forKey: lane)
                #expect((index != nil) == (reference[lane] != nil))
                if let index {
                    #expect(lanes.keys[index] == lane)
                    lanes.values[index].received(lanes.values[index].end!)
                    reference[lane]! += 1
                }
            }
            #expect(lanes.keys.count == reference.count)
        }
        for (lane, end) in reference { #expect(lanes[lane]?.end == end) }
    }
}
