/// Why the supervisor could not run its command.
///
/// Kept in ``SupervisorStatus/lastError`` (and logged) rather than thrown:
/// a command that cannot run now (not installed yet, a typo in the config,
/// a file system not mounted yet) is retried with backoff, and the operator
/// reads why in the status.
public struct SupervisorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable code, for the admin API and tests.
    public enum Code: String, Sendable, Hashable {
        /// fork or exec failed: not found, not executable, out of processes.
        case cannotRun = "cannot-run"
    }

    public var code: Code
    /// The program as configured (`exec.command[0]`).
    public var program: String
    /// What the operating system said.
    public var cause: Errno

    public init(_ code: Code, program: String, cause: Errno) {
        self.code = code
        self.program = program
        self.cause = cause
    }

    /// For example `cannot run headscale: No such file or directory`.
    public var description: String {
        switch code {
        case .cannotRun: "cannot run \(program): \(cause)"
        }
    }
}
