/// What a ``Supervisor`` is doing, for the admin API, logs and tests.
public struct SupervisorStatus: Sendable, Hashable, CustomStringConvertible {
    /// Whether the command runs now.
    public enum State: Sendable, Hashable {
        /// Not running and not wanted (never started, or stopped).
        case stopped
        /// Being forked and exec'd right now (a brief moment).
        case starting
        /// Running as process `pid` (also its process group) since `since`.
        case running(pid: Int32, since: ContinuousClock.Instant)
        /// Wanted but not running: it exited or could not be run, and is
        /// started again once the backoff delay `after` has passed.
        case restarting(after: Duration)
    }

    /// Whether the command runs now.
    public var state: State
    /// How many times it was started again after exiting or failing to run
    /// while wanted (explicit ``Supervisor/start()`` calls do not count).
    public var restarts: Int
    /// How the last run ended, if one has.
    public var lastExit: ExitStatus?
    /// Why the last attempt to run the command failed; cleared by a
    /// successful start.
    public var lastError: SupervisorError?
    /// The command line, as configured (`exec.command`).
    public var command: [String]
    /// Whether it runs and has answered its readiness probe (`exec.ready`;
    /// without one, whether it runs).
    public var ready = false
    /// Why a running application is not ready yet.
    public var notReady: String?

    public init(state: State, restarts: Int, lastExit: ExitStatus?, lastError: SupervisorError?, command: [String]) {
        self.state = state
        self.restarts = restarts
        self.lastExit = lastExit
        self.lastError = lastError
        self.command = command
    }

    /// One line, e.g. `running (pid 812, up 5s), 2 restarts, last exit 3`.
    public var description: String {
        var parts: [String]
        switch state {
        case .stopped: parts = ["stopped"]
        case .starting: parts = ["starting"]
        case .running(let pid, let since):
            parts = ["running (pid \(pid), up \((ContinuousClock.now - since).components.seconds)s)"]
            if let notReady { parts.append(notReady) }
        case .restarting(let after): parts = ["restarting in \(Supervisor.describe(after))"]
        }
        parts.append("\(restarts) restarts")
        if let lastExit { parts.append("last \(lastExit)") }
        if let lastError { parts.append(lastError.description) }
        return parts.joined(separator: ", ")
    }
}
