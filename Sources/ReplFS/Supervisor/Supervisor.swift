#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Runs the application (`exec.command`, for example `headscale serve`) while
/// this node is primary, and makes sure it is gone before the node stops
/// being writable.
///
/// Headscale migrates and writes its database as soon as it starts, so it must
/// never run on a replica: the daemon calls ``start()`` after promotion and
/// catch-up, and ``stop()`` before it makes the mount read-only. `stop()`
/// returns only once the process and the rest of its process group are gone.
///
/// The command inherits the daemon's stdin, stdout and stderr (its output
/// passes through to the journal) and its environment plus `environment`. It
/// runs in a process group of its own, so signals reach the children of a
/// `sh -c` script too, and it is killed (SIGKILL) if the daemon dies, even by
/// `kill -9`: the child asks for it with `prctl(PR_SET_PDEATHSIG)` before it
/// execs (see `clinux_spawn`). That signal fires when the *thread* that forked
/// exits, so every supervisor forks from a thread of its own that lives at
/// least as long as the child: it spawns, waits and restarts.
///
/// A command that exits (or cannot be run at all) while wanted is started
/// again after a backoff: 0.5 s, doubling up to 10 s, back to 0.5 s once a
/// run has lasted 10 s. The supervisor makes the daemon a child subreaper
/// (`PR_SET_CHILD_SUBREAPER`), so the orphaned children of the application
/// become the daemon's and are reaped here rather than left as zombies, and
/// `stop()` can tell that the whole group has gone.
///
/// A supervisor keeps running its command until ``stop()``, even if the
/// caller drops its reference. Everything blocks the calling OS thread: call
/// `stop()` from a daemon thread, not from a Swift concurrency task.
public final class Supervisor: Sendable {
    /// The command line (`exec.command`): the program, then its arguments.
    public let command: [String]
    /// What runs the command (``ApplicationWatchdog``'s command line), or
    /// nothing: the command runs directly.
    private let launcher: [String]
    /// How long ``stop()`` lets the application exit after SIGTERM before it
    /// sends SIGKILL (`exec.stop-timeout`).
    public let stopTimeout: Duration
    /// Added to (and overriding) the daemon's own environment.
    private let environment: [String: String]
    /// `exec.ready`: asked while the application runs and has not answered
    /// yet; nil: running counts as ready.
    private let readiness: ReadinessProbe?
    private let logger: Logger
    private let state: Monitor<State>

    /// The first restart delay, and the delay again once a run was stable.
    static let firstDelay = Duration.milliseconds(500)
    /// The longest restart delay.
    static let maxDelay = Duration.seconds(10)
    /// A run that lasted this long was healthy: the backoff starts over.
    static let stableRun = Duration.seconds(10)
    /// How long ``stop()`` waits, after SIGKILL, for the rest of the process
    /// group to disappear before it reports what is left and returns.
    static let killGrace = Duration.seconds(1)
    /// How often exited children of the group are reaped: while the
    /// application runs, and while a stop waits for its group to empty.
    static let reapInterval = Duration.seconds(1)
    static let drainPollInterval = Duration.milliseconds(10)
    /// How often the readiness probe asks, until the application answers.
    static let probeInterval = Duration.milliseconds(100)
    /// How long an application may run unready before it is reported
    /// (then again at this interval).
    static let unreadyReport = Duration.seconds(10)
    /// The PATH searched when neither the daemon nor `environment` has one.
    static let defaultSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// - Parameters:
    ///   - command: the program (looked up in `PATH` if it has no slash) and
    ///     its arguments; must not be empty (the config loader rejects that).
    ///   - stopTimeout: how long `stop()` waits after SIGTERM before SIGKILL.
    ///   - environment: variables added to the daemon's environment.
    ///   - logger: where starts, exits, restarts and stops are reported.
    ///   - readiness: how to tell that the application serves (`exec.ready`).
    public init(
        command: [String], launcher: [String] = [], stopTimeout: Duration, environment: [String: String] = [:], readiness: ReadinessProbe? = nil,
        logger: Logger
    ) {
        precondition(!command.isEmpty, "a supervisor needs a command")
        self.command = command
        self.launcher = launcher
        self.stopTimeout = stopTimeout
        self.environment = environment
        self.readiness = readiness
        self.logger = logger
        self.state = Monitor(State())
    }

