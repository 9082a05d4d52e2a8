import Ingest
import Kafka
import Sampling
import Testing

/// The delivery ledger against a deliberately naive reference: a simulated consumer (partitions,
/// polls, shards with trace windows, decisions in any order, sinks acknowledging in any order,
/// revokes, re-assignments, crashes) tracks the fate of every span, and from that alone — per
/// message, how many of its spans are still undecided or unacknowledged — says which offsets may be
/// committed. The ledger sees only the events the engine would send it.
@Suite struct DeliveryLedgerModelTests {
    /// Thousands of seeded random sequences. Properties checked after every step:
    /// - safety: the ledger never answers past the first message with an outstanding obligation;
    /// - exactness: with every recorded event applied, it answers exactly that message (or the end);
    /// - nothing lost: every committed offset is behind messages whose spans were all dropped or
    ///   acknowledged by every sink at some point (across crashes and rebalances);
    /// - at the end, with everything decided and acknowledged, every lane commits its end and the
    ///   ledger holds nothing.
    /// Rebalance epochs are driven too: rebalances inside a poll (a partition revoked, or revoked and
    /// assigned again, or lost, between the messages librdkafka collects), messages of partitions
    /// this member does not own, lost assignments; a message is processed only under its
    /// partition's current lane, and dropped otherwise (it is read again from the committed offset).
    @Test(arguments: 0..<8) func randomSequencesAgreeWithTheModel(batch: Int) {
        var commits = 0
        var stale = 0
        var rebalances = 0
        var strays = 0
        var gapKinds: [DeliveryLedger.OffsetGap.Kind: Int] = [:]
        for seed in UInt64(batch * 500)..<UInt64(batch * 500 + 500) {
            var simulation = LedgerSimulation(seed: seed)
            simulation.run(steps: 300)
            if let failure = simulation.failure {
                Issue.record("seed \(seed): \(failure)")
                return
            }
            commits += simulation.commitsChecked
            stale += simulation.staleDropped
            rebalances += simulation.rebalancesInsidePolls
            strays += simulation.strayAcknowledgements
            gapKinds.merge(simulation.gapKinds, uniquingKeysWith: +)
        }
        // Every outcome of the gap logic is reached: checked (refetch), covered by a re-read under
        // way (extended), looked at again (again), filled (refetched), let go after two looks
        // (absent), the topic's own (accepted).
        for kind in [DeliveryLedger.OffsetGap.Kind.refetch, .extended, .again, .refetched, .absent, .accepted] {
            #expect((gapKinds[kind] ?? 0) > 10, "gaps ending \(kind): \(gapKinds[kind] ?? 0)")
        }
        #expect(strays > 500, "duplicate and stray acknowledgements happen: \(strays)")
        #expect(commits > 5_000, "the sequences commit often enough to test something")
        #expect(rebalances > 500 && stale > 200, "rebalances inside polls happen and leave stale messages: \(rebalances), \(stale)")
    }

    /// With `refetchesGaps` off (a client that never skips a message) the same sequences hold: the
    /// only gaps are the transactional partitions' commit markers, each accepted at once and never
    /// read again, and every safety and exactness property of the sequences above still holds.
    @Test(arguments: 0..<2) func withoutRefetchingEveryGapIsAcceptedAndTheModelAgrees(batch: Int) {
        var gapKinds: [DeliveryLedger.OffsetGap.Kind: Int] = [:]
        var commits = 0
        for seed in UInt64(10_000 + batch * 500)..<UInt64(10_000 + batch * 500 + 500) {
            var simulation = LedgerSimulation(seed: seed, refetchesGaps: false)
            simulation.run(steps: 300)
            if let failure = simulation.failure {
                Issue.record("seed \(seed): \(failure)")
                return
            }
            commits += simulation.commitsChecked
            gapKinds.merge(simulation.gapKinds, uniquingKeysWith: +)
        }
        #expect((gapKinds[.accepted] ?? 0) > 100, "markers make gaps: \(gapKinds)")
        #expect(gapKinds.keys.allSatisfy { $0 == .accepted }, "nothing but accepted: \(gapKinds)")
        #expect(commits > 1_000)
    }

