#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import Logging
import Synchronization

/// The operations on names: create, remove, rename, link, and attributes.
/// Removing or replacing a database is captured as a transaction (a
/// deletion, or the new content); a plain file's change is published.
/// Failures are ``FileSystemError``s, as for the file operations.
extension Store {
    /// `*at` calls name the root ".".
    @inline(__always)
    func at(_ path: String) -> String { path.isEmpty ? "." : path }

    public func unlink(_ path: String, caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(path, caller) {
            let perform = { [self] in Syscall.unlink(at: filesFD, path) }
            switch SQLiteFileRole.classify(path) {
            case .journal(let base):
                guard let database = database(at: base, create: false) else { return perform().mapError(FileSystemError.system) }
                return database.journalUnlink(perform: perform)
            case .wal(let base):
                let result = perform().mapError(FileSystemError.system)
                if case .success = result { database(at: base, create: false)?.walUnlinked() }
                return result
            case .sharedMemory:
                return perform().mapError(FileSystemError.system)
            case .main:
                guard let database = database(at: path, create: false) else {
                    return perform().map { observers.publish(.removed(path: path)) }.mapError(FileSystemError.system)
                }
                return database.drop(perform: perform)
            }
        }
    }

    public func mkdir(_ path: String, mode: mode_t, caller: Caller) -> Result<stat, FileSystemError> {
        return permitted(path, caller) {
            return Syscall.mkdir(at: filesFD, path, mode: mode).mapError(FileSystemError.system).flatMap { attributes(path) }.map { st in
                observers.publish(.directory(path: path, mode: UInt32(st.st_mode & 0o7777)))
                return st
            }
        }
    }

    public func rmdir(_ path: String, caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(path, caller) {
            return Syscall.unlink(at: filesFD, path, isDirectory: true).map { observers.publish(.removed(path: path)) }.mapError(FileSystemError.system)
        }
    }

    public func mknod(_ path: String, mode: mode_t, device: dev_t, caller: Caller) -> Result<stat, FileSystemError> {
        return permitted(path, caller) {
            return Syscall.mknod(at: filesFD, path, mode: mode, device: device).mapError(FileSystemError.system).flatMap { attributes(path) }
        }
    }

    public func symlink(_ target: String, at path: String, caller: Caller) -> Result<stat, FileSystemError> {
        return permitted(path, caller) {
            return Syscall.symlink(target, at: filesFD, path).mapError(FileSystemError.system).flatMap { attributes(path) }.map { st in
                observers.publish(.symlink(path: path, target: target))
                return st
            }
        }
    }

    public func readlink(_ path: String) -> Result<String, FileSystemError> {
        Syscall.readlink(at: filesFD, path).mapError(FileSystemError.system)
    }

    public func link(_ from: String, to: String, caller: Caller) -> Result<stat, FileSystemError> {
        return permitted(to, caller) {
            return Syscall.link(at: filesFD, from, to: to).mapError(FileSystemError.system).flatMap { attributes(to) }.map { st in
                if isPlain(to) { publishFile(to) }
                return st
            }
        }
    }