    /// What the supervisor is doing now.
    public var status: SupervisorStatus {
        let current = state.value
        let state: SupervisorStatus.State =
            switch current.phase {
            case .idle: .stopped
            case .spawning: .starting
            case .running(let pid, let since): .running(pid: pid, since: since)
            case .exiting(let delay), .backoff(_, let delay): .restarting(after: delay)
            }
        var status = SupervisorStatus(
            state: state, restarts: current.restarts, lastExit: current.lastExit, lastError: current.lastError,
            command: command)
        if case .running = state {
            status.ready = readiness == nil || current.ready
            status.notReady = status.ready ? nil : current.notReady ?? "waiting for \(readiness.map(String.init(describing:)) ?? "it") to answer"
        }
        return status
    }

    /// Wants the command running: spawns it now unless it already runs (or
    /// waits out a restart delay), and restarts it with backoff whenever it
    /// exits while wanted. Idempotent; returns at once.
    public func start() {
        let launch = state.withLock { state -> Bool in
            state.wanted = true
            guard !state.threadRunning else { return false }
            state.threadRunning = true
            return true
        }
        if launch { DetachedThread { self.run() }.start() }
    }

    /// Wants the command stopped: SIGTERM to its process group, SIGKILL to
    /// the group once ``stopTimeout`` has passed, and returns only when the
    /// process has exited and been reaped and its group is empty (so the
    /// caller can make the mount read-only knowing the application is gone).
    ///
    /// Idempotent (a concurrent call waits for the first one); cancels a
    /// pending restart. Blocks for up to `stopTimeout` plus a second.
    ///
    /// Under a launcher (the watchdog) SIGTERM goes to the launcher alone:
    /// it passes SIGTERM on to the application's tree, or, when the lease
    /// deadline has passed (a fenced node), kills the tree at once. Then an
    /// application that lost its lease gets no chance to run a SIGTERM
    /// handler next to the new primary's. With `immediately` and no launcher
    /// the group gets SIGKILL straight away.
    public func stop(immediately: Bool = false) {
        var cancelledRestart = false
        let target = state.wait { state -> Monitor<State>.Step<pid_t?> in
            state.wanted = false
            if state.stopping { return .wait(until: nil) }
            switch state.phase {
            case .idle:
                return .done(nil)
            case .backoff:
                state.phase = .idle
                cancelledRestart = true
                return .done(nil)
            case .spawning, .exiting:
                return .wait(until: nil)  // moments: the thread settles the phase
            case .running(let pid, _):
                // Under the lock: the thread reaps the leader only under it, so
                // `pid` is still this child, not a recycled number.
                state.stopping = true
                if !launcher.isEmpty {
                    _ = Syscall.signal(process: pid, SIGTERM)
                } else {
                    Self.signal(group: pid, immediately ? SIGKILL : SIGTERM, leaderUnreaped: true)
                }
                return .done(pid)
            }
        }
        guard let pid = target else {
            if cancelledRestart { logger.info("\(program) stopped: pending restart cancelled") }
            return
        }
        let how = !launcher.isEmpty ? "SIGTERM to its watchdog" : immediately ? "SIGKILL to its process group" : "SIGTERM to its process group"
        logger.info("stopping \(program) (pid \(pid)): \(how)")
        let deadline = ContinuousClock.now + stopTimeout
        let leaderExited = waitUntilGone(pid, deadline: deadline)
        if !(leaderExited && drain(group: pid, until: deadline)) {
            logger.warning("\(program) (pid \(pid)) or its process group still running \(Self.describe(stopTimeout)) after SIGTERM: SIGKILL to the group")
            state.withLock { state in
                Self.signal(group: pid, SIGKILL, leaderUnreaped: state.phase.holds(pid))
            }
            _ = waitUntilGone(pid, deadline: nil)
            if !drain(group: pid, until: .now + Self.killGrace) {
                logger.error("process group \(pid) of \(program) still has processes \(Self.describe(Self.killGrace)) after SIGKILL")
            }
        }
        let exit = state.withLock { state in
            state.stopping = false
            return state.lastExit
        }
        logger.info("stopped \(program) (pid \(pid), \(exit.map(String.init(describing:)) ?? "status unknown"))")
    }

