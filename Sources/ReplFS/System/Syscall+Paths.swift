#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Whole-path operations (listing, creating and removing trees, file
/// systems by path): the same door as the descriptor calls, so no part of
/// ReplFS reaches the file system around it. Foundation does the tree
/// walks; its errors become an `Errno` here, in one place.
extension Syscall {
    /// `statvfs(3)` by path: always reaches a FUSE daemon (a `stat` may be
    /// answered from the kernel's attribute cache even when it is gone).
    public static func fileSystemStatus(_ path: String) -> Result<Glibc.statvfs, Errno> {
        var st = Glibc.statvfs()
        return retrying({ statvfsByPath(path, &st) }, failed: { $0 != 0 }).map { _ in st }
    }

    /// The names in the directory at `path` (not "." and ".."), unordered.
    public static func listDirectory(_ path: String) -> Result<[String], Errno> {
        open(at: AT_FDCWD, path, flags: O_RDONLY | O_DIRECTORY).flatMap { fd in
            defer { close(fd) }
            return directoryEntries(fd).map { $0.map(\.name) }
        }
    }

    /// Whether `path` names a directory (following symbolic links).
    public static func isDirectory(_ path: String) -> Bool {
        guard case .success(let st) = stat(path) else { return false }
        return st.st_mode & S_IFMT == S_IFDIR
    }

    /// `mkdtemp(3)` in `$TMPDIR` (or /tmp): a new directory only this user
    /// can enter, named `prefix` and six random characters.
    public static func makeTemporaryDirectory(prefix: String) -> Result<String, Errno> {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { buffer in
            mkdtemp(buffer.baseAddress!).map { .success(String(cString: $0)) } ?? .failure(.current)
        }
    }

    /// `mkdir -p`: the directory and any missing parents.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) -> Result<Void, Errno> {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: NSNumber(value: mode)])
            return .success(())
        } catch {
            return .failure(posixError(of: error))
        }
    }

    /// `rm -r`: the file or directory and all it holds; gone already is success.
    public static func removeTree(_ path: String) -> Result<Void, Errno> {
        guard case .success = lstat(at: AT_FDCWD, path) else { return .success(()) }
        do {
            try FileManager.default.removeItem(atPath: path)
            return .success(())
        } catch {
            return .failure(posixError(of: error))
        }
    }

    /// The whole content of a (small) file, `path` relative to the
    /// directory open at `directory` (or absolute).
    public static func readFile(at directory: Int32 = AT_FDCWD, _ path: String) -> Result<[UInt8], Errno> {
        open(at: directory, path, flags: O_RDONLY).flatMap { fd in
            defer { close(fd) }
            return fstat(fd).flatMap { st in
                var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
                return bytes.withUnsafeMutableBytes { pread(fd, into: $0, at: 0) }.map { Array(bytes.prefix($0)) }
            }
        }
    }

    /// The errno under a Foundation file error (EIO when it carries none).
    private static func posixError(of error: any Error) -> Errno {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return Errno(rawValue: Int32(underlying.code))
        }
        if ns.domain == NSPOSIXErrorDomain { return Errno(rawValue: Int32(ns.code)) }
        return .io
    }
}

/// `statvfs(3)` itself: at file scope, where the name means the function
/// and not the struct of the same name.
private func statvfsByPath(_ path: String, _ st: inout statvfs) -> Int32 {
    statvfs(path, &st)
}
