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
public enum MountPoint {
    public static func prepare(_ path: String, logger: Logger) throws(MountError) {
        switch Syscall.stat(path) {
        case .failure(.notConnected):
            logger.warning("clearing a dead mount left by an earlier replfsd", metadata: ["mount": "\(path)"])
            if case .failure(let error) = Syscall.detachMount(path) {
                throw MountError("cannot clear dead mount: \(error)", path: path)
            }
        case .failure(.noEntry):
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw MountError("cannot create mount point: \(error.localizedDescription)", path: path)
            }
        case .failure(let error):
            throw MountError("cannot use mount point: \(error)", path: path)
        case .success:
            break
        }
        guard case .success(let st) = Syscall.stat(path), (st.st_mode & S_IFMT) == S_IFDIR else {
            throw MountError("mount point is not a directory", path: path)
        }
        if isMounted(path) {
            throw MountError("mount point is busy: something is already mounted there", path: path)
        }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        if !entries.isEmpty {
            throw MountError(
                "mount point is not empty (\(entries.count) entries, e.g. \(entries.sorted()[0])); move its files into the data directory's files/ or empty it",
                path: path)
        }
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