    /// The field report: a trace without a root, decided at `decision_wait` while the sink is down,
    /// behind more than 64 later traces also waiting for the sink. The commit must stay at its offset
    /// however the later ones are acknowledged.
    @Test func outOfOrderDecisionsDuringASinkOutageHoldTheOldestOffset() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0)
        let positions = (0..<300).map { SourcePosition(lane: 0, offset: Int64($0)) }
        ledger.dispatch(poll: 1, messages: positions, shards: 1)
        for position in positions { ledger.hold(position) }
        ledger.inserted(poll: 1)
        // Traces with roots are decided after 2 s, in offset order, except offset 5 (no root: 10 s).
        var token: UInt64 = 0
        for position in positions where position.offset != 5 {
            token += 1
            ledger.deliver(.init(token), [position])
        }
        #expect(ledger.committable(0) == 0)
        // The receiver is back for everything decided so far: acknowledged newest first.
        for t in stride(from: token, through: 1, by: -1) { ledger.acknowledge(.init(t), sink: 0) }
        #expect(ledger.committable(0) == 5, "the rootless trace at offset 5 is undecided")
        // Now it is decided, kept, and the receiver refuses again: still held.
        ledger.deliver(.init(1000), [positions[5]])
        #expect(ledger.committable(0) == 5)
        ledger.acknowledge(.init(1000), sink: 0)
        #expect(ledger.committable(0) == 300)
        #expect(ledger.size.total == 0)
    }

    /// A delivery that holds no position (nothing of it is uncommitted) completes like any other: it
    /// used to trap on its missing first position.
    @Test func aDeliveryWithoutPositionsCompletes() {
        var ledger = DeliveryLedger(sinks: 2)
        ledger.deliver(.init(7), [SourcePosition]())
        #expect(ledger.acknowledge(.init(7), sink: 0) == nil)
        #expect(ledger.acknowledge(.init(7), sink: 1) == DeliveryLedger.Completed(token: .init(7), note: 0))
        #expect(ledger.size.total == 0)
        // Again for the completed token, and for a token below it that was never delivered: anomalies,
        // and nothing kept for them.
        #expect(ledger.acknowledge(.init(7), sink: 1) == nil)
        #expect(ledger.acknowledge(.init(3), sink: 0) == nil)
        #expect(ledger.anomalies == 2)
        #expect(ledger.size.earlyAcknowledgements == 0)
        // A token above the issuer's last delivery is early: kept until its delivery comes.
        #expect(ledger.acknowledge(.init(8), sink: 0, at: 5) == nil)
        #expect(ledger.size.earlyAcknowledgements == 1)
        ledger.deliver(.init(8), [SourcePosition](), note: 9)
        #expect(ledger.acknowledge(.init(8), sink: 1, at: 6) == DeliveryLedger.Completed(token: .init(8), note: 9, at: 6))
        #expect(ledger.size.total == 0)
    }

    /// Every sink must acknowledge; one sink twice is not two sinks; acknowledgements may come before
    /// the delivery is recorded.
    @Test func everySinkMustAcknowledge() {
        var ledger = DeliveryLedger(sinks: 3)
        ledger.assign(7)
        let position = SourcePosition(lane: 7, offset: 40)
        ledger.dispatch(poll: 1, messages: [position, SourcePosition(lane: 7, offset: 41)], shards: 2)
        ledger.hold(position)
        ledger.inserted(poll: 1)
        #expect(ledger.committable(7) == 40, "one shard has not inserted the poll")
        ledger.inserted(poll: 1)
        #expect(ledger.committable(7) == 40, "the trace holds it")
        ledger.acknowledge(.init(9), sink: 2)  // before the delivery is recorded
        ledger.deliver(.init(9), [position])
        ledger.acknowledge(.init(9), sink: 0)
        ledger.acknowledge(.init(9), sink: 0)
        #expect(ledger.committable(7) == 40, "sink 1 has not acknowledged")
        #expect(ledger.anomalies == 1, "a sink acknowledging twice is counted")
        ledger.acknowledge(.init(9), sink: 1)
        #expect(ledger.committable(7) == 42)
        #expect(ledger.size.total == 0)
    }

    /// A revoke releases only the revoked lane: a trace spread over a revoked and a kept partition
    /// keeps holding the kept one until it is decided and acknowledged.
    @Test func revokeReleasesOnlyTheRevokedLane() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0)
        ledger.assign(1)
        let a = SourcePosition(lane: 0, offset: 10)
        let b = SourcePosition(lane: 1, offset: 20)
        ledger.dispatch(poll: 1, messages: [a, b], shards: 1)
        ledger.hold(a)
        ledger.hold(b)
        ledger.inserted(poll: 1)
        #expect(ledger.revoke(0) == 10, "the revoked partition commits only up to its undecided trace")
        #expect(ledger.committable(1) == 20)
        ledger.deliver(.init(1), [a, b])
        #expect(ledger.committable(1) == 20)
        ledger.acknowledge(.init(1), sink: 0)
        #expect(ledger.committable(1) == 21)
        #expect(ledger.committable(0) == nil, "a revoked lane has no answer")
        #expect(ledger.size.total == 0)
    }

    /// A message the client never delivered (librdkafka 2.0 skips some in cooperative rebalances) is
    /// an obligation until the consumer, sent back, delivers it; offsets that do not exist
    /// (compacted or transactional topics) are let go after two looks (below).
    /// With `refetchesGaps` off every gap is accepted at once, never read again.
    @Test func gapsAreAcceptedWhenNotRefetched() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.refetchesGaps = false
        ledger.assign(0, committed: 10)
        let gaps = ledger.dispatch(poll: 1, messages: [10, 11, 13, 14, 16].map { SourcePosition(lane: 0, offset: $0) }, shards: 1)
        ledger.inserted(poll: 1)
        #expect(gaps.map(\.kind) == [.accepted, .accepted], "markers at 12 and 15")
        #expect(ledger.committable(0) == 17)
    }

    /// Going back for a gap delivers the messages after it again: those are repeats (already in a
    /// window), the gap's own offsets are not.
    @Test func messagesReadAgainForAGapAreRepeats() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0, committed: 10)
        ledger.suspectSkips(sincePoll: 1)  // a rebalance inside the first poll: its gaps are checked
        func at(_ offset: Int64) -> SourcePosition { SourcePosition(lane: 0, offset: offset) }
        #expect(!ledger.isRepeat(at(10)), "nothing received yet")
        #expect(ledger.dispatch(poll: 1, messages: [at(10), at(11), at(14)], shards: 1).map(\.kind) == [.refetch])
        ledger.inserted(poll: 1)
        #expect(ledger.isRepeat(at(10)) && ledger.isRepeat(at(11)), "received before the gap")
        #expect(!ledger.isRepeat(at(12)) && !ledger.isRepeat(at(13)), "the gap's offsets are new")
        #expect(ledger.isRepeat(at(14)), "received after the gap, delivered again by the refetch")
        #expect(!ledger.isRepeat(at(15)), "beyond everything received")
        #expect(!ledger.isRepeat(SourcePosition(lane: 7, offset: 0)), "an unknown lane")
    }

    @Test func skippedOffsetsAreHeldUntilReadAgain() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0, committed: 10)
        ledger.suspectSkips(sincePoll: 1)  // a rebalance inside the first poll: its gaps are checked
        func poll(_ id: UInt64, _ offsets: [Int64]) -> [DeliveryLedger.OffsetGap.Kind] { ledger.pollLaneZero(id, offsets) }
        #expect(poll(1, [10, 11, 14]) == [.refetch], "12 and 13 skipped")
        #expect(ledger.committable(0) == 12)
        #expect(poll(3, [12]).isEmpty && ledger.committable(0) == 13, "the hold follows the re-read")
        #expect(poll(4, [13, 14, 15]) == [.refetched])
        #expect(ledger.committable(0) == 16)
        // Offsets that are not there: two looks (a re-read can skip too), then let go; a gap of
        // more than one offset is always read again.
        for (round, id) in [(0, UInt64(10)), (1, 20), (2, 30), (3, 40)] {
            let start = Int64(16 + round * 6)
            ledger.suspectSkips(sincePoll: id)  // a rebalance inside the poll
            #expect(poll(id, [start + 5]) == [.refetch])
            #expect(ledger.committable(0) == start)
            #expect(poll(id + 1, [start + 5]) == [.again], "a second look")
            #expect(ledger.committable(0) == start)
            #expect(poll(id + 2, [start + 5]) == [.absent])
            #expect(ledger.committable(0) == start + 6)
        }
        #expect(ledger.size.total == 0)
    }

    /// Gaps are read again only where the client skips: at a lane's first messages after a
    /// rebalance or a resume (and a new lane's first). Elsewhere a gap is the topic's own — the
    /// commit marker a transactional producer such as `tailgate route` leaves after every
    /// transaction — and accepted at once, costing nothing. Learning from the gaps instead (three
    /// absent gaps made a lane accept every gap) is no way to tell: the model test lost a skipped
    /// message to a lane that had learnt to accept one-offset gaps.
    @Test func gapsAreCheckedWhereTheClientSkipsAndAcceptedElsewhere() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0, committed: 0)
        func poll(_ id: UInt64, _ offsets: [Int64]) -> [DeliveryLedger.OffsetGap.Kind] { ledger.pollLaneZero(id, offsets) }
        #expect(poll(1, [2, 3]) == [.refetch], "a new lane's first message: checked")
        #expect(poll(2, [0, 1, 2, 3]) == [.refetched])
        #expect(poll(3, [4, 6, 7]) == [.accepted], "steady state: a marker at 5, accepted")
        #expect(ledger.committable(0) == 8)
        // A rebalance inside poll 4: the messages collected before it clear nothing.
        ledger.suspectSkips(sincePoll: 4)
        #expect(poll(4, [8, 10]) == [.refetch], "suspect: 9 is read again")
        #expect(ledger.committable(0) == 9)
        #expect(poll(5, [10]) == [.again])
        #expect(poll(6, [10]) == [.absent], "two looks: 9 was a marker")
        #expect(ledger.committable(0) == 11)
        #expect(poll(7, [11, 13]) == [.accepted], "a message of a later poll cleared the suspicion: a marker at 12, accepted")
        #expect(ledger.committable(0) == 14)
        #expect(ledger.size.total == 0)
    }

    /// A message skipped again when the consumer reads a gap again gets a second look instead of
    /// being let go (before, the hold moved past it: a second skip lost it).
    @Test func aSecondSkipInAReReadIsReadAgain() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0, committed: 10)
        ledger.suspectSkips(sincePoll: 1)  // a rebalance inside the first poll: its gaps are checked
        func poll(_ id: UInt64, _ offsets: [Int64]) -> [DeliveryLedger.OffsetGap.Kind] { ledger.pollLaneZero(id, offsets) }
        #expect(poll(1, [10, 11, 16]) == [.refetch], "12 to 15 skipped")
        #expect(poll(2, [12, 14, 15, 16]) == [.again], "13 skipped again")
        #expect(ledger.committable(0) == 13)
        #expect(!ledger.isRepeat(SourcePosition(lane: 0, offset: 13)))
        #expect(ledger.isRepeat(SourcePosition(lane: 0, offset: 14)))
        #expect(poll(3, [13, 14]) == [.refetched])
        #expect(ledger.committable(0) == 17)
        #expect(ledger.size.total == 0)
    }

    /// A second skip found before the consumer has gone back for the first is a gap of its own:
    /// the messages between the two, received, stay repeats (before, the first gap was stretched
    /// over them, and they were processed twice).
    @Test func aSecondGapBeforeTheReReadKeepsTheMessagesBetweenAsRepeats() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0, committed: 10)
        ledger.suspectSkips(sincePoll: 1)  // a rebalance inside the first poll: its gaps are checked
        let gaps = ledger.dispatch(poll: 1, messages: [10, 11, 14, 17].map { SourcePosition(lane: 0, offset: $0) }, shards: 1)
        ledger.inserted(poll: 1)
        #expect(gaps.map(\.kind) == [.refetch, .extended])
        #expect(gaps.map(\.from) == [12, 15])
        #expect(ledger.isRepeat(SourcePosition(lane: 0, offset: 14)), "received between the gaps")
        #expect(!ledger.isRepeat(SourcePosition(lane: 0, offset: 15)) && !ledger.isRepeat(SourcePosition(lane: 0, offset: 16)))
        #expect(ledger.committable(0) == 12)
        // The re-read from 12 brings both gaps' messages.
        let again = ledger.dispatch(poll: 2, messages: [12, 13, 14, 15, 16, 17].map { SourcePosition(lane: 0, offset: $0) }, shards: 1)
        ledger.inserted(poll: 2)
        #expect(again.map(\.kind) == [.refetched, .refetched])
        #expect(ledger.committable(0) == 18)
        #expect(ledger.size.total == 0)
    }

    /// The rest of a re-read (messages past the gap, received before) takes no poll hold: the
    /// committable offset never moves back (before, the poll held its lowest offset, a repeat, and the
    /// engine stored that lower offset for commit until the poll was in every window).
    @Test func repeatsDoNotMoveTheCommittableOffsetBack() {
        var ledger = DeliveryLedger(sinks: 1)
        ledger.assign(0, committed: 10)
        ledger.suspectSkips(sincePoll: 1)  // a rebalance inside the first poll: its gaps are checked
        func dispatch(_ id: UInt64, _ offsets: [Int64]) -> [DeliveryLedger.OffsetGap.Kind] {
            ledger.dispatch(poll: id, messages: offsets.map { SourcePosition(lane: 0, offset: $0) }, shards: 1).map(\.kind)
        }
        #expect(dispatch(1, [10, 11, 14, 15, 16]) == [.refetch], "12 and 13 skipped")
        ledger.inserted(poll: 1)
        #expect(ledger.committable(0) == 12)
        #expect(dispatch(2, [12, 13]) == [.refetched])
        ledger.inserted(poll: 2)
        #expect(ledger.committable(0) == 17)
        #expect(dispatch(3, [14, 15, 16]).isEmpty)
        #expect(ledger.committable(0) == 17, "repeats hold nothing, before the poll is in the windows too")
        ledger.inserted(poll: 3)
        #expect(ledger.committable(0) == 17)
        #expect(ledger.size.total == 0)
    }

    /// Memory follows what is pending, not what was processed: 200 000 kept traces with the sink
    /// lagging up to 1 000 behind and one trace held throughout.
    @Test func memoryFollowsWhatIsPending() {
        var ledger = DeliveryLedger(sinks: 2)
        ledger.assign(0)
        var random = SplitMix(seed: 1)
        var unacknowledged: [UInt64] = []
        ledger.dispatch(poll: 0, messages: [SourcePosition(lane: 0, offset: 0)], shards: 1)
        ledger.hold(SourcePosition(lane: 0, offset: 0))  // a stuck trace at the start
        ledger.inserted(poll: 0)
        var peak = 0
        for offset in 1...200_000 {
            let position = SourcePosition(lane: 0, offset: Int64(offset))
            ledger.dispatch(poll: UInt64(offset), messages: [position], shards: 1)
            ledger.hold(position)
            ledger.inserted(poll: UInt64(offset))
            ledger.deliver(.init(UInt64(offset)), [position])
            unacknowledged.append(UInt64(offset))
            while unacknowledged.count > Int(random.next() % 1000) {
                let token = unacknowledged.remove(at: Int(random.next() % UInt64(unacknowledged.count)))
                ledger.acknowledge(.init(token), sink: 0)
                ledger.acknowledge(.init(token), sink: 1)
            }
            peak = max(peak, ledger.size.total)
            if offset % 1000 == 0 { #expect(ledger.committable(0) == 0) }
        }
        #expect(peak <= 1002 * 2, "entries: \(peak)")
        for token in unacknowledged {
            ledger.acknowledge(.init(token), sink: 1)
            ledger.acknowledge(.init(token), sink: 0)
        }
        #expect(ledger.committable(0) == 0)
        ledger.release(SourcePosition(lane: 0, offset: 0))
        #expect(ledger.committable(0) == 200_001)
        #expect(ledger.size.total == 0)
    }
}

