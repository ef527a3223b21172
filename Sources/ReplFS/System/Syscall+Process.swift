#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Processes: what the ``Supervisor`` needs to run the application and to be
/// sure it is gone.
extension Syscall {
    /// `clinux_spawn` (fork, then in the child setpgid, prctl(PR_SET_PDEATHSIG,
    /// SIGKILL), signal reset, execve along `searchPath`).
    ///
    /// The child runs `arguments[0]` in a new process group whose id is its
    /// pid, with exactly `environment`, inheriting stdin, stdout and stderr.
    /// Returns its pid once it has exec'd, or the errno of the fork or exec
    /// that failed (the child is then already reaped). Call it from a thread
    /// that outlives the child: the parent death signal fires when the
    /// forking *thread* exits.
    /// With `output` (a descriptor), the child's stdout and stderr go there
    /// and its stdin reads /dev/null.
    static func spawn(_ arguments: [String], environment: [String: String], searchPath: String, output: Int32 = -1) -> Result<pid_t, Errno> {
        precondition(!arguments.isEmpty, "spawn needs a program")
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var error: Int32 = 0
        let pid = argv.withUnsafeBufferPointer { argvBuffer in
            envp.withUnsafeBufferPointer { envpBuffer in
                clinux_spawn(arguments[0], argvBuffer.baseAddress, envpBuffer.baseAddress, searchPath, output, &error)
            }
        }
        return pid < 0 ? .failure(Errno(rawValue: error)) : .success(pid)
    }

    /// `kill(2)` of `-group`: sends `signal` to every process in the group
    /// (0 only checks that one exists: `ESRCH` means the group is empty).
    static func signal(processGroup group: pid_t, _ signal: Int32) -> Result<Void, Errno> {
        precondition(group > 1, "not a process group")
        return Glibc.kill(-group, signal) == 0 ? .success(()) : .failure(.current)
    }

    /// `kill(2)` of one process.
    static func signal(process pid: pid_t, _ signal: Int32) -> Result<Void, Errno> {
        precondition(pid > 1, "not a process")
        return Glibc.kill(pid, signal) == 0 ? .success(()) : .failure(.current)
    }

    /// `waitpid(2)` of one child, blocking: reaps it and returns how it ended.
    static func reap(_ pid: pid_t) -> Result<ExitStatus, Errno> {
        var status: Int32 = 0
        return retrying({ Glibc.waitpid(pid, &status, 0) }, failed: { $0 < 0 }).map { _ in ExitStatus(waitStatus: status) }
    }

    /// `waitid(P_PGID, WEXITED | WNOHANG | WNOWAIT)` (`clinux_exited_child_in_group`):
    /// a child in `group` that has exited but is not reaped yet, or nil.
    static func exitedChild(inGroup group: pid_t) -> Result<pid_t?, Errno> {
        let pid = clinux_exited_child_in_group(group)
        if pid < 0 { return .failure(.current) }
        return .success(pid == 0 ? nil : pid)
    }

    /// `waitpid(-group, WNOHANG)`: reaps one exited child in `group`, if any,
    /// and returns its pid. Only for a group whose leader is already reaped
    /// (it would reap the leader too).
    static func reapAny(inGroup group: pid_t) -> Result<pid_t?, Errno> {
        precondition(group > 1, "not a process group")
        var status: Int32 = 0
        return retrying({ Glibc.waitpid(-group, &status, WNOHANG) }, failed: { $0 < 0 }).map { $0 == 0 ? nil : $0 }
    }

    /// `waitid(P_PID, WEXITED | WNOWAIT)` (`clinux_wait_exited`): blocks until
    /// child `pid` has exited, without reaping it (its pid stays taken until
    /// ``reap(_:)``).
    static func waitForExit(_ pid: pid_t) -> Result<Void, Errno> {
        clinux_wait_exited(pid) < 0 ? .failure(.current) : .success(())
    }

    /// `pidfd_open(2)`: a descriptor that polls readable once `pid` has
    /// exited (it does not reap it). Close it with ``close(_:)``.
    static func openProcess(_ pid: pid_t) -> Result<Int32, Errno> {
        let fd = clinux_pidfd_open(pid)
        return fd < 0 ? .failure(.current) : .success(fd)
    }

    /// `poll(2)` of one descriptor for input, up to `timeout`: true if it is
    /// readable. An interrupted poll returns false (the caller looks again).
    static func waitReadable(_ fd: Int32, timeout: Duration) -> Result<Bool, Errno> {
        waitReadable([fd], timeout: timeout).map { $0[0] }
    }

    /// `prctl(PR_SET_CHILD_SUBREAPER, 1)` (`clinux_set_child_subreaper`):
    /// orphaned descendants of this process become its children instead of
    /// init's, so they can be waited for.
    static func becomeChildSubreaper() -> Result<Void, Errno> {
        clinux_set_child_subreaper() == 0 ? .success(()) : .failure(.current)
    }

