#if canImport(Glibc)
import Glibc
#endif

/// What happens to the writes, syncs and closes of one open file, chosen
/// once when the file is opened from what it is to SQLite
/// (``SQLiteFileRole``): the store's file operations call it without
/// looking at the role again. One implementation per kind of file, as
/// LiteFS has one node type per file kind.
///
/// A failure of the file's own system call is ``FileSystemError/Code/system``;
/// a commit that could not be captured or logged is
/// ``FileSystemError/Code/notLogged``.
protocol FileCapture: Sendable {
    /// Writes `data` at `offset`, capturing a commit the write completes.
    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, FileSystemError>
    /// `fsync`: the LTX records of what SQLite makes durable are durable too.
    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, FileSystemError>
    /// A descriptor of the file was closed while this node writes.
    func closed(_ file: StoreFile) -> Result<Void, FileSystemError>
}

/// A database's `-wal` (``Database`` captures each commit frame, see WALCapture.swift).
struct WALFileCapture: FileCapture {
    let database: Database

    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, FileSystemError> {
        database.walWrite(data, at: offset, walFD: file.fd) { Syscall.pwrite(file.fd, data, at: offset) }
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, FileSystemError> {
        database.walSync { Syscall.fsync(file.fd, dataOnly: dataOnly) }
    }

    func closed(_ file: StoreFile) -> Result<Void, FileSystemError> {
        database.walClosed()
    }
}

/// A database's `-journal` (invalidating its header commits, see JournalCapture.swift).
struct JournalFileCapture: FileCapture {
    let database: Database

    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, FileSystemError> {
        database.journalWrite(data, at: offset) { Syscall.pwrite(file.fd, data, at: offset) }
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, FileSystemError> {
        database.flushingLog { Syscall.fsync(file.fd, dataOnly: dataOnly) }
    }

    func closed(_ file: StoreFile) -> Result<Void, FileSystemError> {
        .success(())
    }
}

/// A file no commit goes through (the `-shm`, SQLite's shared memory): as is.
struct PassThroughCapture: FileCapture {
    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, FileSystemError> {
        Syscall.pwrite(file.fd, data, at: offset).mapError(FileSystemError.system)
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, FileSystemError> {
        Syscall.fsync(file.fd, dataOnly: dataOnly).mapError(FileSystemError.system)
    }

    func closed(_ file: StoreFile) -> Result<Void, FileSystemError> {
        .success(())
    }
}
