#if canImport(Glibc)
import Glibc
#endif
import CFuse
import Synchronization

/// A mounted FUSE session serving a ``FileSystem``.
///
/// `@unchecked Sendable`: the session pointer is libfuse's, which is safe to
/// use from any thread for the calls made here (exit, notify, unmount).
///
/// `run()` blocks in libfuse's multi-threaded loop; `stop()` (from any
/// thread) ends it and `unmount()` detaches the mount. libfuse is never asked
/// to daemonize or install signal handlers: the daemon owns signals and
/// shutdown order.
public final class FUSESession: @unchecked Sendable {
    public let mountPoint: String
    private let fileSystem: Unmanaged<FileSystem>
    private let session: OpaquePointer
    private let operations: UnsafeMutablePointer<fuse_lowlevel_ops>
    private let stopping = Atomic(false)
    private let mounted = Atomic(false)

    /// Creates the session and mounts it at `mountPoint`.
    ///
    /// - Parameter options: mount options for `-o`; `allow_other` lets the
    ///   application's own user use the mount, `default_permissions` makes the
    ///   kernel enforce file modes for it (the daemon runs as root).
    public init(fileSystem: FileSystem, mountPoint: String, options: String = "allow_other,default_permissions,fsname=replfs,subtype=replfs")
        throws(MountError)
    {
        self.mountPoint = mountPoint
        let retained = Unmanaged.passRetained(fileSystem)
        let table = UnsafeMutablePointer<fuse_lowlevel_ops>.allocate(capacity: 1)
        table.initialize(to: FUSEOperations.make())
        self.fileSystem = retained
        operations = table

        let arguments = ["replfsd", "-o", options]
        var pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        defer { for pointer in pointers { free(pointer) } }
        let created = pointers.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            var args = cfuse_args(Int32(arguments.count), buffer.baseAddress)
            defer { fuse_opt_free_args(&args) }
            return fuse_session_new(&args, table, MemoryLayout<fuse_lowlevel_ops>.size, retained.toOpaque())
        }
        guard let created else {
            self.fileSystem.release()
            operations.deallocate()
            throw MountError("cannot create FUSE session (bad options: \(options))", path: mountPoint)
        }
        session = created
        guard fuse_session_mount(session, mountPoint) == 0 else {
            fuse_session_destroy(session)
            self.fileSystem.release()
            operations.deallocate()
            throw MountError("cannot mount (is /dev/fuse available and the mount point free?)", path: mountPoint)
        }
        mounted.store(true, ordering: .releasing)
    }

    deinit {
        unmount()
        fuse_session_destroy(session)
        fileSystem.release()
        operations.deinitialize(count: 1)
        operations.deallocate()
    }

    /// Serves requests until ``stop()``; returns libfuse's result.
    public func run(maxThreads: UInt32 = 32) -> Int32 {
        return cfuse_session_loop_mt(session, 8, maxThreads)
    }

    /// Asks the loop to end. libfuse checks its exit flag only between
    /// requests, so one harmless request (STATFS) is sent to wake a worker.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        fuse_session_exit(session)
        let path = mountPoint
        DetachedThread { _ = Syscall.fileSystemStatus(path) }.start()
    }

    /// Detaches the mount (lazily: open files keep working until closed).
    public func unmount() {
        guard mounted.exchange(false, ordering: .acquiringAndReleasing) else { return }
        fuse_session_unmount(session)
    }

    /// Drops the kernel's cached data and attributes of a node.
    @discardableResult
    public func invalidateInode(_ id: UInt64, offset: Int64 = 0, length: Int64 = 0) -> Int32 {
        fuse_lowlevel_notify_inval_inode(session, fuse_ino_t(id), off_t(offset), off_t(length))
    }

    /// Drops the kernel's cached name `name` in directory node `parent`.
    @discardableResult
    public func invalidateEntry(parent: UInt64, name: String) -> Int32 {
        fuse_lowlevel_notify_inval_entry(session, fuse_ino_t(parent), name, name.utf8.count)
    }
}

/// Mounting failed; the message names the path.
public struct MountError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var path: String

    public init(_ message: String, path: String) {
        self.message = message
        self.path = path
    }

    public var description: String { "\(path): \(message)" }
}
