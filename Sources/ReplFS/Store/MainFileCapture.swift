import Synchronization

/// A file that is not a journal, WAL or `-shm`: a database, or a plain
/// file that becomes one when SQLite first writes a header.
///
/// A database's writes outside a transaction it can see are captured at
/// the next sync or close (see UntrackedCapture.swift); a plain file is
/// published whole when it is closed after a change.
final class MainFileCapture: FileCapture {
    let store: Store
    /// The database this file is, once known (at open, or when SQLite first
    /// writes a header to it or a journal or WAL appears beside it).
    private let attached: Mutex<Database?>

    init(store: Store, database: Database?) {
        self.store = store
        self.attached = Mutex(database)
    }

    /// The file's database, or the one its path has become since.
    private func database(of file: StoreFile) -> Database? {
        attached.withLock { $0 } ?? store.database(at: file.path, create: false)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: Int64, to file: StoreFile) -> Result<Int, FileSystemError> {
        var database = attached.withLock { $0 }
        if database == nil {
            database = store.database(at: file.path, create: offset == 0 && DatabaseHeader.hasMagic(data))
            if let database { attached.withLock { $0 = database } }
        }
        let result = Syscall.pwrite(file.fd, data, at: offset)
        if case .success(let count) = result {
            if let database {
                database.mainFileWritten(offset: offset, count: count)
            } else {
                file.markModified()
            }
        }
        return result.mapError(FileSystemError.system)
    }

    func sync(_ file: StoreFile, dataOnly: Bool) -> Result<Void, FileSystemError> {
        let perform = { Syscall.fsync(file.fd, dataOnly: dataOnly) }
        guard let database = database(of: file) else { return perform().mapError(FileSystemError.system) }
        if case .failure(let error) = database.mainFileSynced(closing: false) { return .failure(error) }
        return database.flushingLog(perform: perform)
    }

    func closed(_ file: StoreFile) -> Result<Void, FileSystemError> {
        if let database = database(of: file) {
            return database.mainFileSynced(closing: true)
        }
        // A plain file is replicated whole when it is closed after a change.
        if file.takeModified() { store.publishFile(file.path) }
        return .success(())
    }
}
