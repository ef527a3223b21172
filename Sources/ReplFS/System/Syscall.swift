#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// The one door to the operating system.
///
/// Every libc call ReplFS makes on files goes through here. Each wrapper names
/// the C function it calls, retries `EINTR`, and returns `Result<_, Errno>` so
/// callers handle failure explicitly and the FUSE layer can pass the errno on.
public enum Syscall {
    /// `RENAME_NOREPLACE` and `RENAME_EXCHANGE` (linux/fs.h; not imported by Swift).
    public static let renameNoReplace: UInt32 = 1 << 0
    public static let renameExchange: UInt32 = 1 << 1
    /// `UTIME_NOW` and `UTIME_OMIT` for utimensat(2) (macros Swift does not import).
    public static let utimeNow = (1 << 30) - 1
    public static let utimeOmit = (1 << 30) - 2

    @inline(__always)
    static func retrying<T>(_ body: () -> T, failed: (T) -> Bool) -> Result<T, Errno> {
        while true {
            let value = body()
            if !failed(value) { return .success(value) }
            let error = Errno.current
            if error != .interrupted { return .failure(error) }
        }
    }

    /// `openat(2)`.
    public static func open(at directory: Int32, _ path: String, flags: Int32, mode: mode_t = 0o644) -> Result<Int32, Errno> {
        retrying({ Glibc.openat(directory, path, flags | O_CLOEXEC, mode) }, failed: { $0 < 0 })
    }

