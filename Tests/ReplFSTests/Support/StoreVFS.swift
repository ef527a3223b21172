import CSQLite
import Foundation
import ReplFS
import Synchronization

/// A SQLite VFS that sends every write, truncate, sync, close and delete of
/// a database, its journal and its WAL through a ``Store``, as the FUSE
/// layer does, and everything else (reads, locks, the `-shm`) to the
/// default unix VFS on the store's real files.
///
/// Real SQLite then commits through the store's capture with no mount, no
/// root and no FUSE: a capture bug shows in milliseconds, in a unit test.
/// The layout of an open file is SQLite's `sqlite3_file` header, a pointer
/// to its ``OpenFile``, then the unix VFS's own file (which it fills).
final class StoreVFS: @unchecked Sendable {
    let name: String
    let store: Store
    /// `DATA/files`: where SQLite's paths point (the real files).
    let filesRoot: String
    private let vfs: UnsafeMutablePointer<sqlite3_vfs>
    private let unix: UnsafeMutablePointer<sqlite3_vfs>
    /// Called with the store's path of each file SQLite deletes, before the
    /// store sees the unlink (a test's way to stop writes at the commit point).
    let beforeDelete = Mutex<(@Sendable (String) -> Void)?>(nil)
    /// The methods of every file this VFS opens (each forwards to the store or the unix VFS).
    fileprivate let methods = makeStoreIOMethods()

    /// What one open file is to the store.
    final class OpenFile {
        /// Relative to the store's root; nil for SQLite's temporary files.
        let path: String?
        let storeFile: StoreFile?
        let store: Store

        init(path: String?, storeFile: StoreFile?, store: Store) {
            self.path = path
            self.storeFile = storeFile
            self.store = store
        }
    }

    /// Offset of the ``OpenFile`` pointer and of the unix VFS's file.
    fileprivate static let ownerOffset = MemoryLayout<sqlite3_file>.stride
    fileprivate static let innerOffset = ownerOffset + MemoryLayout<UnsafeRawPointer>.stride

    init(store: Store, filesRoot: String) {
        self.store = store
        self.filesRoot = filesRoot
        self.name = "store-\(UUID().uuidString)"
        unix = sqlite3_vfs_find(nil)
        vfs = .allocate(capacity: 1)
        vfs.initialize(to: unix.pointee)
        vfs.pointee.zName = UnsafePointer(strdup(name))
        vfs.pointee.szOsFile = Int32(Self.innerOffset) + unix.pointee.szOsFile
        vfs.pointee.pAppData = Unmanaged.passUnretained(self).toOpaque()
        vfs.pointee.xOpen = storeVFSOpen
        vfs.pointee.xDelete = storeVFSDelete
        sqlite3_vfs_register(vfs, 0)
    }

    deinit {
        sqlite3_vfs_unregister(vfs)
        free(UnsafeMutableRawPointer(mutating: vfs.pointee.zName))
        vfs.deallocate()
        methods.deallocate()
    }

    /// Opens `path` (relative to the store's root) with this VFS.
    func open(_ path: String) throws -> SQLiteHandle {
        try SQLiteHandle(path: filesRoot + "/" + path, vfs: name)
    }

    fileprivate func relative(_ absolute: String) -> String? {
        absolute.hasPrefix(filesRoot + "/") ? String(absolute.dropFirst(filesRoot.count + 1)) : nil
    }

    fileprivate var unixVFS: UnsafeMutablePointer<sqlite3_vfs> { unix }
}

private func storeVFS(_ vfs: UnsafeMutablePointer<sqlite3_vfs>?) -> StoreVFS {
    Unmanaged<StoreVFS>.fromOpaque(vfs!.pointee.pAppData).takeUnretainedValue()
}

private func openFile(_ file: UnsafeMutablePointer<sqlite3_file>?) -> StoreVFS.OpenFile {
    let raw = UnsafeMutableRawPointer(file!).load(fromByteOffset: StoreVFS.ownerOffset, as: UnsafeMutableRawPointer.self)
    return Unmanaged<StoreVFS.OpenFile>.fromOpaque(raw).takeUnretainedValue()
}

private func inner(_ file: UnsafeMutablePointer<sqlite3_file>?) -> UnsafeMutablePointer<sqlite3_file> {
    (UnsafeMutableRawPointer(file!) + StoreVFS.innerOffset).assumingMemoryBound(to: sqlite3_file.self)
}

