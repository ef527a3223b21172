#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Checks and prepares the directory the mount will cover.
///
/// A dead FUSE mount left by a killed replfsd (`ENOTCONN` on stat) is
/// detached; a live mount or a directory with files in it is refused, since
/// mounting over it would hide those files from the application.
///
/// The one exception is SQLite's shared-memory files (`*-shm`) alone: a
/// process that had a database open when the mount went away (a reader on a
/// replica across a restart) creates its `-shm` in the bare directory on its
/// next read. Such a file holds no data, only an index SQLite rebuilds from
/// the WAL, so it is removed with a warning instead of refusing the start
/// (docs/decisions.md, decision 42).
public enum MountPoint {
    /// What has to happen before the mount point can be used.
    public enum Preparation: Sendable, Equatable {
        case ready
        case create
        case clearDeadMount
        /// Only stray `-shm` files (the names) are in the mount point.
        case removeStraySharedMemory([String])
    }

    /// Checks the mount point without changing anything.
    public static func check(_ path: String) throws(MountError) -> Preparation {
        var preparation = Preparation.ready
        // statfs always reaches a FUSE daemon (stat may be answered from the
        // kernel's attribute cache even when the daemon is gone).
        if case .failure(.notConnected) = Syscall.fileSystemStatus(path) {
            // A dead FUSE mount: nothing can be listed until it is cleared.
            return .clearDeadMount
        }
        switch Syscall.stat(path) {
        case .failure(.notConnected):
            return .clearDeadMount
        case .failure(.noEntry):
            return .create
        case .failure(let error):
            throw MountError("cannot use mount point: \(error)", path: path)
        case .success(let st):
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw MountError("mount point is not a directory", path: path) }
        }
        if isMounted(path) {
            throw MountError("mount point is busy: something is already mounted there", path: path)
        }
        let entries = (try? Syscall.listDirectory(path).get()) ?? []
        if !entries.isEmpty && entries.allSatisfy({ isStraySharedMemory(path + "/" + $0) }) {
            return .removeStraySharedMemory(entries.sorted())
        }
        if !entries.isEmpty {
            throw MountError(
                "mount point is not empty (\(entries.count) entries, e.g. \(entries.sorted()[0])); move its files into the data directory's files/ or empty it",
                path: path)
        }
        preparation = .ready
        return preparation
    }

    /// Does what ``check(_:)`` found necessary.
    public static func prepare(_ path: String, _ preparation: Preparation, logger: Logger) throws(MountError) {
        switch preparation {
        case .ready:
            return
        case .create:
            if case .failure(let error) = Syscall.makeDirectories(path) {
                throw MountError("cannot create mount point: \(error)", path: path)
            }
        case .clearDeadMount:
            logger.warning("clearing a dead mount left by an earlier replfsd", metadata: ["mount": "\(path)"])
            if case .failure(let error) = Syscall.detachMount(path) {
                throw MountError("cannot clear dead mount: \(error)", path: path)
            }
            // What was under the dead mount must be usable too.
            switch try check(path) {
            case .ready: return
            case .removeStraySharedMemory(let names): try prepare(path, .removeStraySharedMemory(names), logger: logger)
            default: throw MountError("mount point is still not usable after clearing a dead mount", path: path)
            }
        case .removeStraySharedMemory(let names):
            logger.warning(
                "removing SQLite shared-memory files left in the mount point by a process that had a database open when the mount went away",
                metadata: ["mount": "\(path)", "files": "\(names.joined(separator: ", "))"])
            for name in names {
                if case .failure(let error) = Syscall.unlink(at: AT_FDCWD, path + "/" + name), error != .noEntry {
                    throw MountError("cannot remove \(name): \(error)", path: path)
                }
            }
        }
    }

    /// A regular file named like SQLite's shared-memory index (`X-shm`).
    private static func isStraySharedMemory(_ path: String) -> Bool {
        guard path.hasSuffix("-shm"), case .success(let st) = Syscall.lstat(at: AT_FDCWD, path) else { return false }
        return (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Whether `/proc/self/mountinfo` lists `path` as a mount point.
    public static func isMounted(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        let resolved = (path as NSString).standardizingPath
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { continue }
            // Octal escapes (\040 for a space) as the kernel writes them.
            let mountPoint = String(fields[4]).replacingOccurrences(of: "\\040", with: " ")
            if mountPoint == resolved { return true }
        }
        return false
    }
}
