#if canImport(Glibc)
import Glibc
#endif

/// A small process beside the daemon (`replfsd vip-watchdog`) that takes
/// the virtual IP off the interface when this node may no longer be the
/// primary, whatever the daemon's threads do: the network-level fence.
///
/// A frozen daemon (SIGSTOP, a wedged mount) cannot remove the address
/// while its lease runs out and another node adds the same one; two holders
/// would split the clients between two primaries. So, like the
/// ``ApplicationWatchdog``, this process reads `DATA/lease-deadline` every
/// 20 ms and removes the address the moment the deadline passes, before the
/// lease can expire at the coordinator (the deadline keeps a margin). It
/// also removes it when the daemon dies (its parent-death signal, or the
/// parent changed): nothing serves behind the address then.
///
/// It never adds the address: only the daemon does, once its application
/// is ready. Once it found the address absent under a passed deadline it
/// looks again only when the file changes (a new term writes a new
/// deadline), so a replica costs one 8-byte read per tick.
public struct VirtualIPWatchdog {
    public var vip: VirtualIP
    public var deadlineFile: String
    /// The daemon's pid: if the parent is already someone else, it died.
    public var daemon: pid_t

    static let tick = Duration.milliseconds(20)

    public init(vip: VirtualIP, deadlineFile: String, daemon: pid_t) {
        self.vip = vip
        self.deadlineFile = deadlineFile
        self.daemon = daemon
    }

    /// Runs until the daemon is gone or asks it to stop; the exit code.
    public func run() -> Int32 {
        _ = Syscall.setParentDeathSignal(SIGHUP)
        _ = Syscall.blockWatchdogSignals()
        guard Syscall.parentProcess() == daemon else { return release("replfsd is gone") }
        var cleared: UInt64?
        while true {
            switch Syscall.waitForWatchdogSignal(timeout: Self.tick) {
            case SIGHUP: return release("replfsd is gone")
            case SIGTERM, SIGINT: return 0
            default: break
            }
            if Syscall.parentProcess() != daemon { return release("replfsd is gone") }
            guard let deadline = LeaseDeadlineFile.read(deadlineFile), deadline != cleared, LeaseDeadlineFile.hasPassed(deadline) else { continue }
            if vip.isHeld {
                report("the lease deadline passed without a renewal: removing \(vip.address) from \(vip.interface)")
                do { try vip.remove() } catch {
                    report("\(error)")
                    continue
                }
            }
            cleared = deadline
        }
    }

    /// Removes the address (if held) and returns the exit code.
    private func release(_ why: String) -> Int32 {
        guard vip.isHeld else { return 0 }
        report("\(why): removing \(vip.address) from \(vip.interface)")
        do { try vip.remove() } catch {
            report("\(error)")
            return 1
        }
        return 0
    }

    private func report(_ message: String) {
        let text = Array("replfsd vip-watchdog: \(message)\n".utf8)
        _ = text.withUnsafeBytes { Syscall.write(2, $0) }
    }
}
