#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// An open file of the mount: the real descriptor plus what the file is to
/// SQLite, resolved once at open so the write path does no path lookups.
public final class StoreFile: Sendable {
    /// Descriptor of the real file in `DATA/files`.
    public let fd: Int32
    /// Path relative to the mount root when the file was opened.
    public let path: String
    let role: SQLiteFileRole
    /// What its writes, syncs and closes do (chosen from its role at open).
    let capture: any FileCapture
    /// Whether the file was opened for writing.
    let writable: Bool
    /// A plain file written through this handle since it was last reported.
    private let modified = Atomic(false)

    /// Opened by one of this daemon's own threads (replica apply).
    let byDaemon: Bool

    init(fd: Int32, path: String, role: SQLiteFileRole, capture: any FileCapture, writable: Bool, byDaemon: Bool = false) {
        self.capture = capture
        self.byDaemon = byDaemon
        self.fd = fd
        self.path = path
        self.role = role
        self.writable = writable
    }

    deinit {
        Syscall.close(fd)
    }

    func markModified() {
        modified.store(true, ordering: .relaxed)
    }

    /// Whether the file was modified since the last call (and resets it).
    func takeModified() -> Bool {
        modified.exchange(false, ordering: .relaxed)
    }
}
