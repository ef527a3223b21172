#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A small process between the daemon and the application
/// (`replfsd app-watchdog`), so that the application never outlives the
/// lease or escapes supervision, whatever the daemon's threads do.
///
/// The daemon may be frozen (SIGSTOP, a wedged mount) while its lease runs
/// out and another node starts the application; nothing that depends on the
/// daemon's threads can stop it then. The watchdog is a process of its own:
///
/// - It reads the lease deadline every 20 ms from `DATA/lease-deadline`
///   (CLOCK_MONOTONIC nanoseconds, written by the daemon at each renewal,
///   see ``LeaseDeadlineFile``) and kills the whole tree with SIGKILL the
///   moment it passes: before the lease can expire at the coordinator,
///   since the deadline keeps a margin.
/// - It is a child subreaper, and stops the *whole tree*, found through
///   `/proc`: a child that called `setsid` or double-forked is still its
///   descendant (or, orphaned, its child).
/// - SIGTERM (the daemon stopping the application) is passed to every
///   descendant, then SIGKILL after `stopTimeout`; but if the deadline has
///   passed (the node lost its lease) the tree gets SIGKILL at once. If the daemon dies
///   (SIGHUP, its parent-death signal) the tree is killed at once.
/// - When the application exits by itself, what it left is killed and the
///   watchdog exits with its status (exit code, or 128 + signal), so the
///   supervisor's restart logic sees the application's own exit.
public struct ApplicationWatchdog {
    public var command: [String]
    public var deadlineFile: String
    public var stopTimeout: Duration
    /// The daemon's pid: if the parent is already someone else, it died.
    public var daemon: pid_t

    static let tick = Duration.milliseconds(20)

    public init(command: [String], deadlineFile: String, stopTimeout: Duration, daemon: pid_t) {
        self.command = command
        self.deadlineFile = deadlineFile
        self.stopTimeout = stopTimeout
        self.daemon = daemon
    }

    /// Runs the application until it and its descendants are gone; returns
    /// the exit code for the watchdog.
    public func run() -> Int32 {
        _ = Syscall.setParentDeathSignal(SIGHUP)
        guard Syscall.parentProcess() == daemon else { return 125 }
        _ = Syscall.becomeChildSubreaper()
        _ = Syscall.blockWatchdogSignals()
        let me = Syscall.currentProcess()
        // Started just as the lease ran out (or writes stopped): not at all.
        if LeaseDeadlineFile.hasPassed(deadlineFile) {
            report("the lease deadline has passed: not starting the application")
            return 137
        }
        let environment = ProcessInfo.processInfo.environment
        let application: pid_t
        switch Syscall.spawn(command, environment: environment, searchPath: environment["PATH"] ?? Supervisor.defaultSearchPath) {
        case .success(let pid): application = pid
        case .failure(let error):
            report("cannot run \(command[0]): \(error)")
            return 127
        }
        var exit: ExitStatus?
        var killAt: ContinuousClock.Instant?
        while true {
            switch Syscall.waitForWatchdogSignal(timeout: Self.tick) {
            case SIGTERM, SIGINT:
                // A node that lost its lease stops its application at once:
                // the new primary's may already run.
                if LeaseDeadlineFile.hasPassed(deadlineFile) {
                    report("stopping the application after the lease was lost: SIGKILL to its tree")
                    return killTree(me, code: 137)
                }
                if killAt == nil {
                    signalTree(me, SIGTERM)
                    killAt = .now + stopTimeout
                }
            case SIGHUP:
                report("replfsd is gone: killing the application")
                return killTree(me, code: 137)
            default:
                break
            }
            while let reaped = Syscall.reapAnyChild() {
                if reaped.pid == application { exit = reaped.status }
            }
            if Syscall.parentProcess() != daemon {
                report("replfsd is gone: killing the application")
                return killTree(me, code: 137)
            }
            if LeaseDeadlineFile.hasPassed(deadlineFile) {
                report("the lease deadline passed without a renewal (replfsd is not running?): killing the application")
                return killTree(me, code: 137)
            }
            if let killAt, ContinuousClock.now >= killAt { signalTree(me, SIGKILL) }
            if let exit {
                // The application is gone; what it left must not run on.
                let rest = Syscall.descendants(of: me)
                if rest.isEmpty { return exit.code }
                if killAt == nil { signalTree(me, SIGKILL) }
            }
        }
    }

    private func signalTree(_ root: pid_t, _ signal: Int32) {
        for pid in Syscall.descendants(of: root) { _ = Syscall.signal(process: pid, signal) }
    }

    /// SIGKILL to every descendant until none is left (reaping them).
    private func killTree(_ root: pid_t, code: Int32) -> Int32 {
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let rest = Syscall.descendants(of: root)
            while Syscall.reapAnyChild() != nil {}
            if rest.isEmpty { return code }
            for pid in rest { _ = Syscall.signal(process: pid, SIGKILL) }
            usleep(5_000)
        }
        return code
    }

    private func report(_ message: String) {
        Syscall.writeLine(toStandardError: "replfsd app-watchdog: \(message)")
    }
}
