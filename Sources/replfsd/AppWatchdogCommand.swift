import ArgumentParser
import ReplFS

#if canImport(Glibc)
import Glibc
#endif

/// `replfsd app-watchdog` (internal): what the daemon runs the application
/// under, see ``ApplicationWatchdog``.
struct AppWatchdogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app-watchdog", abstract: "Run the application under the lease watchdog (started by replfsd mount).",
        shouldDisplay: false)

    @Option(help: "The lease deadline file (DATA/lease-deadline).") var deadlineFile: String
    @Option(help: "Seconds between SIGTERM and SIGKILL.") var stopTimeout: Double = 10
    @Option(help: "The daemon's pid.") var daemon: Int32
    @Argument(parsing: .captureForPassthrough) var command: [String] = []

    func run() throws {
        let arguments = command.first == "--" ? Array(command.dropFirst()) : command
        guard !arguments.isEmpty else { throw ValidationError("no command") }
        let watchdog = ApplicationWatchdog(
            command: arguments, deadlineFile: deadlineFile, stopTimeout: .milliseconds(Int64(stopTimeout * 1000)), daemon: daemon)
        throw ExitCode(watchdog.run())
    }
}
