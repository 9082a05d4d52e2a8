import Foundation
import Testing

/// The committed fixtures are exactly what the OpenTelemetry SDK script produces (pinned versions in
/// Tests/Fixtures/requirements.txt, installed by .ci/run), so nobody hand-edits an "SDK-made" byte.
@Suite struct FixtureReproducibilityTests {
    static let sdkAvailable: Bool = {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", "-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.common"]
        check.standardOutput = FileHandle.nullDevice
        check.standardError = FileHandle.nullDevice
        do {
            try check.run()
            check.waitUntilExit()
            return check.terminationStatus == 0
        } catch {
            return false
        }
    }()

    /// CI installs the SDK (.ci/run), so there a missing SDK is a failure, not a skip.
    static let inCI = ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "false" } ?? false

    @Test(.enabled(if: sdkAvailable || inCI, "needs python3 with the packages of Tests/Fixtures/requirements.txt"), .timeLimit(.minutes(10)))
    func fixturesRegenerateByteForByte() throws {
        try #require(Self.sdkAvailable, "CI=true but python3 cannot import the OpenTelemetry SDK: pip install -r Tests/Fixtures/requirements.txt")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-fixtures-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let script = Fixtures.directory.appendingPathComponent("make_fixtures.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, "--out", out.path]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(names.count == 10)
        for name in names {
            let regenerated = try Data(contentsOf: out.appendingPathComponent(name))
            let committed = try Data(contentsOf: Fixtures.directory.appendingPathComponent(name))
            #expect(regenerated == committed, "\(name) differs from what make_fixtures.py produces")
        }
    }
}