private func innerMethods(_ file: UnsafeMutablePointer<sqlite3_file>?) -> UnsafePointer<sqlite3_io_methods> {
    inner(file).pointee.pMethods!
}

/// What SQLite's unix VFS makes of the errno the kernel would hand it.
private func ioError(_ code: Int32, _ error: FileSystemError) -> Int32 {
    error.errno == .noSpace ? SQLITE_FULL : SQLITE_IOERR | (code << 8)
}

private let storeVFSOpen: @convention(c) (
    UnsafeMutablePointer<sqlite3_vfs>?, UnsafePointer<CChar>?, UnsafeMutablePointer<sqlite3_file>?, Int32, UnsafeMutablePointer<Int32>?
) -> Int32 = { vfs, name, file, flags, outFlags in
    let owner = storeVFS(vfs)
    file!.pointee.pMethods = nil
    let rc = owner.unixVFS.pointee.xOpen!(owner.unixVFS, name, inner(file), flags, outFlags)
    guard rc == SQLITE_OK else { return rc }
    let path = name.map { String(cString: $0) }.flatMap { owner.relative($0) }
    var storeFile: StoreFile?
    if let path {
        let caller = Store.Caller(pid: getpid())
        let opened: Result<StoreFile, FileSystemError> =
            flags & SQLITE_OPEN_READONLY != 0
            ? owner.store.open(path, flags: O_RDONLY, caller: caller)
            : owner.store.create(path, flags: O_RDWR, mode: 0o644, caller: caller).map(\.0)
        switch opened {
        case .success(let value): storeFile = value
        case .failure:
            _ = innerMethods(file).pointee.xClose!(inner(file))
            return SQLITE_CANTOPEN
        }
    }
    let handle = StoreVFS.OpenFile(path: path, storeFile: storeFile, store: owner.store)
    UnsafeMutableRawPointer(file!).storeBytes(
        of: Unmanaged.passRetained(handle).toOpaque(), toByteOffset: StoreVFS.ownerOffset, as: UnsafeMutableRawPointer.self)
    file!.pointee.pMethods = UnsafePointer(owner.methods)
    return SQLITE_OK
}

private let storeVFSDelete: @convention(c) (UnsafeMutablePointer<sqlite3_vfs>?, UnsafePointer<CChar>?, Int32) -> Int32 = { vfs, name, syncDirectory in
    let owner = storeVFS(vfs)
    guard let name, let path = owner.relative(String(cString: name)) else {
        return owner.unixVFS.pointee.xDelete!(owner.unixVFS, name, syncDirectory)
    }
    owner.beforeDelete.withLock { $0 }?(path)
    switch owner.store.unlink(path, caller: Store.Caller(pid: getpid())) {
    case .success: break
    case .failure(let error) where error.errno == .noEntry: return SQLITE_IOERR_DELETE_NOENT_VALUE
    case .failure(let error): return ioError(10, error)
    }
    if syncDirectory != 0 {
        let parent = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : ""
        if case .success(let fd) = owner.store.openDirectory(parent) {
            _ = owner.store.syncDirectory(fd)
            close(fd)
        }
    }
    return SQLITE_OK
}

/// `SQLITE_IOERR_DELETE_NOENT` (a composite macro Swift does not import).
private let SQLITE_IOERR_DELETE_NOENT_VALUE = SQLITE_IOERR | (23 << 8)