/// SplitMix64 (Vigna): deterministic, so a failing seed reproduces.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

/// A consumer in miniature, driving a ``DeliveryLedger`` with the events the engine sends and keeping
/// its own naive account of every span's fate.
struct LedgerSimulation {
    typealias Lane = DeliveryLedger.Lane
    struct SpanRef: Hashable { var lane: Lane; var offset: Int64; var index: Int }
    struct Message { var spans: [Int] }  // trace keys
    struct Work { var poll: UInt64; var spans: [(trace: Int, ref: SpanRef)] }
    /// A buffered trace: its spans, and the positions it holds — its first per lane, and any older one
    /// that comes later (after the consumer went back), as the engine's window does.
    struct WindowTrace {
        var spans: [SpanRef] = []
        var held: [SourcePosition] = []
        mutating func needsHold(_ position: SourcePosition) -> Bool {
            if held.contains(where: { $0.lane == position.lane && $0.offset <= position.offset }) { return false }
            held.append(position)
            return true
        }
    }
    struct Pending { var spans: [SpanRef]; var sinksLeft: Set<Int> }

    var random: SplitMix
    let partitions: Int
    let shards: Int
    let sinks: Int
    var logs: [[Message]]
    var nextTrace = 0
    var openTraces: [Int] = []

    // Kafka's side.
    var readPosition: [Int64]
    var committed: [Int64]
    var laneOf: [Int: Lane] = [:]
    var partitionOf: [Lane: Int] = [:]
    /// Assignment ids, as the consumer numbers them (never 0).
    var nextLane: Lane = 1
    /// The ingest front's lanes: which assignments are current (the rebalance-epoch check).
    var lanes = LaneTable()
    /// Messages handed over under an assignment that had ended inside their poll (dropped, as they
    /// must be), and rebalances that happened inside a poll.
    var staleDropped = 0
    /// Deliveries every sink acknowledged: by the model's count, and as the ledger reported them.
    var modelCompleted: Set<UInt64> = []
    var ledgerCompleted: Set<UInt64> = []
    /// Deliveries whose event reached the ledger (one whose event died in a crash is never reported).
    var recorded: Set<UInt64> = []
    /// Each partition's last ended assignment.
    var endedLane: [Int: Lane] = [:]
    var rebalancesInsidePolls = 0
    var nextPoll: UInt64 = 0
    /// Per shard, its last token: a shard's tokens carry its index in their top 16 bits, as the engine's.
    var nextTokens: [UInt64] = []
    /// Duplicate and stray acknowledgements sent (since the last crash): each must be an anomaly.
    var expectedAnomalies = 0
    var strayAcknowledgements = 0
    /// Completions reported since the last crash, and the shards whose deliveries the ledger has seen.
    var completedSinceCrash: [UInt64] = []
    var issuersSeen: Set<Int> = []

