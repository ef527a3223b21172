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

/// CLOCK_REALTIME, for what people read: the timestamp in an LTX header
/// (milliseconds since the Unix epoch, as upstream writes it).
public enum WallClock {
    public static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}
