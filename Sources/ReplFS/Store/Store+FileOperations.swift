#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import Logging
import Synchronization

/// The operations on open files, as the FUSE callbacks forward them. Each
/// write, sync and close of a database, its journal or its WAL goes to the
/// capture of its role (``Database``); plain files are published whole when
/// they are closed after a change.
///
/// Each fails with a ``FileSystemError``: the real file's system call
/// (`.system`), a node that does not write (`.readOnly`), or a commit that
/// could not be logged (`.notLogged`); the FUSE layer makes the errno.
extension Store {
    public func attributes(_ path: String) -> Result<stat, FileSystemError> {
        Syscall.lstat(at: filesFD, at(path)).mapError(FileSystemError.system)
    }

    public func attributes(of file: StoreFile) -> Result<stat, FileSystemError> {
        Syscall.fstat(file.fd).mapError(FileSystemError.system)
    }

    /// Opens an existing file. `O_APPEND` and `O_TRUNC` are handled by the
    /// kernel before the request (offsets and SETATTR), so they are dropped.
    public func open(_ path: String, flags: Int32, caller: Caller) -> Result<StoreFile, FileSystemError> {
        let accessMode = flags & O_ACCMODE
        return permitted(path, caller, opening: true, exempt: accessMode == O_RDONLY) {
            let realFlags = flags & ~(O_APPEND | O_TRUNC | O_CREAT | O_EXCL | O_NOCTTY)
            return Syscall.open(at: filesFD, at(path), flags: realFlags).map { fd in
                makeFile(fd: fd, path: path, writable: accessMode != O_RDONLY, byDaemon: isDaemon(caller))
            }.mapError(FileSystemError.system)
        }
    }

    func isDaemon(_ caller: Caller) -> Bool {
        daemonThreads.withLock { $0.contains(caller.pid) }
    }