    // MARK: - The supervising thread

    /// The long-lived thread: spawns, waits for the child, restarts after the
    /// backoff; ends once the command is no longer wanted and not running.
    private func run() {
        if case .failure(let error) = Syscall.becomeChildSubreaper() {
            logger.warning("cannot become a child subreaper (\(error)): orphans of \(program) are left to init")
        }
        while true {
            let spawn = state.wait { state -> Monitor<State>.Step<Bool> in
                guard state.wanted else {
                    state.phase = .idle
                    state.threadRunning = false
                    return .done(false)
                }
                switch state.phase {
                case .idle:
                    break
                case .backoff(let until, _):
                    guard ContinuousClock.now >= until else { return .wait(until: until) }
                    state.restarts += 1
                case .spawning, .running, .exiting:
                    preconditionFailure("only the supervising thread leaves these phases")
                }
                state.phase = .spawning
                return .done(true)
            }
            guard spawn else { return }
            spawnAndWatch()
        }
    }

    /// Runs the command once: on success waits for it to exit (reaping
    /// orphans of its group meanwhile); either way leaves the phase at
    /// `.backoff` if still wanted, else `.idle`.
    private func spawnAndWatch() {
        let environment = ProcessInfo.processInfo.environment.merging(self.environment) { $1 }
        let searchPath = environment["PATH"] ?? Self.defaultSearchPath
        switch Syscall.spawn(launcher + command, environment: environment, searchPath: searchPath) {
        case .failure(let cause):
            let error = SupervisorError(.cannotRun, program: program, cause: cause)
            let delay = state.withLock { state -> Duration? in
                state.lastError = error
                guard state.wanted else {
                    state.phase = .idle
                    return nil
                }
                let delay = state.nextRestartDelay(uptime: .zero)
                state.phase = .backoff(until: .now + delay, delay: delay)
                return delay
            }
            logger.error("\(error)\(delay.map { "; retrying in \(Self.describe($0))" } ?? "")")
        case .success(let pid):
            let since = ContinuousClock.now
            state.withLock { state in
                state.phase = .running(pid: pid, since: since)
                state.lastError = nil
                state.ready = false
                state.notReady = nil
            }
            logger.info("started \(command) (pid \(pid))")
            watch(pid, since: since)
        }
    }

    /// Waits until `pid` (leader of its group) exits, reaps it, and decides
    /// about a restart.
    private func watch(_ pid: pid_t, since: ContinuousClock.Instant) {
        waitForLeader(pid)
        // Reaped under the lock: stop() signals only while the phase still
        // holds this pid, so it never signals a pid that was reused.
        let (exit, delay, wanted) = state.withLock { state -> (ExitStatus?, Duration?, Bool) in
            let exit = try? Syscall.reap(pid).get()
            state.lastExit = exit
            guard state.wanted else {
                state.phase = .idle
                return (exit, nil, false)
            }
            let delay = state.nextRestartDelay(uptime: .now - since)
            state.phase = .exiting(delay: delay)
            return (exit, delay, true)
        }
        let how = exit.map { "(\($0))" } ?? "(status unknown)"
        guard wanted, let delay else {
            logger.info("\(program) (pid \(pid)) exited \(how)")
            return
        }
        logger.warning("\(program) (pid \(pid)) exited \(how) after \(Self.describe(ContinuousClock.now - since)); restarting in \(Self.describe(delay))")
        // The leader died on its own: whatever it left in its group must not
        // run next to the new instance.
        if case .success = Syscall.signal(processGroup: pid, 0) {
            logger.warning("SIGKILL to what \(program) left in its process group \(pid)")
            Self.signal(group: pid, SIGKILL, leaderUnreaped: false)
            if !drain(group: pid, until: .now + Self.killGrace) {
                logger.error("process group \(pid) of \(program) still has processes \(Self.describe(Self.killGrace)) after SIGKILL")
            }
        }
        state.withLock { state in
            guard case .exiting = state.phase else { return }
            state.phase = state.wanted ? .backoff(until: .now + delay, delay: delay) : .idle
        }
    }

