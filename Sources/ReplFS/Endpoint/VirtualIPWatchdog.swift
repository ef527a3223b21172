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
/// is ready. Under a passed deadline it looks at the interface when the
/// deadline changes and then once a second, so a replica costs one 8-byte
/// read per tick and a netlink dump per second. A SIGTERM (the daemon
/// stopping, or systemd stopping the whole unit) ends it only once the
/// address is not held, or the deadline has passed (then it removes it).
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

    /// Runs until the daemon is gone, or asks it to stop while it does
    /// not hold the address (or may no longer hold it); the exit code.
    public func run() -> Int32 {
        _ = Syscall.setParentDeathSignal(SIGHUP)
        _ = Syscall.blockWatchdogSignals()
        guard Syscall.parentProcess() == daemon else { return release("replfsd is gone") }
        var stopping = false
        var lastRead: UInt64?
        var nextLook = ContinuousClock.now
        while true {
            switch Syscall.waitForWatchdogSignal(timeout: Self.tick) {
            case SIGHUP: return release("replfsd is gone")
            case SIGTERM, SIGINT: stopping = true
            default: break
            }
            if Syscall.parentProcess() != daemon { return release("replfsd is gone") }
            let deadline = LeaseDeadlineFile.read(deadlineFile)
            let passed = deadline.map(LeaseDeadlineFile.hasPassed) ?? false
            // A stop asked while this node may still be the primary (systemd
            // signals the whole unit at once) waits: the fence stays up until
            // the deadline passes or the daemon is gone.
            if stopping, passed || vip.isHeld == false { return passed ? release("replfsd is stopping") : 0 }
            // Look when the deadline has just passed (a new value), and
            // again every second while it stays passed: an address added
            // or left behind meanwhile goes too.
            defer { lastRead = deadline }
            guard passed, deadline != lastRead || ContinuousClock.now >= nextLook else { continue }
            nextLook = .now + Self.recheck
            if vip.isHeld != false {
                report("the lease deadline passed without a renewal: removing \(vip.address) from \(vip.interface)")
                do { try vip.remove() } catch { report("\(error)") }
            }
        }
    }

    /// How often a passed deadline is looked at again.
    static let recheck = Duration.seconds(1)

    /// Removes the address (if held) and returns the exit code.
    private func release(_ why: String) -> Int32 {
        guard vip.isHeld != false else { return 0 }
        report("\(why): removing \(vip.address) from \(vip.interface)")
        do { try vip.remove() } catch {
            report("\(error)")
            return 1
        }
        return 0
    }

    private func report(_ message: String) {
        Syscall.writeLine(toStandardError: "replfsd vip-watchdog: \(message)")
    }
}