    // The engine under simulation.
    var ledger: DeliveryLedger
    var queues: [[Work]]
    var windows: [[Int: WindowTrace]]
    var decided: [[Int: Bool]]
    var outboxes: [[DeliveryEvent]]
    var pending: [UInt64: Pending] = [:]

    // The reference: per lane, per offset, what is outstanding (spans not done + 1 while its poll is
    // in flight); the end received; and, per partition and offset, whether it was ever complete.
    var outstanding: [Lane: [Int64: Int]] = [:]
    var received: [Lane: Int64] = [:]
    /// Offsets the client skipped and has not delivered since.
    var notDelivered: [Lane: Set<Int64>] = [:]
    var refetching: Set<Lane> = []
    /// Per lane, the ledger's gaps not yet settled (from its reports), and which look the consumer's
    /// current re-read is (1: the first, 2: the second).
    var openGaps: [Lane: Int] = [:]
    var openRanges: [Lane: [Range<Int64>]] = [:]
    /// Partitions whose next read may skip (the first after a rebalance), and whether a poll is
    /// collecting messages (a rebalance then runs inside it).
    var mayskip: Set<Int> = []
    var collecting = false
    /// How the ledger's gaps came out, by kind (to show the model reaches every branch).
    var gapKinds: [DeliveryLedger.OffsetGap.Kind: Int] = [:]
    var looks: [Lane: Int] = [:]
    /// Partitions written by a transactional producer: a commit marker every sixth offset.
    var transactional: [Bool] = []
    func isMarker(_ partition: Int, _ offset: Int64) -> Bool { transactional[partition] && offset % 6 == 5 }
    var finishing = false
    var pollMessages: [UInt64: (remaining: Int, refs: [(Lane, Int64)])] = [:]
    var everComplete: [Set<Int64>]

