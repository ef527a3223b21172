#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Testing

@testable import ReplFS

/// The supervisor with real processes (`sh -c` scripts), no mount.
///
/// Not tested here: that the application dies with replfsd (kill -9). The
/// child asks for SIGKILL on its parent's death (`prctl(PR_SET_PDEATHSIG)`,
/// checked below where python3 can read it back); the integration test of
/// the daemon proves the rest end to end: start replfsd with an `exec.command`
/// that writes its pid, `kill -9` replfsd, and poll until `kill(pid, 0)` fails.
@Suite("Supervisor", .serialized)
struct SupervisorTests {
    @Test("start runs the command with the extra environment; stop leaves no process, not even a grandchild")
    func startAndStop() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = """
            sleep 1000 &
            printf '%s %s %s\\n' $$ $! "$REPLFS_TEST_VALUE" > \(directory)/out.tmp
            mv \(directory)/out.tmp \(directory)/out
            wait
            """
        // "sh", not "/bin/sh": the program is looked up in PATH.
        let supervisor = Supervisor(
            command: ["sh", "-c", script], stopTimeout: .seconds(5), environment: ["REPLFS_TEST_VALUE": "hello world"],
            logger: Logger(label: "test"))
        supervisor.start()
        supervisor.start()  // idempotent: still one process
        let out = try #require(Self.eventually { Self.read("\(directory)/out") })
        let fields = out.split(separator: " ", maxSplits: 2).map(String.init)
        let pid = try #require(Int32(fields[0]))
        let grandchild = try #require(Int32(fields[1]))
        #expect(fields[2] == "hello world\n")
        guard case .running(let runningPID, _) = supervisor.status.state else {
            Issue.record("not running: \(supervisor.status)")
            return
        }
        #expect(runningPID == pid)
        #expect(Self.isAlive(pid) && Self.isAlive(grandchild))

