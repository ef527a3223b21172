#if canImport(Glibc)
import Glibc
#endif

/// `DATA/lease-deadline`: the time (CLOCK_MONOTONIC nanoseconds, 8 bytes,
/// little-endian) until which this node may write, for the
/// ``ApplicationWatchdog`` and the ``VirtualIPWatchdog``. 0: no deadline (a static lease, or a replica
/// with no application); 1: writes have stopped.
public enum LeaseDeadlineFile {
    public static let name = "lease-deadline"

    /// Writes `deadline` (no sync: the watchdog reads the page cache).
    static func write(_ deadline: UInt64, fd: Int32) {
        var value = deadline.littleEndian
        _ = withUnsafeBytes(of: &value) { Syscall.pwrite(fd, $0, at: 0) }
    }

    /// Whether the file names a deadline that has passed.
    static func hasPassed(_ path: String) -> Bool {
        read(path).map(hasPassed) ?? false
    }

    /// Whether `deadline` (a value of the file) has passed.
    static func hasPassed(_ deadline: UInt64) -> Bool {
        deadline != 0 && MonotonicClock.nanoseconds() >= deadline
    }

    /// The value in the file, if it can be read.
    static func read(_ path: String) -> UInt64? {
        guard case .success(let fd) = Syscall.open(at: AT_FDCWD, path, flags: O_RDONLY) else { return nil }
        defer { Syscall.close(fd) }
        var value: UInt64 = 0
        guard case .success(8) = withUnsafeMutableBytes(of: &value, { Syscall.pread(fd, into: $0, at: 0) }) else { return nil }
        return UInt64(littleEndian: value)
    }
}