    var failure: String?
    var commitsChecked = 0
    /// The last steps, for a failure's message.
    var log: [String] = []
    mutating func note(_ line: String) {
        log.append(line)
        if log.count > 12 { log.removeFirst() }
    }

    /// Whether the ledger goes back for gaps; off, the simulated client skips nothing.
    let refetchesGaps: Bool

    init(seed: UInt64, refetchesGaps: Bool = true) {
        self.refetchesGaps = refetchesGaps
        random = SplitMix(seed: seed)
        partitions = 1 + random.below(3)
        shards = 1 + random.below(3)
        sinks = 1 + random.below(3)
        logs = Array(repeating: [], count: partitions)
        var transactional: [Bool] = []
        for _ in 0..<partitions { transactional.append(random.chance(40)) }
        self.transactional = transactional
        readPosition = Array(repeating: 0, count: partitions)
        committed = Array(repeating: 0, count: partitions)
        everComplete = Array(repeating: [], count: partitions)
        ledger = DeliveryLedger(sinks: sinks)
        ledger.refetchesGaps = refetchesGaps
        queues = Array(repeating: [], count: shards)
        windows = Array(repeating: [:], count: shards)
        decided = Array(repeating: [:], count: shards)
        outboxes = Array(repeating: [], count: shards)
        nextTokens = Array(repeating: 0, count: shards)
        for partition in 0..<partitions { assign(partition) }
    }

    mutating func run(steps: Int) {
        for _ in 0..<steps {
            guard failure == nil else { return }
            let roll = random.below(100)
            switch roll {
            case 0..<22: poll()
            case 22..<40: shardWorks(random.below(shards))
            case 40..<55: decideOne()
            case 55..<72: acknowledgeOne()
            case 72..<86: applyOutbox(random.below(shards))
            case 86..<93: commit()
            case 93..<96: revokeOrAssign()
            case 96..<98: if random.chance(40) { crash() }
            default: lateBurst()
            }
            check(exact: outboxes.allSatisfy(\.isEmpty))
        }
        guard failure == nil else { return }
        // Everything decided, acknowledged and applied.
        for partition in 0..<partitions where laneOf[partition] == nil { assign(partition) }
        // The consumer catches up with what it was sent back for (no more skips).
        finishing = true
        for _ in 0..<400 where !refetching.isEmpty { poll() }
        for shard in 0..<shards { while !queues[shard].isEmpty { shardWorks(shard) } }
        for shard in 0..<shards { for trace in Array(windows[shard].keys) { decide(trace, in: shard, keep: random.chance(50)) } }
        for shard in 0..<shards { applyOutbox(shard) }
        for token in Array(pending.keys).sorted() {
            for sink in Array(pending[token]!.sinksLeft) { acknowledge(token, sink: sink) }
        }
        check(exact: true)
        commit()
        for (lane, end) in received where ledger.committable(lane) != end {
            fail("lane \(lane): settled at \(String(describing: ledger.committable(lane))), end \(end)")
        }
        if ledger.size.total != 0 { fail("ledger holds \(ledger.size) with nothing pending") }
        if ledgerCompleted != modelCompleted {
            fail("completions: the ledger reported \(ledgerCompleted.subtracting(modelCompleted).sorted()) the model did not, and missed \(modelCompleted.subtracting(ledgerCompleted).sorted())")
        }
        if ledger.anomalies != expectedAnomalies { fail("\(ledger.anomalies) anomalies, \(expectedAnomalies) stray acknowledgements sent") }
    }

    // MARK: Steps

    /// A message of up to three traces, some of them spread over partitions.
    mutating func message(partition: Int, offset: Int64) -> Message {
        while logs[partition].count <= Int(offset) {
            var spans: [Int] = []
            for _ in 0..<(1 + random.below(3)) {
                if openTraces.isEmpty || random.chance(35) {
                    openTraces.append(nextTrace)
                    nextTrace += 1
                }
                spans.append(openTraces[random.below(openTraces.count)])
            }
            if openTraces.count > 12 { openTraces.removeFirst(random.below(openTraces.count)) }
            logs[partition].append(Message(spans: spans))
        }
        return logs[partition][Int(offset)]
    }

    /// A collected message: its partition, the assignment it was fetched under, its offset.
    struct Collected { var partition: Int; var assignment: Lane; var offset: Int64 }

