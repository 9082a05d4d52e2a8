import OTLP
import Sampling
import Testing

/// OTEP 235 thresholds, against the specification's own examples
/// (opentelemetry-specification, trace/tracestate-probability-sampling.md: the 1-in-N table for
/// precision 3, 4 and 5; the `th:0` rule; R ≥ T; adjusted count) and hand-computed values.
@Suite struct SamplingThresholdTests {
    /// (probability, thresholds at precision 3, 4, 5), copied from the specification's table.
    static let table: [(Double, [String])] = [
        (1e-06, ["ffffef4", "ffffef39", "ffffef391"]),
        (1e-05, ["ffff584", "ffff583a", "ffff583a5"]),
        (0.0001, ["fff972", "fff9724", "fff97247"]),
        (0.001, ["ffbe7", "ffbe77", "ffbe76d"]),
        (0.01, ["fd71", "fd70a", "fd70a4"]),
        (0.0625, ["f", "f", "f"]),
        (0.1, ["e66", "e666", "e6666"]),
        (0.125, ["e", "e", "e"]),
        (0.2, ["ccd", "cccd", "ccccd"]),
        (0.25, ["c", "c", "c"]),
        (1.0 / 3.0, ["aab", "aaab", "aaaab"]),
        (0.5, ["8", "8", "8"]),
        (1, ["0", "0", "0"]),
    ]

    @Test(arguments: 0..<13)
    func theSpecificationsTable(row: Int) {
        let (probability, expected) = Self.table[row]
        for (index, precision) in [3, 4, 5].enumerated() {
            #expect(SamplingThreshold(probability: probability, precision: precision).encoded == expected[index], "p=\(probability) precision \(precision)")
        }
    }

    @Test func encodingParsingAndArithmetic() throws {
        // th:c is 0xc0000000000000: probability 1/4, adjusted count 4 (by hand).
        let c = try #require(SamplingThreshold(encoded: "c"))
        #expect(c.value == 0xC0_0000_0000_0000)
        #expect(c.probability == 0.25 && c.adjustedCount == 4)
        #expect(c.encoded == "c")
        #expect(SamplingThreshold(encoded: "c0")?.value == c.value, "trailing zeros are optional")
        #expect(SamplingThreshold(encoded: "0") == .alwaysSample)
        #expect(SamplingThreshold.alwaysSample.encoded == "0", "p = 1 is th:0")
        #expect(SamplingThreshold(encoded: "fffffffffffffff") == nil, "15 digits")
        #expect(SamplingThreshold(encoded: "C") == c, "upper case is read, as the collector reads it")
        #expect(SamplingThreshold(encoded: "") == nil)
        #expect(SamplingThreshold(value: 1 << 56) == nil)
        // R ≥ T keeps: at the threshold itself, and not one below.
        #expect(c.keeps(SamplingRandomness(value: 0xC0_0000_0000_0000)))
        #expect(!c.keeps(SamplingRandomness(value: 0xBF_FFFF_FFFF_FFFF)))
        // Randomness: rv is exactly 14 digits; without it, the trace id's low 56 bits.
        #expect(SamplingRandomness(encoded: "7f000000000000")?.value == 0x7F_0000_0000_0000)
        #expect(SamplingRandomness(encoded: "7f") == nil)
        let id = try #require(TraceID(hex: "0af7651916cd43dd8448eb211c80319c"))
        #expect(SamplingRandomness(traceID: id).value == 0x48_eb21_1c80_319c)
        // A later stage keeping half of what th:8 (1/2) kept: 1/4, th:c.
        #expect(try #require(SamplingThreshold(encoded: "8")).scaled(by: 0.5)?.encoded == "c")
        // Below 2^-56 no threshold can say the product: nothing is kept (the collector's underflow).
        #expect(try #require(SamplingThreshold(encoded: "fffffffffffff8")).scaled(by: 0x1p-4 / 100) == nil)
        #expect(c.scaled(by: 1) == c)
    }

    @Test func tracestateIsRaisedNeverLoweredAndOtherEntriesKept() {
        let c = SamplingThreshold(probability: 0.25)
        // No tracestate: an ot entry is added.
        #expect(TraceStateThreshold.raise("", to: c) == .changed("ot=th:c"))
        // Other vendors' entries stay, in order; a new ot entry goes first (W3C adds on the left).
        #expect(TraceStateThreshold.raise("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", to: c) == .changed("ot=th:c,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
        // A modified ot entry moves to the front (W3C), written as the collector writes it: rv, th,
        // then its other sub-keys.
        #expect(TraceStateThreshold.raise("congo=x,ot=th:8;rv:8f000000000000;x:y", to: c) == .changed("ot=rv:8f000000000000;th:c;x:y,congo=x"))
        #expect(TraceStateThreshold.raise("ot=rv:7f000000000000", to: c) == .changed("ot=rv:7f000000000000;th:c"))
        // Never lowered: th:e (1/8) stays against c (1/4); equal stays (randomness f…: consistent).
        #expect(TraceStateThreshold.raise("ot=th:e", to: c, randomness: SamplingRandomness(value: 0xFF_0000_0000_0000)) == .unchanged)
        #expect(TraceStateThreshold.raise("ot=th:c", to: c, randomness: SamplingRandomness(value: 0xFF_0000_0000_0000)) == .unchanged)
        // An arriving th the span could not have been sampled at (R below it) is erased, then set.
        #expect(TraceStateThreshold.raise("ot=th:e", to: c, randomness: SamplingRandomness(value: 0xD0_0000_0000_0000)) == .changed("ot=th:c"))
        // Probability 1 writes th:0 where nothing was, never lowers what was.
        #expect(TraceStateThreshold.raise("ot=th:8", to: .alwaysSample, randomness: SamplingRandomness(value: 0x90_0000_0000_0000)) == .unchanged)
        #expect(TraceStateThreshold.raise("", to: .alwaysSample) == .changed("ot=th:0"))
        // Malformed ot values are left alone.
        #expect(TraceStateThreshold.raise("ot=th:zz", to: c) == .invalid)
        #expect(TraceStateThreshold.raise("ot=rv:123", to: c) == .invalid)
        #expect(TraceStateThreshold.raise("ot=th", to: c) == .invalid)
        #expect(TraceStateThreshold.raise("=x", to: c) == .invalid)
        // 32 entries and no ot: no room for one more.
        let full = (0..<32).map { "k\($0)=v" }.joined(separator: ",")
        #expect(TraceStateThreshold.raise(Substring(full), to: c) == .invalid)
        // Reading.
        #expect(TraceStateThreshold.threshold("a=b, ot=th:8;rv:7f000000000000") == SamplingThreshold(encoded: "8"))
        #expect(TraceStateThreshold.randomness("ot=th:8;rv:7f000000000000")?.value == 0x7F_0000_0000_0000)
        #expect(TraceStateThreshold.threshold("ot=th:xyz") == nil)
    }
}

