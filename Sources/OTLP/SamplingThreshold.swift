

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

    /// Parses a `th` value: 1 to 14 lowercase hex digits, the missing trailing digits zero.
    public init?(encoded text: Substring) {
        guard (1...14).contains(text.utf8.count) else { return nil }
        var value: UInt64 = 0
        for byte in text.utf8 {
            guard let digit = hexDigit(byte) else { return nil }
            value = value << 4 | UInt64(digit)
        }
        self.value = value << (4 * UInt64(14 - text.utf8.count))
    }

    /// The threshold for sampling probability `probability` (in [2^-56, 1]), encoded with
    /// `precision` significant hex digits, raised by the leading `0`s or `f`s as the specification's
    /// algorithm does (so 1-in-a-million keeps its precision), rounded to nearest.
    public init(probability: Double, precision: Int = 4) {
        self = Self.encodedDigits(probability: probability, precision: precision)
            .flatMap { SamplingThreshold(encoded: Substring($0)) } ?? .alwaysSample
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
    /// the probabilities (the collector's `proportional` mode). Never lower than `self`.
    public func scaled(by p: Double, precision: Int = 4) -> SamplingThreshold {
        guard p < 1 else { return self }
        let combined = SamplingThreshold(probability: max(probability * p, 1 / Double(Self.limit)), precision: precision)
        return max(combined, self)
    }

    public static func < (a: SamplingThreshold, b: SamplingThreshold) -> Bool { a.value < b.value }

    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    /// The specification's conversion (tracestate-probability-sampling, "Converting floating-point
    /// probability to threshold value"), exactly: 2 − p in hex floating point, `precision` digits
    /// after the point (raised for leading 0s or fs), rounded to nearest even, trailing zeros removed.
    static func encodedDigits(probability p: Double, precision: Int) -> String? {
        guard p > 0, p <= 1, p.isFinite else { return nil }
        if p == 1 { return "0" }
        // Go's math.Frexp exponent (fraction in [0.5, 1)) is Swift's exponent + 1; Go's integer
        // division truncates toward zero.
        let expF = Int(p.exponent) + 1
        let expR = Int((1 - p).exponent) + 1
        let digits = min(14, max(precision + (-expF) / 4, precision + (-expR) / 4))
        let x = 2 - p
        guard x < 2 else { return "ffffffffffffff" }
        // x in [1, 2): its 52 fraction bits are 13 hex digits.
        let fraction = x.significandBitPattern
        var value: UInt64
        if digits >= 13 {
            value = fraction << (4 * UInt64(digits - 13))
        } else {
            let shift = UInt64(4 * (13 - digits))
            value = fraction >> shift
            let remainder = fraction & ((1 << shift) - 1)
            let half: UInt64 = 1 << (shift - 1)
            if remainder > half || (remainder == half && value & 1 == 1) { value += 1 }
            let top: UInt64 = 1 << (4 * UInt64(digits))
            if value >= top { value = top - 1 }
        }
        var text = Array(repeating: UInt8(ascii: "0"), count: digits)
        for index in stride(from: digits - 1, through: 0, by: -1) {
            text[index] = hex[Int(value & 0xF)]
            value >>= 4
        }
        while text.last == UInt8(ascii: "0") { text.removeLast() }
        return text.isEmpty ? "0" : String(decoding: text, as: UTF8.self)
    }
}

/// A trace's 56 bits of sampling randomness: the `rv` sub-key of its `ot` tracestate entry when
/// present (14 hex digits), else the trace id's low 56 bits (W3C trace context level 2 random ids).
public struct SamplingRandomness: Sendable, Hashable {
    public let value: UInt64

    public init(value: UInt64) { self.value = value & (SamplingThreshold.limit - 1) }

    /// Parses an `rv` value: exactly 14 hex digits.
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

    /// `tracestate` with `ot=th` at least `threshold` (never lowered): the `th` sub-key replaced in
    /// place (or added first in the `ot` entry), the `ot` entry kept where it is (or added at the
    /// front, as W3C adds new entries); other entries untouched. A threshold of 0 (probability 1)
    /// changes nothing, as the specification requires.
    public static func raise(_ tracestate: Substring, to threshold: SamplingThreshold) -> Outcome {
        guard threshold.value > 0 else { return .unchanged }
        let members = tracestate.isEmpty ? [] : tracestate.split(separator: ",").map { $0.drop { $0 == " " || $0 == "\t" } }
        guard members.count <= 32 else { return .invalid }
        var output: [String] = []
        var found = false
        for member in members {
            guard let equals = member.firstIndex(of: "="), equals != member.startIndex else { return .invalid }
            guard member[..<equals] == "ot" else {
                output.append(String(member))
                continue
            }
            var value = member[member.index(after: equals)...]
            while value.last == " " || value.last == "\t" { value = value.dropLast() }
            guard var entry = OTelTraceState(value: value) else { return .invalid }
            found = true
            if let current = entry.threshold, current >= threshold { return .unchanged }
            let th = Substring(threshold.encoded)
            if let index = entry.fields.firstIndex(where: { $0.key == "th" }) {
                entry.fields[index].value = th
            } else {
                entry.fields.insert(("th", th), at: 0)
            }
            guard entry.value.utf8.count <= 256 else { return .invalid }
            output.append("ot=" + entry.value)
        }
        if !found {
            guard members.count < 32 else { return .invalid }
            output.insert("ot=th:" + threshold.encoded, at: 0)
        }
        return .changed(output.joined(separator: ","))
    }
}

public struct InvalidTraceState: Error, Sendable {}

@inline(__always)
func hexDigit(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
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
    /// spans (the most selective earlier stage), else 0 (sampled with probability 1).
    public var incomingThreshold: SamplingThreshold {
        var highest = SamplingThreshold.alwaysSample
        for span in spans where span.traceState.count > 0 {
            guard let th = withBytes(span.traceState, { TraceStateThreshold.threshold(Substring(decoding: $0, as: UTF8.self)) }) else { continue }
            if span.parentSpanID == .zero { return th }
            highest = max(highest, th)
        }
        return highest
    }
}
