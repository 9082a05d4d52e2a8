import Foundation
public import Logging

/// Waits for a positive signal: `condition` polled every 50 ms until it holds or `timeout` passes;
/// returns whether it held. (Never "nothing happened for a while": wait for what should happen.)
public func waitUntil(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return condition()
}

/// A logger that says nothing (tests that provoke errors on purpose).
public let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