    /// One poll of the consumer. Messages are collected first, then handed over, as librdkafka's batch
    /// consume does; a rebalance may run in between (a revoke, a partition revoked and assigned again,
    /// a lost assignment): messages collected before it keep the assignment they were fetched under.
    /// A message of a partition this member does not own may come too. Only messages the ingest
    /// front's ``LaneTable`` admits are processed; each must belong to its partition's current lane.
    mutating func poll() {
        guard !laneOf.isEmpty else { return }
        nextPoll += 1
        collecting = true
        var collected: [Collected] = []
        let count = 1 + random.below(4)
        let rebalanceAt = !finishing && random.chance(12) ? random.below(count + 1) : -1
        for index in 0...count {
            if index == rebalanceAt {
                rebalanceInsidePoll()
                if random.chance(30), let unowned = (0..<partitions).first(where: { laneOf[$0] == nil }) {
                    // A message of a partition this member does not own (its last assignment, or none).
                    collected.append(Collected(partition: unowned, assignment: random.chance(50) ? 0 : endedLane[unowned] ?? 0, offset: readPosition[unowned]))
                }
            }
            guard index < count else { break }
            let assigned = laneOf.keys.sorted()
            guard !assigned.isEmpty else { continue }
            let partition = assigned[random.below(assigned.count)]
            let lane = laneOf[partition]!
            // A transactional partition's commit markers: offsets with no message, never delivered.
            while isMarker(partition, readPosition[partition]) {
                everComplete[partition].insert(readPosition[partition])
                readPosition[partition] += 1
            }
            // The client skips where librdkafka does: at a partition's first read after a rebalance
            // (the gap the ledger then checks, with two looks; a look is taken as reliable — were
            // neither, no consumer could tell a skipped offset from one that does not exist).
            let mayskipHere = mayskip.remove(partition) != nil
            if mayskipHere && refetchesGaps && random.chance(50) && !finishing {
                // The client skips a message (librdkafka 2.0 in a cooperative rebalance): outstanding
                // until it is delivered. (A read after going back is taken as reliable: were it not,
                // no consumer could tell a skipped offset from one that does not exist.)
                let skipped = readPosition[partition]
                readPosition[partition] += 1
                note("skip \(lane)@\(skipped)")
                _ = message(partition: partition, offset: skipped)
                if outstanding[lane]?[skipped] == nil && received[lane].map({ skipped >= $0 }) ?? true {
                    outstanding[lane, default: [:]][skipped, default: 0] += 1
                    notDelivered[lane, default: []].insert(skipped)
                }
                continue
            }
            collected.append(Collected(partition: partition, assignment: lane, offset: readPosition[partition]))
            readPosition[partition] += 1
        }
        collecting = false
        var positions: [SourcePosition] = []
        var perShard = Array(repeating: Work(poll: nextPoll, spans: []), count: shards)
        var refs: [(Lane, Int64)] = []
        for entry in collected {
            guard let lane = lanes.admit(entry.assignment) else {
                staleDropped += 1
                note("stale \(entry.partition)#\(entry.assignment)@\(entry.offset) dropped")
                continue
            }
            guard laneOf[entry.partition] == lane else {
                return fail("message \(entry.partition)@\(entry.offset), fetched under assignment \(entry.assignment), processed under lane \(lane); the partition's current lane is \(laneOf[entry.partition].map(String.init) ?? "none")")
            }
            let offset = entry.offset
            let message = message(partition: entry.partition, offset: offset)
            let position = SourcePosition(lane: lane, offset: offset)
            positions.append(position)
            // As the sampling stage does: a message the ledger calls a repeat (delivered again after
            // the consumer went back for a gap) is not processed again. Were a skipped message
            // wrongly called one when it finally comes, its obligation (taken at the skip) would
            // never be discharged, and a commit past it would fail the safety check.
            if ledger.isRepeat(position) {
                note("repeat \(lane)@\(offset) poll \(nextPoll)")
                continue
            }
            note("deliver \(lane)@\(offset) poll \(nextPoll)")
            received[lane] = max(received[lane] ?? 0, offset + 1)
            if notDelivered[lane]?.remove(offset) != nil { outstanding[lane]![offset]! -= 1 }
            outstanding[lane, default: [:]][offset, default: 0] += message.spans.count + 1
            refs.append((lane, offset))
            for (index, trace) in message.spans.enumerated() {
                perShard[trace % shards].spans.append((trace, SpanRef(lane: lane, offset: offset, index: index)))
            }
        }
        for gap in ledger.dispatch(poll: nextPoll, messages: positions, shards: shards) {
            note("gap \(gap)")
            gapKinds[gap.kind, default: 0] += 1
            switch gap.kind {
            case .refetch, .extended:
                openGaps[gap.lane, default: 0] += 1
                openRanges[gap.lane, default: []].append(gap.from..<gap.to)
            case .refetched, .absent:
                openGaps[gap.lane, default: 0] -= 1
                if let index = openRanges[gap.lane]?.firstIndex(of: gap.from..<gap.to) { openRanges[gap.lane]!.remove(at: index) }
                if openGaps[gap.lane] == 0 { refetching.remove(gap.lane) }
            case .again, .accepted: break
            }
            guard gap.kind == .refetch || gap.kind == .again else { continue }
            looks[gap.lane] = gap.kind == .again ? 2 : 1
            refetching.insert(gap.lane)
            // The engine sends the consumer back to the gap.
            if let partition = partitionOf[gap.lane] { readPosition[partition] = gap.from }
        }
        pollMessages[nextPoll] = (shards, refs)
        for shard in 0..<shards { queues[shard].append(perShard[shard]) }
    }

    /// A rebalance callback inside a poll: a partition revoked (and perhaps assigned again at once,
    /// as the eager protocol does), or lost (and perhaps given back).
    mutating func rebalanceInsidePoll() {
        guard let partition = laneOf.keys.sorted().randomElement(using: &random) else { return }
        rebalancesInsidePolls += 1
        note("rebalance inside poll \(nextPoll): partition \(partition)")
        if random.chance(35) { lose(partition) } else { revoke(partition) }
        if random.chance(60) { assign(partition) }
    }

    /// One shard puts its oldest poll in its window, recording events as the engine's shard does.
    mutating func shardWorks(_ shard: Int) {
        guard !queues[shard].isEmpty else { return }
        let work = queues[shard].removeFirst()
        for (trace, ref) in work.spans {
            let position = SourcePosition(lane: ref.lane, offset: ref.offset)
            if windows[shard][trace] != nil {
                if windows[shard][trace]!.needsHold(position) { outboxes[shard].append(.hold(position)) }
                windows[shard][trace]!.spans.append(ref)
            } else if let kept = decided[shard][trace] {
                if kept {
                    // A late span of a kept trace: held until delivered.
                    outboxes[shard].append(.hold(position))
                    let token = newToken(shard)
                    outboxes[shard].append(.deliver(.init(token), position, more: nil))
                    pending[token] = Pending(spans: [ref], sinksLeft: Set(0..<sinks))
                } else {
                    done(ref)
                }
            } else {
                windows[shard][trace] = WindowTrace(spans: [ref], held: [position])
                outboxes[shard].append(.hold(position))
            }
        }
        outboxes[shard].append(.inserted(poll: work.poll))
        if var record = pollMessages[work.poll] {
            record.remaining -= 1
            pollMessages[work.poll] = record.remaining == 0 ? nil : record
            if record.remaining == 0 { for (lane, offset) in record.refs { decrement(lane, offset) } }
        }
    }

