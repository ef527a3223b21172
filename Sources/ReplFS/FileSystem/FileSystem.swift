#if canImport(Glibc)
import Glibc
#endif

/// The mount's operations in Swift terms: node IDs in, paths to the
/// ``Store``, results out.
///
/// `FUSEOperations` turns each kernel request into one call here and the
/// result into one reply; nothing here touches libfuse, so it can be driven
/// directly in tests. Failures are ``FileSystemError``s; their errno is made
/// only at the reply (``FileSystemError/errno``).
public final class FileSystem: Sendable {
    public let store: Store
    let inodes: InodeTable
    /// How long the kernel may trust attributes and names. Every change to
    /// the primary's files goes through the kernel, which updates its caches
    /// itself; changes made underneath (replica apply) are invalidated
    /// explicitly. So the timeouts can be long, and stat/lookup stay off the
    /// FUSE round trip.
    public let attributeTimeout: Double
    public let entryTimeout: Double
    /// FUSE operation counts and latencies (`metrics.listen`); nil: not measured.
    public let metrics: ReplFSMetrics?

    /// A name the kernel resolved; `id == 0` is a cached "does not exist".
    public struct Entry: Sendable {
        public var id: UInt64
        public var attributes: stat
    }

    public init(store: Store, attributeTimeout: Double = 3600, entryTimeout: Double = 3600, metrics: ReplFSMetrics? = nil) throws(StoreError) {
        self.store = store
        self.metrics = metrics
        self.attributeTimeout = attributeTimeout
        self.entryTimeout = entryTimeout
        switch store.attributes("") {
        case .success(let root): inodes = InodeTable(root: root)
        case .failure(let error): throw StoreError(.io, "cannot stat files directory", path: store.directory.files, errno: error.cause)
        }
    }

    private func childPath(_ parent: UInt64, _ name: String) -> Result<String, FileSystemError> {
        guard let path = inodes.path(parent: parent, name: name) else { return .failure(FileSystemError(.noSuchNode, "unknown parent inode \(parent)")) }
        return .success(path)
    }

    private func nodePath(_ id: UInt64) -> Result<String, FileSystemError> {
        guard let path = inodes.path(of: id) else { return .failure(FileSystemError(.noSuchNode, "unknown inode \(id)")) }
        return .success(path)
    }

    private func entry(parent: UInt64, name: String, _ st: stat) -> Entry {
        Entry(id: inodes.remember(parent: parent, name: name, attributes: st), attributes: st)
    }

    public func lookup(parent: UInt64, name: String) -> Result<Entry, FileSystemError> {
        childPath(parent, name).flatMap { path in
            switch store.attributes(path) {
            case .success(let st): return .success(entry(parent: parent, name: name, st))
            case .failure(let error) where error.code == .system && error.cause == .noEntry: return .success(Entry(id: 0, attributes: stat()))
            case .failure(let error): return .failure(error)
            }
        }
    }

    public func forget(_ id: UInt64, count: UInt64) {
        inodes.forget(id, count: count)
    }

    public func attributes(_ id: UInt64, file: StoreFile?) -> Result<stat, FileSystemError> {
        if let file { return store.attributes(of: file) }
        return nodePath(id).flatMap { store.attributes($0) }
    }

    /// What a SETATTR request asks for.
    public struct AttributeChanges: Sendable {
        public var mode: mode_t?
        public var uid: uid_t?
        public var gid: gid_t?
        public var size: Int64?
        /// (atime, mtime); `UTIME_OMIT`/`UTIME_NOW` in `tv_nsec` as utimensat(2).
        public var times: (timespec, timespec)?

        public init() {}
    }

    public func setAttributes(_ id: UInt64, file: StoreFile?, _ changes: AttributeChanges, caller: Store.Caller) -> Result<stat, FileSystemError> {
        nodePath(id).flatMap { path in
            if let mode = changes.mode, case .failure(let error) = store.chmod(path, file: file, mode: mode, caller: caller) { return .failure(error) }
            if changes.uid != nil || changes.gid != nil {
                let result = store.chown(path, uid: changes.uid ?? uid_t.max, gid: changes.gid ?? gid_t.max, caller: caller)
                if case .failure(let error) = result { return .failure(error) }
            }
            if let size = changes.size, case .failure(let error) = store.truncate(path, file: file, size: size, caller: caller) { return .failure(error) }
            if let times = changes.times, case .failure(let error) = store.setTimes(path, file: file, times, caller: caller) { return .failure(error) }
            return attributes(id, file: file)
        }
    }

    public func readlink(_ id: UInt64) -> Result<String, FileSystemError> {
        nodePath(id).flatMap { store.readlink($0) }
    }

