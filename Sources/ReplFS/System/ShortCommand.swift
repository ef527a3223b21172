#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Runs a command that is expected to finish soon (a role hook, `ip addr`),
/// collecting what it prints, and kills it if it outlives its timeout.
///
/// The command runs in a process group of its own with SIGKILL as its
/// parent-death signal (``Syscall/spawn(_:environment:searchPath:output:)``),
/// so a timeout kills the whole group, and so does the daemon's death. Its
/// stdout and stderr go to one pipe; stdin reads /dev/null. The run ends
/// when the command has exited: a child it left running in the background
/// with the pipe open does not hold it up (it is killed with the group).
///
/// Blocks the calling thread until the command is gone.
public struct ShortCommand: Sendable {
    public var arguments: [String]
    /// Added to (and overriding) the daemon's environment.
    public var environment: [String: String]
    public var timeout: Duration

    /// The most output kept (the rest is dropped, and the output says so).
    static let outputLimit = 64 * 1024

    public init(_ arguments: [String], environment: [String: String] = [:], timeout: Duration) {
        precondition(!arguments.isEmpty, "a command needs a program")
        self.arguments = arguments
        self.environment = environment
        self.timeout = timeout
    }

    /// How a run ended.
    public struct Outcome: Sendable, Equatable {
        /// How the command exited (nil if it could not be run at all).
        public var status: ExitStatus?
        /// Why it could not be run (not found, not executable).
        public var error: Errno?
        /// Whether it was killed for outliving the timeout.
        public var timedOut = false
        /// What it printed on stdout and stderr, trimmed.
        public var output = ""

        /// It ran, finished in time and exited 0.
        public var succeeded: Bool { status == .exited(0) && !timedOut && error == nil }

        /// "exit 3", "killed after 10 s", "cannot run: No such file or directory".
        public var summary: String {
            if let error { return "cannot run: \(error)" }
            if timedOut { return "killed after its timeout" }
            return status.map(String.init(describing:)) ?? "status unknown"
        }
    }

    /// Runs the command to completion (or to its timeout).
    public func run() -> Outcome {
        let environment = ProcessInfo.processInfo.environment.merging(self.environment) { $1 }
        guard case .success(let pipe) = Syscall.pipe() else { return Outcome(error: .current) }
        let searchPath = environment["PATH"] ?? Supervisor.defaultSearchPath
        let spawned = Syscall.spawn(arguments, environment: environment, searchPath: searchPath, output: pipe.write)
        Syscall.close(pipe.write)
        defer { Syscall.close(pipe.read) }
        guard case .success(let pid) = spawned else {
            if case .failure(let error) = spawned { return Outcome(error: error) }
            return Outcome()
        }
        var outcome = Outcome()
        var output: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        let exited = Syscall.openProcess(pid)
        defer { if case .success(let fd) = exited { Syscall.close(fd) } }
        let processFD: Int32? = if case .success(let fd) = exited { fd } else { nil }
        var pipeOpen = true
        while true {
            let remaining = deadline - .now
            if remaining <= .zero {
                outcome.timedOut = true
                break
            }
            guard let processFD else {
                // No pidfd (an old kernel, a seccomp filter): poll for the exit.
                if pipeOpen, case .success(true) = Syscall.waitReadable(pipe.read, timeout: min(remaining, .milliseconds(10))) {
                    pipeOpen = Self.drain(pipe.read, into: &output)
                } else if !pipeOpen {
                    usleep(10_000)
                }
                if case .success(pid?) = Syscall.exitedChild(inGroup: pid) { break }
                continue
            }
            let watched = (pipeOpen ? [pipe.read] : []) + [processFD]
            guard case .success(let ready) = Syscall.waitReadable(watched, timeout: remaining) else { break }
            if pipeOpen, ready[0] { pipeOpen = Self.drain(pipe.read, into: &output) }
            if ready[ready.count - 1] {
                // Exited: take what is in the pipe without waiting for
                // descendants that may still hold it open (and at most the
                // output kept: one of them may write on and on).
                if pipeOpen, case .success = Syscall.setNonBlocking(pipe.read) {
                    while output.count <= Self.outputLimit, Self.drain(pipe.read, into: &output) {}
                }
                break
            }
        }
        // What it left in its group must not outlive it; the daemon is a
        // child subreaper, so those orphans are its to reap.
        _ = Syscall.signal(processGroup: pid, SIGKILL)
        outcome.status = try? Syscall.reap(pid).get()
        let reapUntil = ContinuousClock.now + .seconds(1)
        while case .success = Syscall.signal(processGroup: pid, 0), ContinuousClock.now < reapUntil {
            while case .success(_?) = Syscall.reapAny(inGroup: pid) {}
            usleep(1_000)
        }
        outcome.output = String(decoding: output.prefix(Self.outputLimit), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if output.count > Self.outputLimit { outcome.output += " [output cut at \(Self.outputLimit) bytes]" }
        return outcome
    }

    /// Reads what is available; false at end of file (or an error).
    private static func drain(_ fd: Int32, into output: inout [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { Syscall.read(fd, into: $0) }
        guard case .success(let n) = count, n > 0 else { return false }
        if output.count < outputLimit + 1 { output += buffer[..<n] }
        return true
    }
}
