@testable import OTLP
import Testing

/// The window's (and the router's) open-addressing index against `Dictionary`, over seeded random inserts, updates and
/// removals (backward-shift deletion is where such tables go wrong: a run broken by a removal hides
/// the entries after it).
@Suite struct TraceIDTableTests {
    @Test(arguments: [1, 2, 3, 4, 5])
    func agreesWithADictionary(seed: UInt64) {
        var state = seed &* 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var table = TraceIDTable()
        var model: [TraceID: Int32] = [:]
        // A small id space, so that runs form, collide and get broken by removals.
        let ids = (0..<300).map { _ in TraceID(high: next(), low: next()) }
        for step in 0..<20_000 {
            let id = ids[Int(next() % UInt64(ids.count))]
            switch next() % 3 {
            case 0, 1:
                let value = Int32(truncatingIfNeeded: next() % 1_000_000)
                table[id] = value
                model[id] = value
            default:
                table[id] = nil
                model[id] = nil
            }
            if step % 97 == 0 {
                for probe in ids { #expect(table[probe] == model[probe], "step \(step)") }
            }
            #expect(table.count == model.count)
        }
        for probe in ids { #expect(table[probe] == model[probe]) }
    }
}
