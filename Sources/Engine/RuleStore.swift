import Foundation
public import Logging
public import Sampling
import Synchronization

/// The running rules, swapped whole on reload. Shards read the current set once per cycle.
/// Reload sources: a change of the file (a ConfigMap's `..data` symlink swap included), SIGHUP, and
/// `POST /-/reload`. An invalid file never replaces the running rules.
public final class RuleStore: Sendable {
    public let path: String?
    private let current: Mutex<RuleSet>
    private let fingerprint: Mutex<FileFingerprint?>
    private let metrics: SamplingMetrics
    private let logger: Logger
    private let stopWatching = Atomic<Bool>(false)
    private let lastErrorText = Mutex<String?>(nil)
    /// One reload at a time (SIGHUP, `POST /-/reload` and the file watcher can ask at once): each reads
    /// the file when its turn comes, so the newest content is what ends up in force — never an older
    /// parse finishing last.
    private let reloading = Mutex(())

    /// Why the last reload was refused (nil after a successful one).
    public var lastError: String? { lastErrorText.withLock { $0 } }

    /// Loads `path` (throws the located errors if it is invalid: the engine does not start).
    /// `requiredKeys`: attributes the decoder must extract whatever the rules say (span metrics).
    public init(
        path: String?, metrics: SamplingMetrics, logger: Logging.Logger, fallback: RuleSet, requiredKeys: [String] = []
    ) throws(RuleFileErrors) {
        self.path = path
        self.metrics = metrics
        self.logger = logger
        let initial =
            try path.map { (path) throws(RuleFileErrors) in try RuleLoader.load(path, requiredKeys: requiredKeys) }
            ?? (requiredKeys.allSatisfy(fallback.selection.keys.contains)
                ? fallback
                : RuleSet(configuration: fallback.configuration, hash: fallback.hash, requiredKeys: requiredKeys))
        current = Mutex(initial)
        fingerprint = Mutex(path.flatMap(FileFingerprint.init(path:)))
        metrics.recordReload(success: true, at: Date().timeIntervalSince1970, hash: initial.hash, policies: initial.policies.count)
    }

    public var rules: RuleSet { current.withLock { $0 } }

    /// Reloads now; returns whether the new rules are in force.
    @discardableResult
    public func reload(reason: String) -> Bool {
        guard let path else { return false }
        return reloading.withLock { _ in load(path, reason: reason) }
    }

    private func load(_ path: String, reason: String) -> Bool {
        let previous = rules
        let newFingerprint = FileFingerprint(path: path)
        do {
            let next = try RuleLoader.load(path, previous: previous)
            current.withLock { $0 = next }
            fingerprint.withLock { $0 = newFingerprint }
            metrics.recordReload(success: true, at: Date().timeIntervalSince1970, hash: next.hash, policies: next.policies.count)
            lastErrorText.withLock { $0 = nil }
            logger.info("rules reloaded", metadata: ["reason": "\(reason)", "hash": "\(next.hash)", "policies": "\(next.policies.count)"])
            return true
        } catch {
            // Remember the bad file's fingerprint so it is not retried every second; a new edit retries.
            fingerprint.withLock { $0 = newFingerprint }
            metrics.recordReload(success: false, at: 0, hash: "", policies: 0)
            lastErrorText.withLock { $0 = error.description }
            logger.error("rule file refused; the previous rules stay in force (hash \(previous.hash))\n\(error.description)")
            return false
        }
    }

    /// Checks the file for a change; reloads if it changed.
    public func checkForChange() {
        guard let path else { return }
        let now = FileFingerprint(path: path)
        let changed = fingerprint.withLock { $0 != now }
        if changed && now != nil { reload(reason: "file changed") }
    }

    /// Polls the file every `interval` on a background thread (catches in-place edits, renames and
    /// Kubernetes' atomic symlink swaps alike, with no inotify subtleties).
    public func watch(interval: Duration = .seconds(1)) {
        guard path != nil else { return }
        let thread = Thread { [self] in
            while !stopWatching.load(ordering: .relaxed) {
                Thread.sleep(forTimeInterval: interval.timeInterval)
                checkForChange()
            }
        }
        thread.name = "tailgate-rules"
        thread.start()
    }

    public func stop() { stopWatching.store(true, ordering: .relaxed) }
}

/// What identifies a version of a file behind any chain of symlinks: the resolved target's path,
/// inode, size and modification time (a ConfigMap update swaps `..data` to a new directory, so the
/// resolved path changes even when size and time do not).
struct FileFingerprint: Equatable, Sendable {
    var resolvedPath: String
    var inode: UInt64
    var size: Int64
    var modified: Int64

    init?(path: String) {
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var info = stat()
        guard stat(resolved, &info) == 0 else { return nil }
        resolvedPath = resolved
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        #if os(Linux)
        modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        #else
        modified = Int64(info.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(info.st_mtimespec.tv_nsec)
        #endif
    }
}
