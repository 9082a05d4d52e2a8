

/// A consistent-probability sampling threshold (OpenTelemetry's OTEP 235, the `th` sub-key of the
/// `ot` tracestate entry): a 56-bit rejection threshold T. A span or trace with randomness R is kept
/// when R ≥ T; the probability is (2^56 − T) / 2^56 and the adjusted count its inverse. T = 0 keeps
/// everything (`th:0`).
public struct SamplingThreshold: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 2^56: one past the largest threshold (a probability of zero, never written).
    public static let limit: UInt64 = 1 << 56
    public static let alwaysSample = SamplingThreshold(unchecked: 0)

    /// T, in 0 ..< 2^56.
    public let value: UInt64

    init(unchecked value: UInt64) { self.value = value }

    /// T from an integer; nil at 2^56 or above.
    public init?(value: UInt64) {
        guard value < Self.limit else { return nil }
        self.value = value
    }

    /// Parses a `th` value: 1 to 14 hex digits, the missing trailing digits zero. Upper case is
    /// accepted as the collector's `pkg/sampling` accepts it (the specification writes lower case,
    /// and tailgate writes nothing else).
    public init?(encoded text: Substring) {
        guard (1...14).contains(text.utf8.count) else { return nil }
        var value: UInt64 = 0
        for byte in text.utf8 {
            guard let digit = hexDigit(byte) else { return nil }
            value = value << 4 | UInt64(digit)
        }
        self.value = value << (4 * UInt64(14 - text.utf8.count))
    }

    /// The threshold for sampling probability `probability` (in [2^-56, 1]) with `precision`
    /// significant hex digits (0: all 14), as the OpenTelemetry Collector's `pkg/sampling` computes it
    /// (`ProbabilityToThresholdWithPrecision`), so tailgate and the collector write the same `th` to
    /// the last digit: T = 2^56 − round(p × 2^56), then rounded half up to the precision, raised by
    /// one digit for each leading hex `0` or `f` of p or 1 − p (1-in-a-million keeps its precision).
    public init(probability: Double, precision: Int = 4) {
        guard probability.isFinite, probability > 0 else {
            self.init(unchecked: Self.limit - 1)
            return
        }
        guard probability < 1 else {
            self = .alwaysSample
            return
        }
        // Go's math.Frexp exponent (fraction in [0.5, 1)) is Swift's exponent + 1; Go's integer
        // division truncates toward zero.
        let requested = precision <= 0 ? 14 : precision
        let expF = Int(probability.exponent) + 1
        let expR = Int((1 - probability).exponent) + 1
        let digits = min(14, max(requested + expF / -4, requested + expR / -4))
        let scaled = UInt64((probability * Double(Self.limit)).rounded(.toNearestOrAwayFromZero))
        var threshold = Self.limit - min(scaled, Self.limit)
        let shift = UInt64(4 * (14 - digits))
        if shift > 0 {
            threshold = ((threshold + (1 << (shift - 1))) >> shift) << shift
        }
        self.init(unchecked: min(threshold, Self.limit - 1))
    }

    /// The `th` value: 14 hex digits with trailing zeros removed (`0` for T = 0).
    public var encoded: String {
        guard value != 0 else { return "0" }
        var digits = Array(repeating: UInt8(ascii: "0"), count: 14)
        var rest = value
        for index in stride(from: 13, through: 0, by: -1) {
            digits[index] = Self.hex[Int(rest & 0xF)]
            rest >>= 4
        }
        while digits.last == UInt8(ascii: "0") { digits.removeLast() }
        return String(decoding: digits, as: UTF8.self)
    }

    public var description: String { "th:\(encoded)" }

    /// (2^56 − T) / 2^56.
    public var probability: Double { Double(Self.limit - value) / Double(Self.limit) }
    /// 2^56 / (2^56 − T): how many spans each kept one stands for.
    public var adjustedCount: Double { Double(Self.limit) / Double(Self.limit - value) }

    /// Whether randomness `r` passes: R ≥ T.
    public func keeps(_ randomness: SamplingRandomness) -> Bool { randomness.value >= value }

    /// This threshold followed by a stage keeping a fraction `p` of what passed it: the product of
    /// the probabilities (the collector's `proportional` mode). Never lower than `self`; nil when the
    /// product is below 2^-56, the smallest probability a threshold can say (nothing is kept then,
    /// as the collector keeps nothing).
    public func scaled(by p: Double, precision: Int = 4) -> SamplingThreshold? {
        guard p < 1 else { return self }
        let product = probability * p
        guard product >= 1 / Double(Self.limit) else { return nil }
        return max(SamplingThreshold(probability: product, precision: precision), self)
    }

    public static func < (a: SamplingThreshold, b: SamplingThreshold) -> Bool { a.value < b.value }

    static let hex: [UInt8] = Array("0123456789abcdef".utf8)
}