        supervisor.stop()
        #expect(!Self.isAlive(pid))
        #expect(!Self.isAlive(grandchild))
        #expect(supervisor.status.state == .stopped)
        #expect(supervisor.status.lastExit == .signalled(SIGTERM))
        #expect(supervisor.status.restarts == 0)
        supervisor.stop()  // idempotent
        #expect(supervisor.status.state == .stopped)
    }

    @Test("a command that ignores SIGTERM is killed with SIGKILL after the stop timeout")
    func escalatesToKill() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = """
            trap '' TERM
            sleep 1000 &
            echo $$ $! > \(directory)/out.tmp
            mv \(directory)/out.tmp \(directory)/out
            wait
            """
        let supervisor = Supervisor(command: ["/bin/sh", "-c", script], stopTimeout: .seconds(1), logger: Logger(label: "test"))
        supervisor.start()
        let out = try #require(Self.eventually { Self.read("\(directory)/out") })
        let pids = out.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int32($0) }
        try #require(pids.count == 2)

        let began = ContinuousClock.now
        supervisor.stop()
        let took = ContinuousClock.now - began
        #expect(took >= .seconds(1))
        #expect(took < .seconds(3))
        #expect(!Self.isAlive(pids[0]))
        #expect(!Self.isAlive(pids[1]))
        #expect(supervisor.status.lastExit == .signalled(SIGKILL))
        #expect(supervisor.status.state == .stopped)
    }

    @Test("a command that exits is restarted with backoff; stop during the backoff cancels the restart")
    func restartsWithBackoff() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let supervisor = Supervisor(
            command: ["/bin/sh", "-c", "echo run >> \(directory)/runs; exit 3"], stopTimeout: .seconds(5),
            logger: Logger(label: "test"))
        supervisor.start()
        // First run exits, 0.5 s later the restart (restarts = 1) exits too:
        // the next delay has doubled to 1 s.
        let reached = Self.eventually(timeout: .seconds(10)) { () -> Bool? in
            let status = supervisor.status
            return status.restarts == 1 && status.state == .restarting(after: .seconds(1)) ? true : nil
        }
        #expect(reached == true, "\(supervisor.status)")
        #expect(supervisor.status.lastExit == .exited(3))
        #expect(supervisor.status.lastExit?.description == "exit 3")
        #expect(Self.read("\(directory)/runs") == "run\nrun\n")

        supervisor.stop()
        #expect(supervisor.status.state == .stopped)
        // Proving that nothing happens needs a wait: longer than the delay
        // the cancelled restart had.
        usleep(1_500_000)
        #expect(supervisor.status.restarts == 1)
        #expect(supervisor.status.state == .stopped)
        #expect(Self.read("\(directory)/runs") == "run\nrun\n")
    }

    @Test("what a command that exits leaves in its process group is killed before the restart")
    func killsLeftoversBeforeRestart() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = "sleep 1000 & echo $! >> \(directory)/leftovers; exit 1"
        let supervisor = Supervisor(command: ["/bin/sh", "-c", script], stopTimeout: .seconds(5), logger: Logger(label: "test"))
        supervisor.start()
        // Two runs have exited: the second one's leftover was killed too.
        let waited = Self.eventually { () -> Bool? in
            let status = supervisor.status
            guard status.restarts == 1, case .restarting = status.state else { return nil }
            return true
        }
        #expect(waited == true, "\(supervisor.status)")
        supervisor.stop()
        let leftovers = (Self.read("\(directory)/leftovers") ?? "").split(separator: "\n").compactMap { Int32($0) }
        #expect(leftovers.count == 2)
        for pid in leftovers { #expect(!Self.isAlive(pid), "sleep \(pid) survived") }
        #expect(supervisor.status.lastExit == .exited(1))
    }

    @Test("backoff: 0.5 s doubling to 10 s, back to 0.5 s after a run of 10 s")
    func backoffSchedule() {
        var next = Supervisor.firstDelay
        var delays: [Duration] = []
        for _ in 0..<7 {
            let step = Supervisor.backoff(after: .seconds(1), next: next)
            delays.append(step.delay)
            next = step.next
        }
        #expect(delays == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10)])
        #expect(Supervisor.backoff(after: .seconds(10), next: next) == (.milliseconds(500), .seconds(1)))
        #expect(Supervisor.describe(.milliseconds(750)) == "750 ms")
        #expect(Supervisor.describe(.milliseconds(2500)) == "2.5 s")
    }

    @Test("stop without start returns at once")
    func stopWithoutStart() {
        let supervisor = Supervisor(command: ["/bin/true"], stopTimeout: .seconds(5), logger: Logger(label: "test"))
        supervisor.stop()
        #expect(supervisor.status.state == .stopped)
        #expect(supervisor.status.command == ["/bin/true"])
    }

    @Test("a missing executable is reported in the status and the log, and retried")
    func missingExecutable() throws {
        let recorder = RecordingLogHandler()
        for program in ["/nonexistent/replfs-no-such-program", "replfs-no-such-program"] {
            let supervisor = Supervisor(command: [program, "serve"], stopTimeout: .seconds(1), logger: recorder.logger)
            supervisor.start()
            let error = Self.eventually { supervisor.status.lastError }
            #expect(error == SupervisorError(.cannotRun, program: program, cause: .noEntry))
            #expect(error?.description == "cannot run \(program): No such file or directory")
            // Retried: the first retry counts as a restart.
            #expect(Self.eventually { supervisor.status.restarts >= 1 ? true : nil } == true)
            if case .running = supervisor.status.state { Issue.record("running: \(supervisor.status)") }
            supervisor.stop()
            #expect(supervisor.status.state == .stopped)
            #expect(recorder.messages.value.contains { $0.contains("cannot run \(program): No such file or directory") })
        }
    }

    @Test(
        "the child runs in its own process group and dies with its parent (PR_SET_PDEATHSIG)",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")))
    func processGroupAndParentDeathSignal() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // PR_GET_PDEATHSIG is 2; the signal survives exec, so the program
        // itself can read it back.
        let program = """
            import ctypes, os, time
            signal = ctypes.c_int(0)
            ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(signal), 0, 0, 0)
            with open("\(directory)/out.tmp", "w") as f:
                f.write("%d %d %d" % (os.getpid(), os.getpgrp(), signal.value))
            os.rename("\(directory)/out.tmp", "\(directory)/out")
            time.sleep(1000)
            """
        let supervisor = Supervisor(command: ["/usr/bin/python3", "-c", program], stopTimeout: .seconds(5), logger: Logger(label: "test"))
        supervisor.start()
        defer { supervisor.stop() }
        let out = try #require(Self.eventually { Self.read("\(directory)/out") })
        let values = out.split(separator: " ").compactMap { Int32($0) }
        try #require(values.count == 3)
        #expect(values[0] == values[1], "its own process group")
        #expect(values[1] != getpgrp())
        #expect(values[2] == SIGKILL)
    }

    // MARK: - Helpers

    /// Polls `probe` every 10 ms until it gives a value, or the timeout passes.
    static func eventually<T>(timeout: Duration = .seconds(10), _ probe: () -> T?) -> T? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let value = probe() { return value }
            if ContinuousClock.now >= deadline { return nil }
            usleep(10_000)
        }
    }

    static func isAlive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("replfs-supervisor-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