    /// Creates and opens a file.
    public func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) -> Result<(StoreFile, stat), FileSystemError> {
        return permitted(path, caller, opening: true) {
            let realFlags = (flags & ~(O_APPEND | O_TRUNC | O_NOCTTY)) | O_CREAT
            return Syscall.open(at: filesFD, path, flags: realFlags, mode: mode).flatMap { fd in
                Syscall.fstat(fd).map { st in
                    let file = makeFile(fd: fd, path: path, writable: true, byDaemon: isDaemon(caller))
                    if case .main = file.role { file.markModified() }
                    return (file, st)
                }.mapError { error in
                    Syscall.close(fd)
                    return error
                }
            }.mapError(FileSystemError.system)
        }
    }

    /// The open file, with the capture its role calls for, chosen here once.
    func makeFile(fd: Int32, path: String, writable: Bool, byDaemon: Bool) -> StoreFile {
        let role = SQLiteFileRole.classify(path)
        if writable, role == .main { openWriters.withLock { $0[path, default: 0] += 1 } }
        let capture: any FileCapture
        switch role {
        case .wal(let base):
            capture = self.database(at: base, create: true).map { WALFileCapture(database: $0) } ?? PassThroughCapture()
        case .journal(let base):
            capture = self.database(at: base, create: true).map { JournalFileCapture(database: $0) } ?? PassThroughCapture()
        case .sharedMemory:
            capture = PassThroughCapture()
        case .main:
            capture = MainFileCapture(store: self, database: self.database(at: path, create: false))
        }
        return StoreFile(fd: fd, path: path, role: role, capture: capture, writable: writable, byDaemon: byDaemon)
    }

    public func read(_ file: StoreFile, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Result<Int, FileSystemError> {
        Syscall.pread(file.fd, into: buffer, at: offset).mapError(FileSystemError.system)
    }

    /// Writes through to the real file, capturing a commit it completes.
    public func write(_ file: StoreFile, _ data: UnsafeRawBufferPointer, at offset: Int64) -> Result<Int, FileSystemError> {
        let result = permitted(file.path, .daemon, exempt: file.byDaemon) { file.capture.write(data, at: offset, to: file) }
        if case .failure(let error) = result { noteFailedWrite(error, path: file.path) }
        return result
    }

    /// Truncates (or extends) a file, by open file when the kernel gives one.
    public func truncate(_ path: String, file: StoreFile?, size: Int64, caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(path, caller, exempt: file?.byDaemon == true) {
            let perform: () -> Result<Void, Errno> = { [self] in
                if let file { return Syscall.ftruncate(file.fd, size) }
                return Syscall.open(at: filesFD, path, flags: O_WRONLY).flatMap { fd in
                    defer { Syscall.close(fd) }
                    return Syscall.ftruncate(fd, size)
                }
            }
            switch SQLiteFileRole.classify(path) {
            case .journal(let base):
                guard let database = database(at: base, create: false) else { return perform().mapError(FileSystemError.system) }
                return database.journalTruncate(to: size, perform: perform)
            case .wal(let base):
                let result = perform().mapError(FileSystemError.system)
                if case .success = result { database(at: base, create: false)?.walResized(size: size) }
                return result
            case .sharedMemory:
                return perform().mapError(FileSystemError.system)
            case .main:
                let result = perform().mapError(FileSystemError.system)
                if case .success = result {
                    if let database = database(at: path, create: false) {
                        database.mainFileResized(size: size)
                    } else if let file {
                        file.markModified()
                    } else if openWriters.withLock({ $0[path] == nil }) {
                        publishFile(path)
                    }
                }
                return result
            }
        }
    }

    /// `fsync`: also the moment to make the LTX files of what SQLite syncs durable.
    public func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, FileSystemError> {
        let result = file.capture.sync(file, dataOnly: dataOnly)
        if case .failure(let error) = result { noteFailedWrite(error, path: file.path) }
        return result
    }

    /// `close(2)` of one descriptor of the file.
    ///
    /// Only while this node writes: on a replica nothing in the mount can
    /// have changed, and waiting for a database here could wait forever (a
    /// reader that exits closes its files while the apply thread holds the
    /// database and waits for that reader's SQLite locks).
    public func flush(_ file: StoreFile) -> Result<Void, FileSystemError> {
        guard file.writable, !file.byDaemon, isWritable else { return .success(()) }
        return file.capture.closed(file)
    }

    /// The kernel released the last reference to an open file.
    public func release(_ file: StoreFile) {
        guard file.writable, file.role == .main else { return }
        openWriters.withLock { writers in
            let count = (writers[file.path] ?? 1) - 1
            writers[file.path] = count > 0 ? count : nil
        }
        // Written but never flushed (no close(2) reached us): report it now.
        if file.takeModified(), isPlain(file.path) { publishFile(file.path) }
    }

    /// Whether the kernel should bypass its page cache for this file.
    ///
    /// Journals and WALs are written at offsets that are not page aligned
    /// (frames are page size + 24 bytes); through the page cache the kernel
    /// splits such a write at the page boundary into two requests. Direct I/O
    /// sends each write whole: one round trip per write(2). They are read back
    /// rarely (rollback, WAL readers), so the cache buys little.
    public func prefersDirectIO(_ file: StoreFile) -> Bool {
        switch file.role {
        case .journal, .wal: return true
        case .main, .sharedMemory: return false
        }
    }

    /// Whether closing a descriptor of this file needs a FLUSH request:
    /// main files, where it may end writes no journal covered, and WALs,
    /// which another program may have written (a copy).
    public func needsFlush(_ file: StoreFile) -> Bool {
        switch file.role {
        case .main, .wal: return file.writable && !file.byDaemon && isWritable
        case .journal, .sharedMemory: return false
        }
    }

    public func fallocate(_ file: StoreFile, mode: Int32, offset: Int64, length: Int64) -> Result<Void, FileSystemError> {
        return permitted(file.path, .daemon, exempt: file.byDaemon) {
            return Syscall.fallocate(file.fd, mode: mode, offset: offset, length: length).mapError(FileSystemError.system)
        }
    }
}
