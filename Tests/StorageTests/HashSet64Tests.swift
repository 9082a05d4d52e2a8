@testable import Storage
import TestSupport
import Testing

/// The store's hash set and table against Swift's own `Set` and `Dictionary` as the reference model,
/// over seeded random sequences that include 0 (the empty-slot marker), repeats and growth.
@Suite struct HashSet64Tests {
    @Test func behavesAsASet() {
        for seed in 0..<50 as Range<UInt64> {
            var random = SplitMix64(seed: seed)
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
            var random = SplitMix64(seed: seed)
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