/// The probabilistic policy's OTEP 235 modes decide on the trace's randomness (R ≥ T), consistently
/// by trace id; the expected outcomes are worked out by hand from the thresholds.
@Suite struct ProbabilisticModeTests {
    /// A one-span trace whose id's low 56 bits are `randomness`.
    func trace(_ set: RuleSet, randomness: UInt64, traceState: String = "") throws -> TraceData {
        try makeTrace([TestSpan(traceState: traceState, root: true)], traceID: TraceID(high: 0xABCD, low: randomness), selection: set.selection)
    }

    @Test func equalizingKeepsWhenRandomnessReachesTheThreshold() throws {
        let set = try rules("policies: [{name: quarter, type: probabilistic, probabilistic: {sampling_percentage: 25, mode: equalizing}}]")
        // 25% → th:c = 0xc0000000000000.
        #expect(set.decide(try trace(set, randomness: 0xC0_0000_0000_0000), now: 0) == .keep(policy: "quarter"))
        #expect(set.decide(try trace(set, randomness: 0xFF_FFFF_FFFF_FFFF), now: 0) == .keep(policy: "quarter"))
        #expect(set.decide(try trace(set, randomness: 0xBF_FFFF_FFFF_FFFF), now: 0) == .drop)
        // The high 8 bits of the id's low half are not randomness.
        #expect(set.decide(try trace(set, randomness: 0xFF00_0000_0000_0000), now: 0) == .drop)
        // rv wins over the trace id.
        #expect(set.decide(try trace(set, randomness: 0, traceState: "ot=rv:c0000000000000"), now: 0) == .keep(policy: "quarter"))
        #expect(set.decide(try trace(set, randomness: 0xFF_FFFF_FFFF_FFFF, traceState: "ot=rv:10000000000000"), now: 0) == .drop)
        let kept = try trace(set, randomness: 0xC0_0000_0000_0000)
        #expect(set.samplingThreshold(for: kept, keptBy: "quarter")?.encoded == "c")
    }

    @Test func proportionalMultipliesTheIncomingProbability() throws {
        let set = try rules("policies: [{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50, mode: proportional}}]")
        // Head-sampled at 1/2 (th:8), then 1/2 here: 1/4, th:c.
        let between = try trace(set, randomness: 0xB0_0000_0000_0000, traceState: "ot=th:8")
        #expect(set.decide(between, now: 0) == .drop, "R = 0xb0… passes th:8 but not th:c")
        let above = try trace(set, randomness: 0xC8_0000_0000_0000, traceState: "ot=th:8")
        #expect(set.decide(above, now: 0) == .keep(policy: "half"))
        #expect(set.samplingThreshold(for: above, keptBy: "half")?.encoded == "c")
        // Without an incoming threshold, proportional is p itself: th:8.
        let plain = try trace(set, randomness: 0x90_0000_0000_0000)
        #expect(set.decide(plain, now: 0) == .keep(policy: "half"))
        #expect(set.samplingThreshold(for: plain, keptBy: "half")?.encoded == "8")
        // Equalizing at the same 50% keeps the 0xb0… trace: th:8 only.
        let equalizing = try rules("policies: [{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50, mode: equalizing}}]")
        #expect(equalizing.decide(try trace(equalizing, randomness: 0xB0_0000_0000_0000, traceState: "ot=th:8"), now: 0) == .keep(policy: "half"))
    }

    @Test func hashSeedStaysTheCollectorsHashAndWritesItsThreshold() throws {
        let set = try rules("policies: [{name: tenth, type: probabilistic, probabilistic: {sampling_percentage: 10, sampling_precision: 3}}]")
        let kept = try trace(set, randomness: 1)
        #expect(set.samplingThreshold(for: kept, keptBy: "tenth")?.encoded == "e66", "the specification's 1-in-10 at precision 3")
        #expect(set.samplingThreshold(for: kept, keptBy: "other") == nil)
    }

    @Test func modesAreValidatedWithLocatedErrors() {
        func errors(_ yaml: String) -> String {
            do { _ = try RuleFile.parse(yaml, file: "r.yaml"); return "" } catch { return error.description }
        }
        #expect(errors("policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 5, mode: fancy}}]").contains("mode must be hash_seed, proportional or equalizing"))
        #expect(errors("policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 5, sampling_precision: 15}}]").contains("sampling_precision is 1 to 14"))
        #expect(errors("policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 5, mode: equalizing, hash_salt: x}}]").contains("hash_salt applies to mode hash_seed only"))
        #expect(errors("policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 5, mode: proportional, sampling_precision: 6}}]").isEmpty)
    }
}
