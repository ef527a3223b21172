#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A pool of expired LTX files (`DATA/recycle/`) reused as new ones.
///
/// At thousands of transactions per second, retention deletes files as fast
/// as commits create them, and ext4 then spends most of each file creation
/// skipping recently freed inodes (`recently_deleted`: freed inodes are not
/// reused for a minute or more). Moving an expired file into this pool and
/// renaming it back over the next new name recycles the inode and most of its
/// blocks: in a steady state no inode is allocated or freed at all.
final class LTXRecycler: Sendable {
    private let directoryFD: Int32
    private let pool: Mutex<Pool>
    /// Files kept for reuse at most; beyond, expired files are deleted.
    static let capacity = 20_000

    private struct Pool: ~Copyable {
        var names: [String] = []
        var counter: UInt64 = 0
    }

    init(directory: String) throws(StoreError) {
        if case .failure(let error) = Syscall.mkdir(at: AT_FDCWD, directory, mode: 0o755), error != .exists {
            throw StoreError(.io, "cannot create recycle directory", path: directory, errno: error)
        }
        switch Syscall.open(at: AT_FDCWD, directory, flags: O_RDONLY | O_DIRECTORY) {
        case .success(let fd): directoryFD = fd
        case .failure(let error): throw StoreError(.io, "cannot open recycle directory", path: directory, errno: error)
        }
        var initial = Pool()
        if case .success(let entries) = Syscall.directoryEntries(directoryFD) {
            initial.names = entries.map(\.name)
            initial.counter = entries.compactMap { UInt64($0.name.dropFirst(), radix: 16) }.max() ?? 0
        }
        pool = Mutex(initial)
    }

    deinit { Syscall.close(directoryFD) }

    /// Retires an expired file: into the pool, or deleted if the pool is full.
    func recycle(directoryFD source: Int32, name: String) -> Result<Void, Errno> {
        let target: String? = pool.withLock { pool in
            guard pool.names.count < LTXRecycler.capacity else { return nil }
            pool.counter += 1
            return "r" + String(pool.counter, radix: 16)
        }
        guard let target else { return Syscall.unlink(at: source, name) }
        let moved = Syscall.rename(from: source, name, to: directoryFD, target)
        if case .success = moved { pool.withLock { $0.names.append(target) } }
        return moved
    }

    /// Writes `bytes` as the file `name` in `directory`, reusing a pooled
    /// file's inode when there is one. The pooled file is rewritten where it
    /// lies and only then renamed to `name`, so the name never shows an
    /// expired file's bytes or a partial write.
    func write(directoryFD directory: Int32, name: String, bytes: [UInt8]) -> Result<Void, Errno> {
        if let reused = pool.withLock({ $0.names.popLast() }) {
            let rewritten = Syscall.open(at: directoryFD, reused, flags: O_WRONLY).flatMap { fd in
                defer { Syscall.close(fd) }
                return bytes.withUnsafeBytes { Syscall.pwrite(fd, $0, at: 0) }.flatMap { _ in Syscall.ftruncate(fd, Int64(bytes.count)) }
            }
            if case .success = rewritten, case .success = Syscall.rename(from: directoryFD, reused, to: directory, name) {
                return .success(())
            }
            _ = Syscall.unlink(at: directoryFD, reused)
        }
        return LTXMaterializer.writeFile(directoryFD: directory, name: name, bytes: bytes)
    }
}