    public func mknod(parent: UInt64, name: String, mode: mode_t, device: dev_t, caller: Store.Caller) -> Result<Entry, FileSystemError> {
        childPath(parent, name).flatMap { store.mknod($0, mode: mode, device: device, caller: caller) }.map { entry(parent: parent, name: name, $0) }
    }

    public func mkdir(parent: UInt64, name: String, mode: mode_t, caller: Store.Caller) -> Result<Entry, FileSystemError> {
        childPath(parent, name).flatMap { store.mkdir($0, mode: mode, caller: caller) }.map { entry(parent: parent, name: name, $0) }
    }

    public func unlink(parent: UInt64, name: String, caller: Store.Caller) -> Result<Void, FileSystemError> {
        childPath(parent, name).flatMap { store.unlink($0, caller: caller) }.map { inodes.removed(parent: parent, name: name) }
    }

    public func rmdir(parent: UInt64, name: String, caller: Store.Caller) -> Result<Void, FileSystemError> {
        childPath(parent, name).flatMap { store.rmdir($0, caller: caller) }.map { inodes.removed(parent: parent, name: name) }
    }

    public func symlink(target: String, parent: UInt64, name: String, caller: Store.Caller) -> Result<Entry, FileSystemError> {
        childPath(parent, name).flatMap { store.symlink(target, at: $0, caller: caller) }.map { entry(parent: parent, name: name, $0) }
    }

    public func rename(parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32, caller: Store.Caller) -> Result<Void, FileSystemError> {
        childPath(parent, name).flatMap { from in
            childPath(newParent, newName).flatMap { to in
                store.rename(from, to: to, flags: flags, caller: caller)
            }
        }.map {
            inodes.renamed(parent: parent, name: name, newParent: newParent, newName: newName, exchange: flags & Syscall.renameExchange != 0)
        }
    }

    public func link(_ id: UInt64, newParent: UInt64, newName: String, caller: Store.Caller) -> Result<Entry, FileSystemError> {
        nodePath(id).flatMap { from in
            childPath(newParent, newName).flatMap { store.link(from, to: $0, caller: caller) }
        }.map { entry(parent: newParent, name: newName, $0) }
    }

    /// Opens the file a node stands for. If the name now leads to another
    /// file (replaced underneath, as a replica does to apply a plain file),
    /// `ESTALE` makes the kernel look the name up again and retry, so the
    /// open never pairs the old node's cached pages with the new file.
    public func open(_ id: UInt64, flags: Int32, caller: Store.Caller) -> Result<StoreFile, FileSystemError> {
        nodePath(id).flatMap { store.open($0, flags: flags, caller: caller) }.flatMap { file in
            if let key = inodes.key(of: id), case .success(let st) = store.attributes(of: file), InodeTable.FileKey(st) != key {
                return .failure(FileSystemError(.stale, "inode \(id) now names another file"))
            }
            return .success(file)
        }
    }

    public func create(parent: UInt64, name: String, mode: mode_t, flags: Int32, caller: Store.Caller) -> Result<(Entry, StoreFile), FileSystemError> {
        childPath(parent, name).flatMap { store.create($0, flags: flags, mode: mode, caller: caller) }.map { file, st in
            (entry(parent: parent, name: name, st), file)
        }
    }

    /// A directory being listed: its entries, read once at OPENDIR so that
    /// READDIR offsets stay stable while it is open.
    public final class DirectoryListing: Sendable {
        public struct Item: Sendable {
            public var name: String
            public var type: UInt8
            public var inode: UInt64
        }

        public let fd: Int32
        public let items: [Item]

        init(fd: Int32, items: [Item]) {
            self.fd = fd
            self.items = items
        }

        deinit { Syscall.close(fd) }
    }

    public func openDirectory(_ id: UInt64) -> Result<DirectoryListing, FileSystemError> {
        nodePath(id).flatMap { store.openDirectory($0) }.flatMap { fd in
            switch Syscall.directoryEntries(fd).mapError(FileSystemError.system) {
            case .success(let entries):
                let items = [DirectoryListing.Item(name: ".", type: UInt8(DT_DIR), inode: 0), .init(name: "..", type: UInt8(DT_DIR), inode: 0)]
                    + entries.map { DirectoryListing.Item(name: $0.name, type: $0.type, inode: $0.inode) }
                return .success(DirectoryListing(fd: fd, items: items))
            case .failure(let error):
                Syscall.close(fd)
                return .failure(error)
            }
        }
    }

    public func statistics() -> Result<statvfs, FileSystemError> {
        store.statistics()
    }
}
