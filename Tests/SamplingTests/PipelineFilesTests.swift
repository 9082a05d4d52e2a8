import Foundation
import Sampling
import Testing

/// Every ready rule file in pipelines/ passes `check`.
@Suite struct PipelineFilesTests {
    static let pipelines = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("pipelines")

    @Test func everyRuleFileIsValid() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.pipelines.path).filter { $0.hasSuffix(".yaml") && $0 != "agent-collector.yaml" }
        #expect(files.contains("default.yaml"))
        for file in files {
            let text = try String(contentsOf: Self.pipelines.appendingPathComponent(file), encoding: .utf8)
            #expect(throws: Never.self, "\(file)") { _ = try RuleFile.parse(text, file: file) }
        }
    }
}