/// A trace's 56 bits of sampling randomness: the `rv` sub-key of its `ot` tracestate entry when
/// present (14 hex digits), else the trace id's low 56 bits (W3C trace context level 2 random ids).
public struct SamplingRandomness: Sendable, Hashable {
    public let value: UInt64

    public init(value: UInt64) { self.value = value & (SamplingThreshold.limit - 1) }

    /// Parses an `rv` value: exactly 14 hex digits (upper case accepted, as the collector does).
    public init?(encoded text: Substring) {
        guard text.utf8.count == 14 else { return nil }
        var value: UInt64 = 0
        for byte in text.utf8 {
            guard let digit = hexDigit(byte) else { return nil }
            value = value << 4 | UInt64(digit)
        }
        self.value = value
    }

    public init(traceID: TraceID) { self.init(value: traceID.low) }
}

/// The `ot` entry of a W3C `tracestate` (OTEP 235): sub-keys `key:value` separated by `;`.
public struct OTelTraceState: Sendable, Equatable {
    /// The sub-keys in order, as written.
    public var fields: [(key: Substring, value: Substring)]

    public static func == (a: OTelTraceState, b: OTelTraceState) -> Bool {
        a.fields.map(\.key) == b.fields.map(\.key) && a.fields.map(\.value) == b.fields.map(\.value)
    }

    /// Parses the value of an `ot` entry; nil when malformed (a sub-key without `:`, an invalid
    /// `th` or `rv`).
    public init?(value: Substring) {
        fields = []
        guard !value.isEmpty else { return }
        for part in value.split(separator: ";", omittingEmptySubsequences: false) {
            guard let colon = part.firstIndex(of: ":"), colon != part.startIndex else { return nil }
            let key = part[..<colon], field = part[part.index(after: colon)...]
            if key == "th" && SamplingThreshold(encoded: field) == nil { return nil }
            if key == "rv" && SamplingRandomness(encoded: field) == nil { return nil }
            fields.append((key, field))
        }
    }

    public var threshold: SamplingThreshold? { fields.first { $0.key == "th" }.flatMap { SamplingThreshold(encoded: $0.value) } }
    public var randomness: SamplingRandomness? { fields.first { $0.key == "rv" }.flatMap { SamplingRandomness(encoded: $0.value) } }

    public var value: String { fields.map { "\($0.key):\($0.value)" }.joined(separator: ";") }
}

/// Reads and rewrites the `ot` entry of a W3C `tracestate` header value, leaving every other entry
/// (and their order) as it was.
public enum TraceStateThreshold {
    /// What `raise` did.
    public enum Outcome: Sendable, Equatable {
        /// The new tracestate.
        case changed(String)
        /// Nothing to change: the incoming threshold is already at or above the new one.
        case unchanged
        /// The tracestate (or its `ot` entry) is malformed, or has no room: left as it came.
        case invalid
    }

    /// The `ot` entry, nil when absent; `.failure` when the tracestate or the entry is malformed.
    public static func otEntry(_ tracestate: Substring) -> Result<OTelTraceState?, InvalidTraceState> {
        guard !tracestate.isEmpty else { return .success(nil) }
        for member in tracestate.split(separator: ",") {
            let trimmed = member.drop { $0 == " " || $0 == "\t" }
            guard let equals = trimmed.firstIndex(of: "="), equals != trimmed.startIndex else { return .failure(InvalidTraceState()) }
            guard trimmed[..<equals] == "ot" else { continue }
            var value = trimmed[trimmed.index(after: equals)...]
            while value.last == " " || value.last == "\t" { value = value.dropLast() }
            guard let entry = OTelTraceState(value: value) else { return .failure(InvalidTraceState()) }
            return .success(entry)
        }
        return .success(nil)
    }

    /// The incoming threshold of a span (nil: none, or malformed).
    public static func threshold(_ tracestate: Substring) -> SamplingThreshold? {
        if case .success(let entry?) = otEntry(tracestate) { return entry.threshold }
        return nil
    }

