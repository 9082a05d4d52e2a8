import Foundation
import Testing

/// The README's two commands on a fresh Debian machine, simulated: `scripts/setup` runs against fake
/// `apt-get`, `dpkg-query`, `id` and `sudo` on a PATH that has nothing else of the system's
/// package tools, as root in a container without sudo, as a user with sudo, and as a user without
/// it; the fake apt-get refuses to install until its package lists were updated, as a fresh image
/// does ("Unable to locate package").
@Suite struct QuickStartTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The README's fenced `sh` blocks of the quick start, in order.
    func quickStartCommands() throws -> [String] {
        let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "## Quick start"))
        let section = readme[start.upperBound...].prefix { _ in true }
        let end = section.range(of: "\n## ")?.lowerBound ?? section.endIndex
        return section[..<end].components(separatedBy: "```sh\n").dropFirst().map { String($0.prefix { $0 != "`" }).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    @Test func theREADMEsTwoCommandsSetUpFirstAndCIRunsTheSecond() throws {
        let commands = try quickStartCommands()
        try #require(commands.count >= 2, "\(commands)")
        #expect(commands[0] == "scripts/setup && swift run -c release tailgate demo --duration 30s")
        #expect(commands[1] == "scripts/setup --tests && swift test && Benchmarks/Gate/gate.sh")
        let ci = try String(contentsOf: Self.repository.appendingPathComponent(".ci/run"), encoding: .utf8)
        #expect(ci.split(separator: "\n").last.map(String.init) == commands[1], ".ci/run runs exactly the README's test command")
    }

    struct Outcome {
        var status: Int32
        var stderr: String
        var calls: [String]
    }

    /// Runs scripts/setup with fake system tools: `uid` for `id -u`, `sudo` on the PATH or not,
    /// `installed` for what dpkg-query reports.
    func setup(uid: Int, sudo: Bool, installed: Bool = false) throws -> Outcome {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-setup-\(UUID().uuidString)")
        let bin = root.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let log = root.appendingPathComponent("calls.log").path
        let updated = root.appendingPathComponent("updated").path
        func tool(_ name: String, _ body: String) throws {
            let path = bin.appendingPathComponent(name).path
            try "#!/bin/bash\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        }
        try tool("id", "echo \(uid)")
        try tool("dpkg-query", installed ? "echo -n 'install ok installed'" : "exit 1")
        try tool("apt-get", """
            echo "apt-get $*" >> \(log)
            case " $* " in
              *" update "*) touch \(updated) ;;
              *" install "*) [[ -e \(updated) ]] || { echo "E: Unable to locate package librdkafka-dev" >&2; exit 100; } ;;
            esac
            """)
        if sudo { try tool("sudo", "echo \"sudo $1\" >> \(log)\nexec \"$@\"") }
        // The rest of what the script uses, and nothing else of the system's.
        for name in ["bash", "env", "grep", "dirname", "sed", "touch", "cat"] {
            let real = ["/usr/bin/\(name)", "/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
            try FileManager.default.createSymbolicLink(atPath: bin.appendingPathComponent(name).path, withDestinationPath: try #require(real))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [Self.repository.appendingPathComponent("scripts/setup").path]
        process.environment = ["PATH": bin.path, "HOME": root.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let calls = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        return Outcome(status: process.terminationStatus, stderr: stderr, calls: calls)
    }

    @Test func rootWithoutSudoOnAnImageWithEmptyPackageLists() throws {
        let outcome = try setup(uid: 0, sudo: false)
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.calls.count == 2 && outcome.calls[0].hasPrefix("apt-get update"), "\(outcome.calls)")
        #expect(outcome.calls.last?.contains("install -y -qq --no-install-recommends librdkafka-dev libzstd-dev zlib1g-dev pkg-config") == true)
    }

    @Test func aUserWithSudo() throws {
        let outcome = try setup(uid: 1000, sudo: true)
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.calls == [
            "sudo env", "apt-get update -qq",
            "sudo env", "apt-get install -y -qq --no-install-recommends librdkafka-dev libzstd-dev zlib1g-dev pkg-config",
        ])
    }

    @Test func aUserWithoutSudoIsToldWhatRootMustInstall() throws {
        let outcome = try setup(uid: 1000, sudo: false)
        #expect(outcome.status == 1)
        #expect(outcome.calls.isEmpty)
        #expect(outcome.stderr.contains("not root and has no sudo") && outcome.stderr.contains("apt-get install -y --no-install-recommends librdkafka-dev"))
    }

    @Test func nothingToDoWhenEverythingIsInstalled() throws {
        let outcome = try setup(uid: 1000, sudo: false, installed: true)
        #expect(outcome.status == 0 && outcome.calls.isEmpty, "\(outcome)")
    }
}
