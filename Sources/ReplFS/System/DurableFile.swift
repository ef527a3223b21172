#if canImport(Glibc)
import Glibc
#endif

/// A file written whole or not at all: under a temporary name (`NAME.tmp`),
/// synced, renamed into place, its directory synced. A reader (or a crash)
/// sees the old file or the new one, never part of one.
public final class DurableFile {
    public static let temporarySuffix = ".tmp"

    public let path: String
    private let temporary: String
    private var fd: Int32
    private var offset: Int64 = 0

    /// Starts `path` (its directory must exist).
    public init(path: String) throws(Errno) {
        self.path = path
        temporary = path + Self.temporarySuffix
        switch Syscall.open(at: AT_FDCWD, temporary, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) {
        case .success(let value): fd = value
        case .failure(let error): throw error
        }
    }

    deinit { abandon() }

    public func append(_ bytes: UnsafeRawBufferPointer) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let part = UnsafeRawBufferPointer(rebasing: bytes[done...])
            switch Syscall.pwrite(fd, part, at: offset) {
            case .success(let count) where count > 0:
                done += count
                offset += Int64(count)
            case .success: throw .noSpace
            case .failure(let error): throw error
            }
        }
    }

    public func append(_ bytes: [UInt8]) throws(Errno) {
        let result: Result<Void, Errno> = bytes.withUnsafeBytes { buffer in
            do throws(Errno) { try append(buffer); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Syncs the file, gives it `timestamp` (ms since the epoch) as its
    /// modification time if set, renames it into place and syncs the
    /// directory.
    public func commit(timestamp: Int64?) throws(Errno) {
        if let timestamp {
            let time = timespec(tv_sec: Int(timestamp / 1000), tv_nsec: Int(timestamp % 1000) * 1_000_000)
            if case .failure(let error) = Syscall.futimens(fd, (time, time)) { throw error }
        }
        if case .failure(let error) = Syscall.fsync(fd) { throw error }
        Syscall.close(fd)
        fd = -1
        if case .failure(let error) = Syscall.rename(at: AT_FDCWD, temporary, to: path) {
            _ = Syscall.unlink(at: AT_FDCWD, temporary)
            throw error
        }
        try Self.syncDirectory(of: path)
    }

    /// Removes the temporary file (nothing was committed).
    public func abandon() {
        guard fd >= 0 else { return }
        Syscall.close(fd)
        fd = -1
        _ = Syscall.unlink(at: AT_FDCWD, temporary)
    }

    /// Writes `bytes` as the whole of `path`.
    public static func write(_ bytes: [UInt8], to path: String, timestamp: Int64?) -> Result<Void, Errno> {
        do throws(Errno) {
            let file = try DurableFile(path: path)
            try file.append(bytes)
            try file.commit(timestamp: timestamp)
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    /// `fsync` of the directory holding `path` (a rename or unlink in it).
    public static func syncDirectory(of path: String) throws(Errno) {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd: Int32
        switch Syscall.open(at: AT_FDCWD, directory.isEmpty ? "/" : directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let value): fd = value
        case .failure(let error): throw error
        }
        defer { Syscall.close(fd) }
        if case .failure(let error) = Syscall.fsync(fd) { throw error }
    }
}