    /// Blocks until the leader has exited, without reaping it; meanwhile
    /// reaps the group's other children that exited (orphans re-parented to
    /// the daemon), once a second, and asks the readiness probe until the
    /// application answers.
    private func waitForLeader(_ pid: pid_t) {
        if case .success(let fd) = Syscall.openProcess(pid) {
            defer { Syscall.close(fd) }
            var probe = readiness.map { ReadinessWait(probe: $0, started: .now) }
            while true {
                switch Syscall.waitReadable(fd, timeout: probe == nil ? Self.reapInterval : Self.probeInterval) {
                case .success(true): return
                case .success(false):
                    reapOrphans(group: pid, leader: pid)
                    if let wait = probe, ask(wait, running: pid) { probe = nil }
                case .failure(let error):
                    logger.debug("poll of pidfd failed (\(error)); waiting for \(pid) without it")
                    _ = Syscall.waitForExit(pid)
                    return
                }
            }
        }
        // No pidfd (a kernel before 5.3, a seccomp filter): poll for the
        // leader's exit while the probe asks; then block until it exits
        // (orphans are reaped when it does).
        var probe = readiness.map { ReadinessWait(probe: $0, started: .now) }
        while let wait = probe {
            if case .success(pid?) = Syscall.exitedChild(inGroup: pid) { return }
            reapOrphans(group: pid, leader: pid)
            if ask(wait, running: pid) { probe = nil } else { usleep(UInt32(Self.probeInterval.milliseconds * 1000)) }
        }
        _ = Syscall.waitForExit(pid)
    }

    /// One probe of the application running as `pid`: true once it answered
    /// (it counts as ready until it exits).
    private func ask(_ wait: ReadinessWait, running pid: pid_t) -> Bool {
        let result = wait.probe.check()
        let (answered, report) = state.withLock { state -> (Bool, Bool) in
            guard state.phase.holds(pid) else { return (true, false) }
            switch result {
            case .success:
                state.ready = true
                state.notReady = nil
                return (true, false)
            case .failure(let error):
                state.notReady = "not ready: \(error)"
                return (false, wait.reportDue())
            }
        }
        if answered, case .success = result {
            logger.notice("\(program) is ready", metadata: ["probe": "\(wait.probe)", "after-ms": "\((ContinuousClock.now - wait.started).milliseconds)"])
        } else if report, case .failure(let error) = result {
            logger.warning("\(program) (pid \(pid)) runs but is not ready after \(Self.describe(ContinuousClock.now - wait.started)): \(error)")
        }
        return answered
    }

    /// Reaps the exited children of `group` other than its still-running
    /// leader (which must stay unreaped: only `watch` reaps it, under the lock).
    private func reapOrphans(group: pid_t, leader: pid_t) {
        while case .success(let exited?) = Syscall.exitedChild(inGroup: group), exited != leader {
            _ = Syscall.reap(exited)
        }
    }

    // MARK: - Stopping

    /// Waits until the thread has reaped `pid` (or the deadline passes); true
    /// if it has.
    private func waitUntilGone(_ pid: pid_t, deadline: ContinuousClock.Instant?) -> Bool {
        state.wait { state in
            guard state.phase.holds(pid) else { return .done(true) }
            if let deadline, ContinuousClock.now >= deadline { return .done(false) }
            return .wait(until: deadline)
        }
    }