    /// `close(2)`; errors are ignored because the descriptor is gone either way.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// `pread(2)`, repeated until `buffer` is full or end of file.
    /// Returns the number of bytes read (short only at end of file).
    public static func pread(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                let error = Errno.current
                if error == .interrupted { continue }
                return .failure(error)
            }
            if n == 0 { break }
            done += n
        }
        return .success(done)
    }

    /// `read(2)` at the current offset, once (a short count is not the end
    /// of the file; zero is).
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return .success(0) }
        return retrying({ Glibc.read(fd, base, buffer.count) }, failed: { $0 < 0 })
    }

    /// `pwrite(2)`, repeated until all of `buffer` is written.
    public static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: Int64) -> Result<Int, Errno> {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                let error = Errno.current
                if error == .interrupted { continue }
                return .failure(error)
            }
            done += n
        }
        return .success(done)
    }

    /// `write(2)` of a whole buffer at the current offset.
    public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Result<Void, Errno> {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                let error = Errno.current
                if error == .interrupted { continue }
                return .failure(error)
            }
            done += n
        }
        return .success(())
    }

    /// `fstat(2)`.
    public static func fstat(_ fd: Int32) -> Result<stat, Errno> {
        var st = Glibc.stat()
        return retrying({ Glibc.fstat(fd, &st) }, failed: { $0 != 0 }).map { _ in st }
    }

    /// `fstatat(2)` without following a final symbolic link.
    public static func lstat(at directory: Int32, _ path: String) -> Result<stat, Errno> {
        var st = Glibc.stat()
        return retrying({ Glibc.fstatat(directory, path, &st, AT_SYMLINK_NOFOLLOW) }, failed: { $0 != 0 }).map { _ in st }
    }

    /// `stat(2)` of an absolute path, following links.
    public static func stat(_ path: String) -> Result<stat, Errno> {
        var st = Glibc.stat()
        return retrying({ Glibc.fstatat(AT_FDCWD, path, &st, 0) }, failed: { $0 != 0 }).map { _ in st }
    }

    /// `realpath(3)`: the absolute path with every symlink, `.` and `..` resolved.
    public static func realpath(_ path: String) -> Result<String, Errno> {
        guard let resolved = Glibc.realpath(path, nil) else { return .failure(Errno.current) }
        defer { free(resolved) }
        return .success(String(cString: resolved))
    }

    /// `ftruncate(2)`.
    public static func ftruncate(_ fd: Int32, _ size: Int64) -> Result<Void, Errno> {
        retrying({ Glibc.ftruncate(fd, off_t(size)) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `fsync(2)` or, with `dataOnly`, `fdatasync(2)`.
    public static func fsync(_ fd: Int32, dataOnly: Bool = false) -> Result<Void, Errno> {
        retrying({ dataOnly ? Glibc.fdatasync(fd) : Glibc.fsync(fd) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `fcntl(F_GETLK)`: whether another process holds a lock on bytes
    /// `start..<start+length` that a lock of `type` would conflict with.
    static func rangeLockConflicts(_ fd: Int32, _ type: Int32, start: Int64, length: Int64) -> Bool {
        var request = flock()
        request.l_type = Int16(type)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = off_t(start)
        request.l_len = off_t(length)
        guard case .success = retrying({ fcntl(fd, F_GETLK, &request) }, failed: { $0 != 0 }) else { return false }
        return request.l_type != Int16(F_UNLCK)
    }

    /// `fcntl(F_SETLK)` of `type` (`F_WRLCK`, `F_RDLCK`, `F_UNLCK`) on bytes
    /// `start..<start+length`: false if another process holds a conflicting
    /// lock (never waits). SQLite's own locks are of this kind.
    static func setRangeLock(_ fd: Int32, _ type: Int32, start: Int64, length: Int64) -> Bool {
        var request = flock()
        request.l_type = Int16(type)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = off_t(start)
        request.l_len = off_t(length)
        if case .success = retrying({ fcntl(fd, F_SETLK, &request) }, failed: { $0 != 0 }) { return true }
        return false
    }

    /// `unlinkat(2)`; `directory` selects `AT_REMOVEDIR` (rmdir).
    public static func unlink(at directory: Int32, _ path: String, isDirectory: Bool = false) -> Result<Void, Errno> {
        retrying({ Glibc.unlinkat(directory, path, isDirectory ? AT_REMOVEDIR : 0) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `renameat2(2)` with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`) or plain `renameat(2)`.
    public static func rename(at directory: Int32, _ from: String, to: String, flags: UInt32 = 0) -> Result<Void, Errno> {
        if flags == 0 {
            return retrying({ Glibc.renameat(directory, from, directory, to) }, failed: { $0 != 0 }).map { _ in () }
        }
        return retrying({ clinux_renameat2(directory, from, directory, to, flags) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `renameat(2)` between two directories.
    public static func rename(from fromDirectory: Int32, _ from: String, to toDirectory: Int32, _ to: String) -> Result<Void, Errno> {
        retrying({ Glibc.renameat(fromDirectory, from, toDirectory, to) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `mkdirat(2)`.
    public static func mkdir(at directory: Int32, _ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying({ Glibc.mkdirat(directory, path, mode) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `mknodat(2)`.
    public static func mknod(at directory: Int32, _ path: String, mode: mode_t, device: dev_t) -> Result<Void, Errno> {
        retrying({ Glibc.mknodat(directory, path, mode, device) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `symlinkat(2)`.
    public static func symlink(_ target: String, at directory: Int32, _ path: String) -> Result<Void, Errno> {
        retrying({ Glibc.symlinkat(target, directory, path) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `linkat(2)`.
    public static func link(at directory: Int32, _ from: String, to: String) -> Result<Void, Errno> {
        retrying({ Glibc.linkat(directory, from, directory, to, 0) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `readlinkat(2)`.
    public static func readlink(at directory: Int32, _ path: String) -> Result<String, Errno> {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buffer.withUnsafeMutableBytes { Glibc.readlinkat(directory, path, $0.baseAddress!, $0.count - 1) }
        if n < 0 { return .failure(.current) }
        return .success(String(decoding: buffer[0..<n], as: UTF8.self))
    }

    /// `fchmodat(2)`.
    public static func chmod(at directory: Int32, _ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying({ Glibc.fchmodat(directory, path, mode, 0) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `fchmod(2)`.
    public static func fchmod(_ fd: Int32, mode: mode_t) -> Result<Void, Errno> {
        retrying({ Glibc.fchmod(fd, mode) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `fchownat(2)` without following links; `UInt32.max` leaves an id unchanged.
    public static func chown(at directory: Int32, _ path: String, uid: uid_t, gid: gid_t) -> Result<Void, Errno> {
        retrying({ Glibc.fchownat(directory, path, uid, gid, AT_SYMLINK_NOFOLLOW) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `utimensat(2)` without following links.
    public static func utimens(at directory: Int32, _ path: String, _ times: (timespec, timespec)) -> Result<Void, Errno> {
        var t = [times.0, times.1]
        return retrying({ Glibc.utimensat(directory, path, &t, AT_SYMLINK_NOFOLLOW) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `futimens(3)`.
    public static func futimens(_ fd: Int32, _ times: (timespec, timespec)) -> Result<Void, Errno> {
        var t = [times.0, times.1]
        return retrying({ Glibc.futimens(fd, &t) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// Copies everything `source` holds into `destination` from offset 0,
    /// a megabyte at a time (`pread` and `pwrite`: neither offset moves).
    public static func copy(from source: Int32, to destination: Int32) -> Result<Void, Errno> {
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { chunk.deallocate() }
        var offset: Int64 = 0
        while true {
            switch pread(source, into: chunk, at: offset) {
            case .failure(let error): return .failure(error)
            case .success(0): return .success(())
            case .success(let count):
                if case .failure(let error) = pwrite(destination, UnsafeRawBufferPointer(rebasing: chunk[..<count]), at: offset) { return .failure(error) }
                offset += Int64(count)
            }
        }
    }

    /// `fstatvfs(3)`.
    public static func fstatvfs(_ fd: Int32) -> Result<statvfs, Errno> {
        var st = statvfs()
        return retrying({ Glibc.fstatvfs(fd, &st) }, failed: { $0 != 0 }).map { _ in st }
    }

    /// `fallocate(2)`.
    public static func fallocate(_ fd: Int32, mode: Int32, offset: Int64, length: Int64) -> Result<Void, Errno> {
        retrying({ clinux_fallocate(fd, mode, off_t(offset), off_t(length)) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `flock(2)` with `LOCK_NB`: `false` when another process holds it.
    public static func tryLockExclusive(_ fd: Int32) -> Result<Bool, Errno> {
        if clinux_flock(fd, LOCK_EX | LOCK_NB) == 0 { return .success(true) }
        let error = Errno.current
        if error == .wouldBlock { return .success(false) }
        return .failure(error)
    }

    /// `sync_file_range(2)` writing a range out to the device and waiting for
    /// it, without a cache flush: durable only once something flushes the
    /// device cache (an fsync on the same file system).
    public static func writeOut(_ fd: Int32, offset: Int64, length: Int64) -> Result<Void, Errno> {
        retrying({ clinux_write_out(fd, off_t(offset), off_t(length)) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `sync_file_range(2)` starting write-out of a range; returns at once.
    public static func startWriteOut(_ fd: Int32, offset: Int64, length: Int64) -> Result<Void, Errno> {
        retrying({ clinux_start_write_out(fd, off_t(offset), off_t(length)) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `syncfs(2)`: flushes the whole file system holding `fd`.
    public static func syncfs(_ fd: Int32) -> Result<Void, Errno> {
        retrying({ clinux_syncfs(fd) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// `setpriority(2)` for the calling thread (Linux keeps a nice value per
    /// thread). Raising the priority needs CAP_SYS_NICE; without it the
    /// thread keeps its value.
    @discardableResult
    public static func setThreadNice(_ value: Int32) -> Result<Void, Errno> {
        Glibc.setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, value) == 0 ? .success(()) : .failure(.current)
    }

    /// `malloc_trim(3)`: gives the heap's free memory back to the system, so
    /// that a burst (a backlog, a large directory listing) does not stay in
    /// the RSS once it is over.
    public static func releaseFreeMemory() {
        _ = clinux_malloc_trim()
    }

    /// `umount2(2)` with `MNT_DETACH`, for clearing a dead FUSE mount.
    public static func detachMount(_ path: String) -> Result<Void, Errno> {
        retrying({ Glibc.umount2(path, Int32(MNT_DETACH)) }, failed: { $0 != 0 }).map { _ in () }
    }

    /// Reads every entry name of the directory open at `fd` (a duplicate is
    /// consumed, `fd` stays open), skipping "." and "..".
    public static func directoryEntries(_ fd: Int32) -> Result<[(name: String, type: UInt8, inode: UInt64)], Errno> {
        let copy = Glibc.dup(fd)
        if copy < 0 { return .failure(.current) }
        guard let dir = Glibc.fdopendir(copy) else {
            let error = Errno.current
            Glibc.close(copy)
            return .failure(error)
        }
        defer { Glibc.closedir(dir) }
        Glibc.rewinddir(dir)
        var result: [(name: String, type: UInt8, inode: UInt64)] = []
        while let entry = Glibc.readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            result.append((name, entry.pointee.d_type, UInt64(entry.pointee.d_ino)))
        }
        return .success(result)
    }
}