private func makeStoreIOMethods() -> UnsafeMutablePointer<sqlite3_io_methods> {
    let methods = UnsafeMutablePointer<sqlite3_io_methods>.allocate(capacity: 1)
    methods.initialize(to: sqlite3_io_methods())
    methods.pointee.iVersion = 3
    methods.pointee.xClose = { file in
        let handle = openFile(file)
        if let storeFile = handle.storeFile {
            _ = handle.store.flush(storeFile)
            handle.store.release(storeFile)
        }
        let rc = innerMethods(file).pointee.xClose!(inner(file))
        Unmanaged.passUnretained(handle).release()
        return rc
    }
    methods.pointee.xRead = { file, buffer, count, offset in innerMethods(file).pointee.xRead!(inner(file), buffer, count, offset) }
    methods.pointee.xWrite = { file, buffer, count, offset in
        let handle = openFile(file)
        guard let storeFile = handle.storeFile else { return innerMethods(file).pointee.xWrite!(inner(file), buffer, count, offset) }
        switch handle.store.write(storeFile, UnsafeRawBufferPointer(start: buffer, count: Int(count)), at: offset) {
        case .success(let written) where written == Int(count): return SQLITE_OK
        case .success: return SQLITE_FULL
        case .failure(let error): return ioError(3, error)
        }
    }
    methods.pointee.xTruncate = { file, size in
        let handle = openFile(file)
        guard let storeFile = handle.storeFile, let path = handle.path else { return innerMethods(file).pointee.xTruncate!(inner(file), size) }
        switch handle.store.truncate(path, file: storeFile, size: size, caller: Store.Caller(pid: getpid())) {
        case .success: return SQLITE_OK
        case .failure(let error): return ioError(6, error)
        }
    }
    methods.pointee.xSync = { file, flags in
        let handle = openFile(file)
        guard let storeFile = handle.storeFile else { return innerMethods(file).pointee.xSync!(inner(file), flags) }
        switch handle.store.sync(storeFile, dataOnly: flags & SQLITE_SYNC_DATAONLY != 0) {
        case .success: return SQLITE_OK
        case .failure(let error): return ioError(4, error)
        }
    }
    methods.pointee.xFileSize = { file, size in innerMethods(file).pointee.xFileSize!(inner(file), size) }
    methods.pointee.xLock = { file, level in innerMethods(file).pointee.xLock!(inner(file), level) }
    methods.pointee.xUnlock = { file, level in innerMethods(file).pointee.xUnlock!(inner(file), level) }
    methods.pointee.xCheckReservedLock = { file, out in innerMethods(file).pointee.xCheckReservedLock!(inner(file), out) }
    methods.pointee.xFileControl = { file, op, argument in
        // The unix VFS would grow the file itself for these, past the store.
        if op == SQLITE_FCNTL_SIZE_HINT || op == SQLITE_FCNTL_CHUNK_SIZE { return SQLITE_NOTFOUND }
        return innerMethods(file).pointee.xFileControl!(inner(file), op, argument)
    }
    methods.pointee.xSectorSize = { file in innerMethods(file).pointee.xSectorSize!(inner(file)) }
    methods.pointee.xDeviceCharacteristics = { file in innerMethods(file).pointee.xDeviceCharacteristics!(inner(file)) }
    methods.pointee.xShmMap = { file, region, size, extend, out in innerMethods(file).pointee.xShmMap!(inner(file), region, size, extend, out) }
    methods.pointee.xShmLock = { file, offset, count, flags in innerMethods(file).pointee.xShmLock!(inner(file), offset, count, flags) }
    methods.pointee.xShmBarrier = { file in innerMethods(file).pointee.xShmBarrier!(inner(file)) }
    methods.pointee.xShmUnmap = { file, delete in innerMethods(file).pointee.xShmUnmap!(inner(file), delete) }
    methods.pointee.xFetch = { file, offset, count, out in
        out?.pointee = nil
        return SQLITE_OK
    }
    methods.pointee.xUnfetch = { _, _, _ in SQLITE_OK }
    return methods
}

/// One SQLite connection, for the tests' statements.
final class SQLiteHandle {
    let db: OpaquePointer

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init(path: String, vfs: String? = nil, readOnly: Bool = false) throws {
        var handle: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        guard sqlite3_open_v2(path, &handle, flags, vfs) == SQLITE_OK, let handle else {
            defer { sqlite3_close_v2(handle) }
            throw Failure(description: "open \(path): \(handle.map { String(cString: sqlite3_errmsg($0)) } ?? "?")")
        }
        db = handle
    }

    deinit {
        sqlite3_close_v2(db)
    }

    /// Runs statements; throws with SQLite's message if one fails.
    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard rc == SQLITE_OK else {
            throw Failure(description: "\(sql): \(message.map { String(cString: $0) } ?? "") (rc \(sqlite3_extended_errcode(db)))")
        }
    }

    /// The rows of a query, each column as text, joined by "|" (like the shell).
    func query(_ sql: String) throws -> [String] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else {
            throw Failure(description: "\(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(statement) }
        var rows: [String] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else { throw Failure(description: "\(sql): \(String(cString: sqlite3_errmsg(db)))") }
            let columns = (0..<sqlite3_column_count(statement)).map { column in
                sqlite3_column_text(statement, column).map { String(cString: $0) } ?? ""
            }
            rows.append(columns.joined(separator: "|"))
        }
    }
}
