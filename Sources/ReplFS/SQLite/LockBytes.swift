/// The byte offsets SQLite's unix VFS locks with `fcntl(F_SETLK)`.
///
/// See `os_unix.c` and <https://www.sqlite.org/lockingv3.html>. ReplFS lets
/// the kernel serve these locks for the mount (it registers no FUSE lock
/// handlers), so they cost no round trip; a replica takes the same bytes
/// through the mount to keep readers out while it applies a transaction.
public enum LockBytes {
    /// Database file: PENDING byte (also the start of the lock page).
    public static let pending: Int64 = 0x4000_0000
    /// Database file: RESERVED byte.
    public static let reserved: Int64 = pending + 1
    /// Database file: first SHARED byte; the range is 510 bytes long.
    public static let sharedFirst: Int64 = pending + 2
    public static let sharedSize: Int64 = 510

    /// `-shm` file: WAL write lock.
    public static let walWrite: Int64 = 120
    /// `-shm` file: checkpointer lock.
    public static let walCheckpoint: Int64 = 121
    /// `-shm` file: recovery lock.
    public static let walRecover: Int64 = 122
    /// `-shm` file: first of the five reader marks.
    public static let walReadFirst: Int64 = 123
    public static let walReadCount: Int64 = 5
    /// `-shm` file: "dead man switch" held shared by every connection.
    public static let walDMS: Int64 = 128
}