    /// Reaps what exits in `group` (whose leader is reaped) until no process
    /// is left in it, or the deadline passes; true if the group is empty.
    private func drain(group: pid_t, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            while case .success(_?) = Syscall.reapAny(inGroup: group) {}
            if case .failure(let error) = Syscall.signal(processGroup: group, 0), error.rawValue == ESRCH { return true }
            if ContinuousClock.now >= deadline { return false }
            let (seconds, attoseconds) = Self.drainPollInterval.components
            usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        }
    }

    /// Sends `signal` to process group `group`. With `leaderUnreaped` (only
    /// under the lock, while the phase holds the leader, so its pid cannot
    /// have been reused) it also reaches a leader that left its group (ESRCH:
    /// the group is empty).
    private static func signal(group: pid_t, _ signal: Int32, leaderUnreaped: Bool) {
        if case .failure(let error) = Syscall.signal(processGroup: group, signal), error.rawValue == ESRCH, leaderUnreaped {
            _ = Syscall.signal(process: group, signal)
        }
    }

    /// The restart delay after a run that lasted `uptime`, when the delay
    /// due next was `next`, and the one due after it: 0.5 s, doubling up to
    /// 10 s, and 0.5 s again after a run of 10 s or more.
    static func backoff(after uptime: Duration, next: Duration) -> (delay: Duration, next: Duration) {
        let delay = uptime >= stableRun ? firstDelay : next
        return (delay, min(delay * 2, maxDelay))
    }

    /// A duration for logs: `750 ms`, `2.5 s`.
    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        return "\(milliseconds / 1000).\(milliseconds % 1000 / 100) s"
    }

    /// The program's name as configured, for logs.
    private var program: String { command[0] }
}

extension Supervisor {
    /// A readiness probe being asked for one run of the application.
    fileprivate final class ReadinessWait {
        let probe: ReadinessProbe
        let started: ContinuousClock.Instant
        private var reportAt: ContinuousClock.Instant

        init(probe: ReadinessProbe, started: ContinuousClock.Instant) {
            self.probe = probe
            self.started = started
            reportAt = started + Supervisor.unreadyReport
        }

        /// Whether a still-unready application is due to be reported.
        func reportDue() -> Bool {
            guard ContinuousClock.now >= reportAt else { return false }
            reportAt = .now + Supervisor.unreadyReport
            return true
        }
    }

    /// Everything the supervising thread and the callers share, behind one
    /// lock (a ``Monitor``: `stop()` waits on it for the child to be reaped).
    fileprivate struct State: Sendable, Equatable {
        /// Where the command is in its life.
        enum Phase: Sendable, Equatable {
            /// Not running, nothing pending.
            case idle
            /// The thread is forking and exec'ing it (outside the lock).
            case spawning
            /// Running as `pid`, which is also its process group.
            case running(pid: pid_t, since: ContinuousClock.Instant)
            /// Exited while wanted; the thread is killing what it left in its
            /// group before the backoff starts.
            case exiting(delay: Duration)
            /// Wanted, waiting out a restart delay.
            case backoff(until: ContinuousClock.Instant, delay: Duration)

            /// Whether `pid` runs (or has exited but is not reaped yet).
            func holds(_ pid: pid_t) -> Bool {
                if case .running(let running, _) = self { running == pid } else { false }
            }
        }

        var wanted = false
        var phase = Phase.idle
        /// Whether the supervising thread exists (it ends when not wanted and idle).
        var threadRunning = false
        /// Whether a stop() is signalling and waiting (others wait for it).
        var stopping = false
        var restarts = 0
        var lastExit: ExitStatus?
        var lastError: SupervisorError?
        var nextDelay = Supervisor.firstDelay
        /// Whether the running application has answered its readiness probe.
        var ready = false
        /// Why it is not ready, after a probe failed.
        var notReady: String?

        /// The delay before the next restart, after a run that lasted `uptime`.
        mutating func nextRestartDelay(uptime: Duration) -> Duration {
            let delay: Duration
            (delay, nextDelay) = Supervisor.backoff(after: uptime, next: nextDelay)
            return delay
        }
    }
}