    mutating func decideOne() {
        let shard = random.below(shards)
        guard let trace = windows[shard].keys.sorted().randomElement(using: &random) else { return }
        decide(trace, in: shard, keep: random.chance(50))
    }

    mutating func decide(_ trace: Int, in shard: Int, keep: Bool) {
        guard let entry = windows[shard].removeValue(forKey: trace) else { return }
        decided[shard][trace] = keep
        let positions = entry.held
        if keep {
            let token = newToken(shard)
            outboxes[shard].append(.deliver(.init(token), positions[0], more: positions.count > 1 ? Array(positions.dropFirst()) : nil))
            pending[token] = Pending(spans: entry.spans, sinksLeft: Set(0..<sinks))
        } else {
            for position in positions { outboxes[shard].append(.release(position)) }
            for ref in entry.spans { done(ref) }
        }
    }

    /// Sinks answer in any order, straight to the ledger's owner (possibly before the shard's events).
    /// A sink answers twice for a delivery the ledger has completed, or answers for a token no shard
    /// issued (below the shard's last one): counted as anomalies, and nothing is remembered for them.
    mutating func strayAcknowledgement() {
        if random.chance(50), let token = completedSinceCrash.randomElement(using: &random) {
            note("duplicate ack \(token)")
            if ledger.acknowledge(.init(token), sink: random.below(sinks)) != nil { return fail("a duplicate acknowledgement completed \(token) again") }
        } else if let issuer = issuersSeen.sorted().randomElement(using: &random) {
            note("stray ack for shard \(issuer)")
            if ledger.acknowledge(.init(UInt64(issuer) << 48), sink: random.below(sinks)) != nil { return fail("a stray acknowledgement completed something") }
        } else {
            return
        }
        expectedAnomalies += 1
        strayAcknowledgements += 1
    }

    mutating func acknowledgeOne() {
        if random.chance(6) { strayAcknowledgement() }
        guard let token = pending.keys.sorted().randomElement(using: &random) else { return }
        let sink = pending[token]!.sinksLeft.sorted().randomElement(using: &random)!
        acknowledge(token, sink: sink)
    }

    mutating func acknowledge(_ token: UInt64, sink: Int) {
        if let completed = ledger.acknowledge(.init(token), sink: sink) { reportedComplete(completed) }
        pending[token]!.sinksLeft.remove(sink)
        if pending[token]!.sinksLeft.isEmpty {
            modelCompleted.insert(token)
            for ref in pending.removeValue(forKey: token)!.spans { done(ref) }
        }
    }

    mutating func applyOutbox(_ shard: Int) {
        for event in outboxes[shard] {
            if case .deliver(let token, _, _, _) = event {
                recorded.insert(token.raw)
                issuersSeen.insert(Int(token.raw >> 48))
            }
            if let completed = ledger.apply(event) { reportedComplete(completed) }
        }
        outboxes[shard].removeAll()
    }

    /// The ledger says every sink has `completed`: once per delivery, never before the model agrees.
    mutating func reportedComplete(_ completed: DeliveryLedger.Completed) {
        guard ledgerCompleted.insert(completed.token.raw).inserted else { return fail("delivery \(completed.token) reported complete twice") }
        completedSinceCrash.append(completed.token.raw)
        if pending[completed.token.raw].map({ $0.sinksLeft.count > 1 }) ?? false {
            fail("delivery \(completed.token) reported complete with sinks still to answer")
        }
    }

    mutating func commit() {
        for (partition, lane) in laneOf {
            guard let offset = ledger.committable(lane) else { continue }
            verifyCommit(partition: partition, offset: offset)
            committed[partition] = offset
            commitsChecked += 1
        }
    }

    /// A rebalance: one assigned partition is revoked or lost (shards finish what they were sent,
    /// traces only on those partitions are forgotten), or an unassigned one comes back under a new lane.
    mutating func revokeOrAssign() {
        if let partition = (0..<partitions).first(where: { laneOf[$0] == nil }), random.chance(60) {
            assign(partition)
            return
        }
        guard let partition = laneOf.keys.sorted().randomElement(using: &random) else { return }
        if random.chance(25) { lose(partition) } else { revoke(partition) }
    }

    /// A rebalance or a resume, as the engine reports it to the ledger (with the poll the stage would
    /// name: the one being collected, or the next), and where the client may now skip: each
    /// partition's first read after it.
    mutating func rebalanceEvent() {
        ledger.suspectSkips(sincePoll: collecting ? nextPoll : nextPoll + 1)
        mayskip = Set(0..<partitions)
    }

    /// An orderly revoke: the ledger answers what to commit, then forgets the lane. Half the time
    /// with `--on-revoke decide`: the traces only this lane holds are decided now, and the sinks get
    /// a bounded time to acknowledge what is kept — some answer, the rest time out (their offsets
    /// stay uncommitted, and the next owner replays them).
    mutating func revoke(_ partition: Int) {
        guard let lane = laneOf[partition] else { return }
        rebalanceEvent()
        finishSentWork()
        if random.chance(50) {
            note("decide on revoke of lane \(lane)")
            for shard in 0..<shards {
                for trace in windows[shard].keys.sorted() where windows[shard][trace]!.held.allSatisfy({ $0.lane == lane }) {
                    decide(trace, in: shard, keep: random.chance(50))
                }
                applyOutbox(shard)
            }
            for token in Array(pending.keys).sorted() where random.chance(60) {
                for sink in pending[token]!.sinksLeft.sorted() { acknowledge(token, sink: sink) }
            }
        }
        if let offset = ledger.revoke(lane) {
            verifyCommit(partition: partition, offset: offset)
            committed[partition] = offset
        }
        endLane(partition, lane)
    }

