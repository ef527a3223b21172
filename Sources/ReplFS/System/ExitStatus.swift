/// How a supervised process ended, decoded from a `waitpid(2)` status.
///
/// Shown in the supervisor's status and logs as the shell would say it
/// (`exit 3`, `signal 9`), so an operator can tell a crash from a kill.
public enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
    /// It called `exit` (or returned from `main`) with this code.
    case exited(Int32)
    /// A signal ended it (for example 15 after a stop, 9 after escalation).
    case signalled(Int32)

    /// Decodes a raw `waitpid` status (the `WIFEXITED`, `WEXITSTATUS` and
    /// `WTERMSIG` macros, which Swift does not import).
    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }

    /// The exit code a shell would report: the code, or 128 + the signal.
    public var code: Int32 {
        switch self {
        case .exited(let code): code
        case .signalled(let signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit \(code)"
        case .signalled(let signal): "signal \(signal)"
        }
    }
}
