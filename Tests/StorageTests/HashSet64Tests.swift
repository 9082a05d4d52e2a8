@testable import Storage
import Testing

/// The store's hash set and table against Swift's own `Set` and `Dictionary` as the reference model,
/// over seeded random sequences that include 0 (the empty-slot marker), repeats and growth.
@Suite struct HashSet64Tests {
    struct Mix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func behavesAsASet() {
        for seed in 0..<50 as Range<UInt64> {
            var random = Mix(state: seed)
            var set = HashSet64(capacity: Int(random.next() % 64))
            var model = Set<UInt64>()
            // Small universes repeat values; low-entropy values (multiples of 2^32) stress the probe.
            let universe = [8, 1000, 1 << 40][Int(seed % 3)]
            for _ in 0..<2000 {
                let value = seed % 2 == 0 ? random.next() % UInt64(universe) : (random.next() % 64) << 32
                #expect(set.insert(value) == model.insert(value).inserted, "seed \(seed)")
            }
            #expect(set.count == model.count)
            var listed = Set<UInt64>()
            set.forEach { listed.insert($0) }
            #expect(listed == model)
            for _ in 0..<200 {
                let probe = random.next() % UInt64(universe)
                #expect(set.contains(probe) == model.contains(probe))
            }
        }
    }

    @Test func behavesAsADictionary() {
        for seed in 0..<50 as Range<UInt64> {
            var random = Mix(state: seed)
            var table = HashTable64()
            var model: [UInt64: Int] = [:]
            for step in 0..<2000 {
                let key = random.next() % 700
                if random.next() % 3 == 0 {
                    #expect(table[key] == (model[key] ?? -1), "seed \(seed) step \(step)")
                } else {
                    table[key] = step
                    model[key] = step
                }
            }
            for key in 0..<700 as Range<UInt64> { #expect(table[key] == (model[key] ?? -1)) }
        }
    }
}
