#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A file written whole or not at all: under a temporary name of its own
/// (`NAME.<random>.tmp`, created exclusively, never through a symbolic
/// link), synced, renamed into place, its directory synced. A reader (or a
/// crash) sees the old file or the new one, never part of one; two writers
/// of the same name never share a temporary file.
public final class DurableFile {
    public static let temporarySuffix = ".tmp"

    public let path: String
    /// The temporary name the content is written under.
    public let temporary: String
    private var fd: Int32
    private var offset: Int64 = 0
    private var synced = false

    /// Starts `path` (its directory must exist) with `mode`.
    public init(path: String, mode: mode_t = 0o644) throws(Errno) {
        self.path = path
        temporary = Self.temporaryName(for: path)
        switch Syscall.open(at: AT_FDCWD, temporary, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode) {
        case .success(let value): fd = value
        case .failure(let error): throw error
        }
        // Not widened by the umask's absence nor narrowed by it: the mode asked for.
        _ = Syscall.fchmod(fd, mode: mode)
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

    /// Gives the file `timestamp` (ms since the epoch) as its modification
    /// time if set, and syncs it: what ``publish()`` then renames is whole
    /// on disk.
    public func sync(timestamp: Int64?) throws(Errno) {
        if let timestamp {
            let time = timespec(tv_sec: Int(timestamp / 1000), tv_nsec: Int(timestamp % 1000) * 1_000_000)
            if case .failure(let error) = Syscall.futimens(fd, (time, time)) { throw error }
        }
        if case .failure(let error) = Syscall.fsync(fd) { throw error }
        synced = true
    }

    /// Renames the synced file into place and syncs the directory. With
    /// `replacing` false, a file already there is kept and `.exists`
    /// thrown (where the file system cannot tell, it is replaced).
    public func publish(replacing: Bool = true) throws(Errno) {
        precondition(synced, "publish before sync")
        Syscall.close(fd)
        fd = -1
        var renamed = Syscall.rename(at: AT_FDCWD, temporary, to: path, flags: replacing ? 0 : Syscall.renameNoReplace)
        if !replacing, case .failure(.invalid) = renamed { renamed = Syscall.rename(at: AT_FDCWD, temporary, to: path) }
        if case .failure(let error) = renamed {
            _ = Syscall.unlink(at: AT_FDCWD, temporary)
            throw error
        }
        try Self.syncDirectory(of: path)
    }

    /// ``sync(timestamp:)`` then ``publish()``.
    public func commit(timestamp: Int64?) throws(Errno) {
        try sync(timestamp: timestamp)
        try publish()
    }

    /// Removes the temporary file (nothing was committed).
    public func abandon() {
        guard fd >= 0 else { return }
        Syscall.close(fd)
        fd = -1
        _ = Syscall.unlink(at: AT_FDCWD, temporary)
    }

    /// Writes `bytes` as the whole of `path`.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644, timestamp: Int64?) -> Result<Void, Errno> {
        do throws(Errno) {
            let file = try DurableFile(path: path, mode: mode)
            try file.append(bytes)
            try file.commit(timestamp: timestamp)
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    /// A fresh temporary name beside `path`: `NAME.<random>.tmp`.
    public static func temporaryName(for path: String) -> String {
        path + "." + String(UInt32.random(in: 0...UInt32.max), radix: 16) + temporarySuffix
    }

    /// Whether `name` is one of these temporary files.
    public static func isTemporary(_ name: String) -> Bool { name.hasSuffix(temporarySuffix) }

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

    /// Creates `directory` and any missing parents (with `mode`), syncing
    /// the parent of each one created so that it survives a power loss.
    public static func makeDirectories(_ directory: String, mode: mode_t) -> Result<Void, Errno> {
        guard !Syscall.isDirectory(directory) else { return .success(()) }
        let parent = directory.contains("/") ? String(directory[..<directory.lastIndex(of: "/")!]) : "."
        if !parent.isEmpty, case .failure(let error) = makeDirectories(parent, mode: mode) { return .failure(error) }
        if case .failure(let error) = Syscall.mkdir(at: AT_FDCWD, directory, mode: mode), error != .exists { return .failure(error) }
        do throws(Errno) {
            try syncDirectory(of: directory)
        } catch {
            return .failure(error)
        }
        return .success(())
    }
}
