import Synchronization

/// Running totals of what the store logged, read by the metrics.
public final class StoreCounters: Sendable {
    /// LTX bytes recorded (commits on the primary, applied files on a replica).
    public let ltxBytes = Atomic<Int>(0)
    /// Transactions recorded.
    public let transactions = Atomic<Int>(0)

    public init() {}

    func record(_ ltx: LTXContent) {
        transactions.add(1, ordering: .relaxed)
        switch ltx {
        case .bytes(let bytes):
            ltxBytes.add(bytes.count, ordering: .relaxed)
        case .file(let path):
            if case .success(let info) = Syscall.stat(path) { ltxBytes.add(Int(info.st_size), ordering: .relaxed) }
        }
    }
}