    /// A lost assignment: another member may own the partition already; nothing is committed, and the
    /// ledger answers nothing for the lane any more.
    mutating func lose(_ partition: Int) {
        guard let lane = laneOf[partition] else { return }
        rebalanceEvent()
        finishSentWork()
        ledger.lose(lane)
        if let answer = ledger.committable(lane) { fail("lane \(lane) was lost, yet the ledger answers \(answer) for it") }
        endLane(partition, lane)
    }

    mutating func finishSentWork() {
        for shard in 0..<shards { while !queues[shard].isEmpty { shardWorks(shard) } }
        // The engine applies every recorded event before it answers the revoke.
        for shard in 0..<shards { applyOutbox(shard) }
    }

    mutating func endLane(_ partition: Int, _ lane: Lane) {
        lanes.end([PartitionAssignment(TopicPartition("spans", Int32(partition)), id: lane)])
        endedLane[partition] = lane
        laneOf[partition] = nil
        partitionOf[lane] = nil
        refetching.remove(lane)
        openGaps[lane] = nil
        openRanges[lane] = nil
        looks[lane] = nil
        outstanding[lane] = nil
        received[lane] = nil
        notDelivered[lane] = nil
        // Traces with spans of assigned partitions stay (and are decided here); the others go.
        for shard in 0..<shards {
            for (trace, entry) in windows[shard] where entry.held.allSatisfy({ partitionOf[$0.lane] == nil }) {
                windows[shard][trace] = nil
            }
        }
    }

    /// The process dies: everything in memory is gone; the group assigns every partition again and
    /// consumption restarts from the committed offsets.
    mutating func crash() {
        // Acknowledged by every sink, but its delivery event died with the process before the ledger
        // saw it: nothing can report it (its offsets were never committed; it is replayed).
        modelCompleted = modelCompleted.filter { recorded.contains($0) }
        completedSinceCrash = []
        issuersSeen = []
        expectedAnomalies = 0
        ledger = DeliveryLedger(sinks: sinks)
        ledger.refetchesGaps = refetchesGaps
        queues = Array(repeating: [], count: shards)
        windows = Array(repeating: [:], count: shards)
        decided = Array(repeating: [:], count: shards)
        outboxes = Array(repeating: [], count: shards)
        pending = [:]
        outstanding = [:]
        received = [:]
        notDelivered = [:]
        pollMessages = [:]
        laneOf = [:]
        partitionOf = [:]
        lanes = LaneTable()
        refetching = []
        openGaps = [:]
        openRanges = [:]
        looks = [:]
        for partition in 0..<partitions { assign(partition) }
    }

    /// Late spans: more polls in a row, so decided traces see spans again.
    mutating func lateBurst() {
        for _ in 0..<3 { poll() }
        for shard in 0..<shards { shardWorks(shard) }
    }

    // MARK: Reference bookkeeping

    mutating func assign(_ partition: Int) {
        let lane = nextLane
        nextLane += 1
        laneOf[partition] = lane
        partitionOf[lane] = partition
        lanes.assign([PartitionAssignment(TopicPartition("spans", Int32(partition)), id: lane)])
        readPosition[partition] = committed[partition]
        // The engine asks the group where consumption starts: nothing before it is outstanding.
        ledger.assign(lane, committed: committed[partition])
        rebalanceEvent()
        received[lane] = committed[partition]
    }

    mutating func newToken(_ shard: Int) -> UInt64 {
        nextTokens[shard] += 1
        return UInt64(shard) << 48 | nextTokens[shard]
    }

    mutating func done(_ ref: SpanRef) { decrement(ref.lane, ref.offset) }

    mutating func decrement(_ lane: Lane, _ offset: Int64) {
        guard outstanding[lane] != nil, let count = outstanding[lane]![offset] else { return }
        if count == 1 {
            outstanding[lane]![offset] = nil
            if let partition = partitionOf[lane] { everComplete[partition].insert(offset) }
        } else {
            outstanding[lane]![offset] = count - 1
        }
    }

    /// The reference answer: the first message with something outstanding, else the end.
    func reference(_ lane: Lane) -> Int64? {
        var lowest = outstanding[lane]?.keys.min()
        // A marker inside a gap the ledger has open is rightly held: it cannot tell one from a
        // skipped message until it has looked twice.
        if let partition = partitionOf[lane] {
            for range in openRanges[lane] ?? [] {
                if let marker = range.first(where: { isMarker(partition, $0) }) { lowest = min(lowest ?? marker, marker) }
            }
        }
        // Nothing past what was delivered can be known complete: beyond it lie markers the consumer
        // passed (nothing to lose, but nothing a ledger could tell from a skip yet).
        guard let end = received[lane] else { return lowest }
        return min(lowest ?? end, end)
    }

    mutating func check(exact: Bool) {
        for lane in laneOf.values {
            let answer = ledger.committable(lane)
            let truth = reference(lane)
            if let answer, let truth, answer > truth {
                return fail("lane \(lane): ledger says \(answer), but offset \(truth) has an outstanding obligation")
            }
            if answer != nil && truth == nil { return fail("lane \(lane): ledger says \(answer!) before anything was received") }
            if exact && answer != truth {
                return fail("lane \(lane): ledger says \(String(describing: answer)), reference \(String(describing: truth))")
            }
        }
    }

    mutating func verifyCommit(partition: Int, offset: Int64) {
        if offset < committed[partition] { return fail("partition \(partition): commit went back from \(committed[partition]) to \(offset)") }
        for earlier in committed[partition]..<offset where !everComplete[partition].contains(earlier) {
            return fail("partition \(partition): committed \(offset) past offset \(earlier), never completely delivered")
        }
    }

    mutating func fail(_ message: String) {
        if failure == nil { failure = message + "; last steps: " + log.joined(separator: " | ") }
    }
}

extension DeliveryLedger {
    /// The gap tests' poll: `offsets` of lane 0 dispatched to one shard and put in its window at
    /// once; the kinds of the gaps it found.
    mutating func pollLaneZero(_ id: UInt64, _ offsets: [Int64]) -> [OffsetGap.Kind] {
        let gaps = dispatch(poll: id, messages: offsets.map { SourcePosition(lane: 0, offset: $0) }, shards: 1)
        inserted(poll: id)
        return gaps.map(\.kind)
    }
}