    /// `prctl(PR_SET_PDEATHSIG, signal)`: `signal` arrives when the thread
    /// that forked this process exits (for a watchdog: its daemon died).
    static func setParentDeathSignal(_ signal: Int32) -> Result<Void, Errno> {
        clinux_set_parent_death_signal(signal) == 0 ? .success(()) : .failure(.current)
    }

    /// One line on stderr, written whole (a watchdog process has no logger).
    static func writeLine(toStandardError line: String) {
        let text = Array((line + "\n").utf8)
        _ = text.withUnsafeBytes { write(2, $0) }
    }

    /// `getppid(2)`.
    static func parentProcess() -> pid_t { Glibc.getppid() }

    /// `getpid(2)`.
    static func currentProcess() -> pid_t { Glibc.getpid() }

    /// Blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD so that
    /// ``waitForWatchdogSignal(timeout:)`` takes them (no handlers).
    static func blockWatchdogSignals() -> Result<Void, Errno> {
        clinux_block_watchdog_signals() == 0 ? .success(()) : .failure(.current)
    }

    /// `sigtimedwait(2)` for the signals ``blockWatchdogSignals()`` blocked:
    /// the signal, or nil after `timeout`.
    static func waitForWatchdogSignal(timeout: Duration) -> Int32? {
        let signal = clinux_wait_watchdog_signal(Int32(clamping: timeout.milliseconds))
        return signal == 0 ? nil : signal
    }

    /// `waitpid(-1, WNOHANG)`: reaps one exited child, if any.
    static func reapAnyChild() -> (pid: pid_t, status: ExitStatus)? {
        var status: Int32 = 0
        let pid = Glibc.waitpid(-1, &status, WNOHANG)
        return pid > 0 ? (pid, ExitStatus(waitStatus: status)) : nil
    }

    /// Every live process below `root` in the process tree (by the parent
    /// field of `/proc/PID/stat`), children before their own children.
    static func descendants(of root: pid_t) -> [pid_t] {
        guard case .success(let proc) = open(at: AT_FDCWD, "/proc", flags: O_RDONLY | O_DIRECTORY) else { return [] }
        defer { close(proc) }
        guard case .success(let entries) = directoryEntries(proc) else { return [] }
        var parents: [pid_t: pid_t] = [:]
        var buffer = [UInt8](repeating: 0, count: 512)
        for entry in entries {
            guard let pid = pid_t(entry.name), case .success(let fd) = open(at: proc, entry.name + "/stat", flags: O_RDONLY) else { continue }
            defer { close(fd) }
            guard case .success(let count) = buffer.withUnsafeMutableBytes({ pread(fd, into: $0, at: 0) }), count > 0 else { continue }
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let text = String(decoding: buffer.prefix(count), as: UTF8.self)
            guard let end = text.lastIndex(of: ")") else { continue }
            let fields = text[text.index(after: end)...].split(separator: " ")
            if fields.count > 1, let parent = pid_t(fields[1]) { parents[pid] = parent }
        }
        var found: [pid_t] = []
        var frontier = [root]
        while !frontier.isEmpty {
            let children = parents.filter { frontier.contains($0.value) }.map(\.key).sorted()
            found += children
            frontier = children
        }
        return found
    }

    /// `pipe2(2)` with `O_CLOEXEC` (`clinux_pipe_cloexec`): (read end, write end).
    static func pipe() -> Result<(read: Int32, write: Int32), Errno> {
        var ends: [Int32] = [-1, -1]
        return clinux_pipe_cloexec(&ends) == 0 ? .success((ends[0], ends[1])) : .failure(.current)
    }

    /// `poll(2)` of several descriptors for input, up to `timeout`: which are
    /// readable (or hung up). An interrupted poll reports none (the caller
    /// looks again).
    static func waitReadable(_ fds: [Int32], timeout: Duration) -> Result<[Bool], Errno> {
        var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let milliseconds = Int32(clamping: max(0, timeout.milliseconds))
        let count = Glibc.poll(&entries, nfds_t(entries.count), milliseconds)
        if count < 0 {
            let error = Errno.current
            return error == .interrupted ? .success(fds.map { _ in false }) : .failure(error)
        }
        return .success(entries.map { $0.revents != 0 })
    }

    /// `fcntl(2)` F_SETFL with `O_NONBLOCK` added.
    static func setNonBlocking(_ fd: Int32) -> Result<Void, Errno> {
        let flags = Glibc.fcntl(fd, F_GETFL)
        guard flags >= 0, Glibc.fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else { return .failure(.current) }
        return .success(())
    }
}
