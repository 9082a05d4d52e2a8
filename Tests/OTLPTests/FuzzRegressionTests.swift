import Foundation
import OTLP
import Testing

/// The short, bounded fuzz CI runs as a regression guard (the long runs are libFuzzer's, Fuzz/README.md):
/// the seed corpora in Fuzz/corpus and every reproducer in Fuzz/crashes, then seeded random
/// mutations of them (bit flips, byte overwrites, truncations, splices, varint-heavy runs) through
/// the decoders. Each input must decode or be refused with an error — a crash fails the whole run.
@Suite struct FuzzRegressionTests {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ corpus: String) throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        for folder in ["corpus/\(corpus)", "crashes/\(corpus)"] {
            let url = fuzzDirectory.appendingPathComponent(folder)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { continue }
            for name in names.sorted() { result.append([UInt8](try Data(contentsOf: url.appendingPathComponent(name)))) }
        }
        return result
    }

    /// SplitMix64: deterministic, so a failure reproduces.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    }

    static func mutate(_ input: [UInt8], with others: [[UInt8]], random: inout Random) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + random.below(4)) {
            guard !bytes.isEmpty else { bytes = [UInt8(truncatingIfNeeded: random.next())]; continue }
            switch random.below(6) {
            case 0: bytes[random.below(bytes.count)] ^= UInt8(1 << random.below(8))
            case 1: bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            case 2: bytes.removeSubrange(random.below(bytes.count)...)
            case 3:
                let other = others[random.below(others.count)]
                guard !other.isEmpty else { continue }
                let start = random.below(other.count)
                bytes.insert(contentsOf: other[start..<min(other.count, start + 1 + random.below(64))], at: random.below(bytes.count))
            case 4: bytes.insert(contentsOf: Array(repeating: 0xFF, count: 1 + random.below(10)), at: random.below(bytes.count))
            default:
                let at = random.below(bytes.count)
                bytes.removeSubrange(at..<min(bytes.count, at + 1 + random.below(16)))
            }
        }
        return bytes
    }

    func run(_ corpus: String, encoding: OTLPEncoding, iterations: Int, seed: UInt64) throws {
        let seeds = try Self.inputs(corpus)
        try #require(!seeds.isEmpty, "no seed corpus in Fuzz/corpus/\(corpus)")
        var random = Random(state: seed)
        var decoded = 0
        var refused = 0
        let selection = AttributeSelection(keys: ["http.route", "http.response.status_code", "user.id"])
        for iteration in 0..<(seeds.count + iterations) {
            let input = iteration < seeds.count ? seeds[iteration] : Self.mutate(seeds[random.below(seeds.count)], with: seeds, random: &random)
            var batch = SpanBatch(selection: selection)
            do {
                _ = try SpanDecoder(encoding: encoding).decode(input, into: &batch)
                decoded += 1
                for span in batch.spans {
                    var trace = TraceData(traceID: span.traceID)
                    trace.append(span, from: batch, batchGeneration: 1)
                    _ = trace.name(of: trace.spans[0])
                    _ = trace.exportRequest()
                }
            } catch {
                refused += 1
                // A located error: where in the input, within it, and what was wrong.
                #expect(error.byteOffset >= 0 && error.byteOffset <= input.count, "offset \(error.byteOffset) of \(input.count) bytes")
                #expect(!error.detail.isEmpty)
                #expect(error.description.hasPrefix("\(error.reason.rawValue) at byte \(error.byteOffset)"))
            }
        }
        // Both outcomes happen: the mutations reach past the first byte checks.
        #expect(decoded > 0 && refused > 0, "decoded \(decoded), refused \(refused)")
    }

    @Test func protobufDecoderSurvivesMutations() throws {
        try run("protobuf", encoding: .otlpProto, iterations: 20_000, seed: 1)
    }

    @Test func jsonDecoderSurvivesMutations() throws {
        try run("json", encoding: .otlpJSON, iterations: 3_000, seed: 2)
    }
}
