import OTLP
import Sampling
import Testing

/// Bit-for-bit agreement with the collector's probabilistic policy. Reference values computed
/// independently (Python, exact fractions, Go big.Float's 64-bit round-to-nearest-even, then
/// truncation; FNV-1a 64 from its definition).
@Suite struct ProbabilisticHashTests {
    @Test(arguments: [
        (10.0, UInt64(1_844_674_407_370_955_263)), (1.0, 184_467_440_737_095_519), (33.3, 6_142_765_776_545_279_999),
        (50.0, 9_223_372_036_854_775_807), (0.1, 18_446_744_073_709_551), (99.99, 18_444_899_399_302_178_815),
        (5.0, 922_337_203_685_477_631), (100.0, UInt64.max), (0.0, 0),
    ])
    func thresholdMatchesGoBigFloat(percentage: Double, expected: UInt64) {
        #expect(ProbabilisticHash.threshold(samplingPercentage: percentage) == expected)
    }

    @Test func fnv1aOverSaltThenTraceID() {
        let id = TraceID(hex: "4bf92f3577b34da6a3ce929d0e0e4736")!
        #expect(ProbabilisticHash.hash(salt: "default-hash-seed", traceID: id) == 11_908_981_664_384_643_253)
        #expect(ProbabilisticHash.hash(salt: "dogbook", traceID: id) == 6_989_817_318_616_838_976)
    }
}