    /// Renames a file or directory. Databases moved away are logged as
    /// deleted; databases appearing at a new path are logged with every page.
    /// (SQLite itself never renames; this keeps the log true when people do.)
    public func rename(_ from: String, to: String, flags: UInt32, caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(from, caller, also: to) {
            let fromIsDirectory = (try? attributes(from).get()).map { ($0.st_mode & S_IFMT) == S_IFDIR } ?? false
            let plain = fromIsDirectory || (isPlain(from) && SQLiteFileRole.classify(to) == .main && database(at: to, create: false) == nil)
            if case .failure(let error) = Syscall.rename(at: filesFD, from, to: to, flags: flags) { return .failure(.system(error)) }
            if plain {
                if flags & Syscall.renameExchange != 0 {
                    publishFile(from)
                    publishFile(to)
                } else {
                    observers.publish(.renamed(from: from, to: to))
                }
            }
            let affected: [String] = databases.withLock { databases in
                databases.keys.filter { key in
                    key == from || key == to || key.hasPrefix(from + "/") || key.hasPrefix(to + "/")
                }
            }
            var appeared = Set<String>()
            if fromIsDirectory {
                findDatabases(in: to, into: &appeared)
                if flags & Syscall.renameExchange != 0 { findDatabases(in: from, into: &appeared) }
            } else if SQLiteFileRole.classify(to) == .main, isDatabaseFile(to) {
                appeared.insert(to)
                if flags & Syscall.renameExchange != 0, isDatabaseFile(from) { appeared.insert(from) }
            }
            for path in Set(affected).union(appeared).sorted() {
                guard let database = database(at: path, create: true) else { continue }
                if case .failure(let error) = database.contentReplaced() {
                    logger.error("cannot log renamed database", metadata: ["database": "\(path)", "error": "\(error)"])
                }
            }
            // A WAL renamed into place (rsync writes a temporary file first).
            if case .wal(let base) = SQLiteFileRole.classify(to), let database = database(at: base, create: false),
                case .failure(let error) = database.walReplaced()
            {
                logger.error("cannot log a WAL renamed into place", metadata: ["database": "\(base)", "error": "\(error)"])
            }
            return .success(())
        }
    }

    public func chmod(_ path: String, file: StoreFile?, mode: mode_t, caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(path, caller) {
            let result = file.map { Syscall.fchmod($0.fd, mode: mode) } ?? Syscall.chmod(at: filesFD, at(path), mode: mode)
            if case .success = result, !path.isEmpty, isPlain(path) { publishFile(path) }
            return result.mapError(FileSystemError.system)
        }
    }

    /// A file replicated whole: not a database and not SQLite's own.
    func isPlain(_ path: String) -> Bool {
        SQLiteFileRole.classify(path) == .main && database(at: path, create: false) == nil
    }

    /// The whole content of a plain file (replicated whole).
    func readPlainFile(_ path: String) -> Result<[UInt8], Errno> {
        Syscall.readFile(at: filesFD, path)
    }

    /// Reports the current content of a plain file, directory or link.
    func publishFile(_ path: String) {
        guard !observers.isEmpty, case .success(let st) = attributes(path) else { return }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            observers.publish(.directory(path: path, mode: UInt32(st.st_mode & 0o7777)))
        case S_IFLNK:
            if case .success(let target) = readlink(path) { observers.publish(.symlink(path: path, target: target)) }
        case S_IFREG:
            guard case .success(let content) = readPlainFile(path) else { return }
            observers.publish(.file(path: path, mode: UInt32(st.st_mode & 0o7777), content: content))
        default:
            return
        }
    }

    public func chown(_ path: String, uid: uid_t, gid: gid_t, caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(path, caller) {
            return Syscall.chown(at: filesFD, at(path), uid: uid, gid: gid).mapError(FileSystemError.system)
        }
    }

    public func setTimes(_ path: String, file: StoreFile?, _ times: (timespec, timespec), caller: Caller) -> Result<Void, FileSystemError> {
        return permitted(path, caller) {
            if let file { return Syscall.futimens(file.fd, times).mapError(FileSystemError.system) }
            return Syscall.utimens(at: filesFD, at(path), times).mapError(FileSystemError.system)
        }
    }

    public func statistics() -> Result<statvfs, FileSystemError> {
        Syscall.fstatvfs(filesFD).mapError(FileSystemError.system)
    }

    /// Opens a directory for listing.
    public func openDirectory(_ path: String) -> Result<Int32, FileSystemError> {
        Syscall.open(at: filesFD, at(path), flags: O_RDONLY | O_DIRECTORY).mapError(FileSystemError.system)
    }

    /// Syncs a directory. SQLite does so after creating a journal, and under
    /// `synchronous=EXTRA` after deleting one (making a DELETE-mode commit
    /// durable), so the LTX records of the databases are flushed with it.
    public func syncDirectory(_ fd: Int32) -> Result<Void, FileSystemError> {
        if spool.hasPending, case .failure(let error) = spool.syncPending() {
            return .failure(.notLogged("cannot flush the log with the directory", cause: error))
        }
        return Syscall.fsync(fd).mapError(FileSystemError.system)
    }
}
