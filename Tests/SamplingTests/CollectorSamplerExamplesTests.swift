import OTLP
@testable import Sampling
import Testing

/// tailgate's `probabilistic` policy in `equalizing` and `proportional` mode against the OpenTelemetry
/// Collector's probabilistic sampler, on the collector's own published examples
/// (processor/probabilisticsamplerprocessor, `Test_tracesamplerprocessor_TraceState`): the same
/// trace id, tracestate, percentage and precision give the same decision and the same tracestate,
/// to the last digit. Where the collector leaves the precision unset (0) it means all 14 digits:
/// `sampling_precision: 14` here.
@Suite struct CollectorSamplerExamplesTests {
    struct Example: Sendable, CustomStringConvertible {
        var name: String
        var percentage: Double
        var precision = 14
        /// The trace id (the collector's default: randomness 0x80000000000000).
        var traceID = "fefefefefefefefefe80000000000000"
        var traceState = ""
        /// The tracestate each mode leaves on a kept span; nil: not kept.
        var equalizing: String?
        var proportional: String?
        var description: String { name }
    }

    static let examples: [Example] = [
        Example(name: "100 percent", percentage: 100, equalizing: "ot=th:0", proportional: "ot=th:0"),
        Example(name: "50 percent sampled", percentage: 50, equalizing: "ot=th:8", proportional: "ot=th:8"),
        Example(name: "25 percent sampled", percentage: 25, traceID: "ddddddddddddddddddc0000000000000", equalizing: "ot=th:c", proportional: "ot=th:c"),
        Example(name: "25 percent unsampled", percentage: 25, traceID: "ddddddddddddddddddb0000000000000"),
        // Upper case rv passes through, is not generated.
        Example(name: "1 percent sampled", percentage: 1, traceState: "ot=rv:FD70A3D70A3D71",
                equalizing: "ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71", proportional: "ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71"),
        Example(name: "1 percent sampled with rvalue and precision 4", percentage: 1, precision: 4, traceState: "ot=rv:FD70A3D70A3D71",
                equalizing: "ot=rv:FD70A3D70A3D71;th:fd70a", proportional: "ot=rv:FD70A3D70A3D71;th:fd70a"),
        Example(name: "1 percent sampled with rvalue and precision 3", percentage: 1, precision: 3, traceState: "ot=rv:FD70A3D70A3D71"),
        Example(name: "1 percent not sampled with rvalue", percentage: 1, traceState: "ot=rv:FD70A3D70A3D70"),
        Example(name: "49 percent not sampled with default tid", percentage: 49),
        Example(name: "1 percent sampled with rvalue", percentage: 1, traceState: "ot=rv:fd70B000000000",
                equalizing: "ot=rv:fd70B000000000;th:fd70a3d70a3d71", proportional: "ot=rv:fd70B000000000;th:fd70a3d70a3d71"),
        Example(name: "1 percent sampled with tid", percentage: 1, precision: 4, traceID: "a0a0a0a0a0a0a0a0a0fe000000000000",
                equalizing: "ot=th:fd70a", proportional: "ot=th:fd70a"),
        // Proportionally, 50% of 50% is 25%: not sampled. Equalizing, the collector re-serializes
        // the unchanged threshold as th:8; tailgate leaves a span it has nothing to change byte for
        // byte (the one place it differs, on purpose: the README says so).
        Example(name: "incoming 50 percent with rvalue", percentage: 50, traceState: "ot=rv:90000000000000;th:80000000000000",
                equalizing: "ot=rv:90000000000000;th:80000000000000"),
        Example(name: "incoming 50 percent at 25 percent not sampled", percentage: 25, traceState: "ot=th:8"),
        Example(name: "incoming 50 percent at 25 percent sampled", percentage: 25, traceID: "ffffffffffffffffffffffffffffffff", traceState: "ot=th:8",
                equalizing: "ot=th:c", proportional: "ot=th:e"),
        Example(name: "equalizing vs proportional", percentage: 50, traceState: "ot=rv:c0000000000000;th:8",
                equalizing: "ot=rv:c0000000000000;th:8", proportional: "ot=rv:c0000000000000;th:c"),
        // R (0.25) below the arriving T (0.5): the span could not have been sampled at th:8; erased.
        Example(name: "inconsistent arriving threshold", percentage: 100, traceState: "ot=rv:40000000000000;th:8",
                equalizing: "ot=rv:40000000000000;th:0", proportional: "ot=rv:40000000000000;th:0"),
        Example(name: "40 percent precision 3 with rvalue", percentage: 40, precision: 3, traceState: "ot=rv:a0000000000000",
                equalizing: "ot=rv:a0000000000000;th:99a", proportional: "ot=rv:a0000000000000;th:99a"),
        Example(name: "arriving 50 percent sampled at 40 percent precision 6 with tid", percentage: 40, precision: 6,
                traceID: "a0a0a0a0a0a0a0a0a0d0000000000000", traceState: "ot=th:8", equalizing: "ot=th:99999a", proportional: "ot=th:cccccd"),
        Example(name: "arriving 50 percent sampled at 40 percent partly sampled", percentage: 40, precision: 3,
                traceID: "a0a0a0a0a0a0a0a0a0b0000000000000", traceState: "ot=th:8", equalizing: "ot=th:99a"),
        Example(name: "arriving 50 percent sampled at 40 percent not sampled", percentage: 40, precision: 3,
                traceID: "a0a0a0a0a0a0a0a0a080000000000000", traceState: "ot=th:8"),
        Example(name: "tiny probability rounding", percentage: 100 * 0x1p-14, traceID: "111111111111111111ffffffffffffff", traceState: "ot=th:fffc",
                equalizing: "ot=th:fffc", proportional: "ot=th:fffffff"),
        // The collector's percentage is a float32: (1 − 8e-7) × 100 is 99.9999237060546875 there.
        Example(name: "almost 100pct sampling", percentage: 99.9999237060546875, precision: 10, traceID: "111111111111111111ffffffffffffff",
                equalizing: "ot=th:00000cccccccd", proportional: "ot=th:00000cccccccd"),
        Example(name: "probability underflow", percentage: 0x1p-4, traceID: "111111111111111111ffffffffffffff", traceState: "ot=th:fffffffffffff8",
                equalizing: "ot=th:fffffffffffff8"),
    ]

    @Test(arguments: examples)
    func decidesAndWritesAsTheCollector(example: Example) throws {
        for mode in ["equalizing", "proportional"] {
            let set = try rules("""
                policies:
                  - {name: p, type: probabilistic, probabilistic: {sampling_percentage: \(example.percentage), mode: \(mode), sampling_precision: \(example.precision)}}
                """)
            let id = try #require(TraceID(hex: example.traceID))
            let trace = try makeTrace([TestSpan(traceState: example.traceState, root: true)], traceID: id, selection: set.selection)
            let expected = mode == "equalizing" ? example.equalizing : example.proportional
            let kept = set.decide(trace, now: 0).isKeep
            #expect(kept == (expected != nil), "\(mode): \(kept ? "kept" : "dropped")")
            guard kept, let expected else { continue }
            let threshold = try #require(set.keptAnnotation(for: trace, keptBy: "p").threshold)
            let written: String
            switch TraceStateThreshold.raise(Substring(example.traceState), to: threshold, randomness: trace.samplingRandomness) {
            case .changed(let text): written = text
            case .unchanged: written = example.traceState
            case .invalid: written = "(invalid)"
            }
            #expect(written == expected, "\(mode)")
        }
    }
}
