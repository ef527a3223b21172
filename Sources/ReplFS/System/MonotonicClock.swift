#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC, which does not jump with wall-clock changes: lease
/// deadlines are measured on it.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}
