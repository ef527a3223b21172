import Logging
import Synchronization

/// Logs refused connections at most once a minute per peer address, with
/// how many were refused since the last line.
///
/// A refusal is worth a line (a misconfigured node, a wrong token), but a
/// peer that reconnects in a loop, or a flood of strangers, must not turn
/// the log into the bottleneck or drown the line that matters.
final class RefusalLog: Sendable {
    private struct Entry {
        var lastLogged: UInt64
        var suppressed: Int
    }

    private let interval: UInt64
    private let capacity: Int
    private let entries = Mutex<[String: Entry]>([:])
    private let now: @Sendable () -> UInt64

    /// `interval` between lines per address; at most `capacity` addresses
    /// are remembered (the oldest are forgotten first).
    init(interval: Duration = .seconds(60), capacity: Int = 1024, now: @escaping @Sendable () -> UInt64 = MonotonicClock.nanoseconds) {
        self.interval = UInt64(interval.components.seconds) * 1_000_000_000 + UInt64(interval.components.attoseconds / 1_000_000_000)
        self.capacity = capacity
        self.now = now
    }

    /// Records a refusal of `address` (a host, without the port, so that
    /// new source ports do not each get a line) and logs it if this
    /// address has not been logged within the interval.
    func refused(_ address: String, reason: String, logger: Logger, metadata: Logger.Metadata = [:]) {
        let time = now()
        let suppressed: Int? = entries.withLock { entries in
            if var entry = entries[address], time &- entry.lastLogged < interval {
                entry.suppressed += 1
                entries[address] = entry
                return nil
            }
            let earlier = entries[address]?.suppressed ?? 0
            if entries.count >= capacity, entries[address] == nil,
                let oldest = entries.min(by: { $0.value.lastLogged < $1.value.lastLogged })?.key
            {
                entries.removeValue(forKey: oldest)
            }
            entries[address] = Entry(lastLogged: time, suppressed: 0)
            return earlier
        }
        guard let suppressed else { return }
        var fields = metadata
        fields["peer"] = "\(address)"
        fields["reason"] = "\(reason)"
        if suppressed > 0 { fields["refused-since-last-line"] = "\(suppressed)" }
        logger.warning("refused connection", metadata: fields)
    }
}