    /// The randomness of a span: its `rv` when present and valid.
    public static func randomness(_ tracestate: Substring) -> SamplingRandomness? {
        if case .success(let entry?) = otEntry(tracestate) { return entry.randomness }
        return nil
    }

    /// `tracestate` as a sampler that keeps the span at `threshold` leaves it, the way the
    /// collector's probabilistic sampler serializes it: the `ot` entry first (W3C: a modified entry
    /// moves to the front), holding `rv` as it came, then `th`, then its other sub-keys in order;
    /// every other entry untouched, in order. `th` is the arriving one when it is consistent with the
    /// randomness (R ≥ T) and at least `threshold` (never lowered), else `threshold` — an arriving
    /// `th` the span could not have been sampled at is erased, as the collector erases it. `th:0`
    /// (probability 1) is written too. A span whose consistent `th` already says what would be written
    /// is left byte for byte. `randomness`: the trace's, for a span without its own `rv`.
    public static func raise(_ tracestate: Substring, to threshold: SamplingThreshold, randomness: SamplingRandomness? = nil) -> Outcome {
        let members = tracestate.isEmpty ? [] : tracestate.split(separator: ",").map { $0.drop { $0 == " " || $0 == "\t" } }
        guard members.count <= 32 else { return .invalid }
        var others: [Substring] = []
        var entry: OTelTraceState?
        for member in members {
            guard let equals = member.firstIndex(of: "="), equals != member.startIndex else { return .invalid }
            guard member[..<equals] == "ot", entry == nil else {
                others.append(member)
                continue
            }
            var value = member[member.index(after: equals)...]
            while value.last == " " || value.last == "\t" { value = value.dropLast() }
            guard let parsed = OTelTraceState(value: value) else { return .invalid }
            entry = parsed
        }
        guard entry != nil || others.count < 32 else { return .invalid }
        let fields = entry?.fields ?? []
        var arriving = entry?.threshold
        if let th = arriving, let r = entry?.randomness ?? randomness, !th.keeps(r) { arriving = nil }
        let written = max(arriving ?? threshold, threshold)
        // What the span says already: its bytes stay as they came (the collector would re-serialize
        // them, `th:80000000000000` as `th:8`, `rv` before `th`; tailgate keeps spans byte for byte
        // unless it has something to change).
        if let arriving, arriving == written { return .unchanged }
        var parts: [String] = []
        if let rv = fields.first(where: { $0.key == "rv" }) { parts.append("rv:\(rv.value)") }
        parts.append("th:\(written.encoded)")
        for field in fields where field.key != "rv" && field.key != "th" { parts.append("\(field.key):\(field.value)") }
        let ot = parts.joined(separator: ";")
        guard ot.utf8.count <= 256 else { return .invalid }
        let result = (["ot=" + ot] + others.map(String.init)).joined(separator: ",")
        return result == tracestate ? .unchanged : .changed(result)
    }
}

public struct InvalidTraceState: Error, Sendable {}

@inline(__always)
func hexDigit(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

extension TraceData {
    /// The trace's randomness: the first span's valid `rv`, else the trace id's low 56 bits.
    public var samplingRandomness: SamplingRandomness {
        for span in spans where span.traceState.count > 0 {
            if let rv = withBytes(span.traceState, { TraceStateThreshold.randomness(Substring(decoding: $0, as: UTF8.self)) }) { return rv }
        }
        return SamplingRandomness(traceID: traceID)
    }

    /// The threshold the trace arrived with: its root span's `th`, else the highest `th` among its
    /// spans (the most selective earlier stage), else 0 (sampled with probability 1). A `th` the
    /// span could not have been sampled at (its randomness below it) counts as absent: the
    /// collector erases it as inconsistent.
    public var incomingThreshold: SamplingThreshold {
        var highest = SamplingThreshold.alwaysSample
        let traceRandomness = samplingRandomness
        for span in spans where span.traceState.count > 0 {
            let entry = withBytes(span.traceState) { bytes -> OTelTraceState? in
                if case .success(let entry?) = TraceStateThreshold.otEntry(Substring(decoding: bytes, as: UTF8.self)) { return entry }
                return nil
            }
            guard let entry, let th = entry.threshold, th.keeps(entry.randomness ?? traceRandomness) else { continue }
            if span.parentSpanID == .zero { return th }
            highest = max(highest, th)
        }
        return highest
    }
}
