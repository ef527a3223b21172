#if canImport(Glibc)
import Glibc
#endif

/// What happens to the writes, syncs and closes of one open file, chosen
/// once when the file is opened from what it is to SQLite
/// (``SQLiteFileRole``): the store's file operations call it without
/// looking at the role again. One implementation per kind of file, as
/// LiteFS has one node type per file kind.
protocol FileCapture: Sendable {
    /// Writes `data` at `offset`, capturing a commit the write completes.
    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, Errno>
    /// `fsync`: the LTX records of what SQLite makes durable are durable too.
    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, Errno>
    /// A descriptor of the file was closed while this node writes.
    func closed(_ file: StoreFile) -> Result<Void, Errno>
}

/// A database's `-wal` (``Database`` captures each commit frame, see WALCapture.swift).
struct WALFileCapture: FileCapture {
    let database: Database

    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, Errno> {
        database.walWrite(data, at: offset, walFD: file.fd) { Syscall.pwrite(file.fd, data, at: offset) }
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, Errno> {
        database.walSync { Syscall.fsync(file.fd, dataOnly: dataOnly) }
    }

    func closed(_ file: StoreFile) -> Result<Void, Errno> {
        database.walClosed()
    }
}

/// A database's `-journal` (invalidating its header commits, see JournalCapture.swift).
struct JournalFileCapture: FileCapture {
    let database: Database

    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, Errno> {
        database.journalWrite(data, at: offset) { Syscall.pwrite(file.fd, data, at: offset) }
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, Errno> {
        database.flushingLog { Syscall.fsync(file.fd, dataOnly: dataOnly) }
    }

    func closed(_ file: StoreFile) -> Result<Void, Errno> {
        .success(())
    }
}

/// A file no commit goes through (the `-shm`, SQLite's shared memory): as is.
struct PassThroughCapture: FileCapture {
    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, Errno> {
        Syscall.pwrite(file.fd, data, at: offset)
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, Errno> {
        Syscall.fsync(file.fd, dataOnly: dataOnly)
    }

    func closed(_ file: StoreFile) -> Result<Void, Errno> {
        .success(())
    }
}
