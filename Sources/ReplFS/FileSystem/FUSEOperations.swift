#if canImport(Glibc)
import Glibc
#endif
import CFuse

/// The libfuse low-level callbacks: each one decodes a request, makes one
/// call on ``FileSystem`` (or its ``Store``) and sends one reply.
///
/// They run on libfuse's worker threads, synchronously; they hold no state of
/// their own. The request's user data is the `FileSystem`; an open file's
/// `fh` is a retained ``StoreFile`` (a ``FileSystem/DirectoryListing`` for
/// directories), released in RELEASE/RELEASEDIR.
///
/// No lock handlers (getlk/setlk/flock) are registered on purpose: the kernel
/// then serves POSIX locks for the mount itself, correctly between
/// processes, with no round trip (SQLite takes 6 per WAL transaction).
enum FUSEOperations {
    @inline(__always)
    static func fileSystem(_ req: fuse_req_t?) -> FileSystem {
        Unmanaged<FileSystem>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    @inline(__always)
    static func file(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> StoreFile? {
        guard let fi, fi.pointee.fh != 0, let pointer = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) else { return nil }
        return Unmanaged<StoreFile>.fromOpaque(pointer).takeUnretainedValue()
    }

    @inline(__always)
    static func listing(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> FileSystem.DirectoryListing? {
        guard let fi, fi.pointee.fh != 0, let pointer = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) else { return nil }
        return Unmanaged<FileSystem.DirectoryListing>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// The thread that made the request (FUSE reports its ID as "pid").
    @inline(__always)
    static func caller(_ req: fuse_req_t?) -> Store.Caller {
        Store.Caller(pid: fuse_req_ctx(req)?.pointee.pid ?? 0)
    }

    /// Runs one callback's work, timed for the metrics when they are on.
    /// The file system is looked up first: a reply frees the request.
    @inline(__always)
    static func measure(_ req: fuse_req_t?, _ operation: ReplFSMetrics.FUSEOperation, _ body: () -> Void) {
        guard let metrics = fileSystem(req).metrics else { return body() }
        let started = ContinuousClock.now
        body()
        metrics.recordFUSEOperation(operation, duration: ContinuousClock.now - started)
    }

    /// The request carries no `fuse_file_info` where the operation needs one.
    static let noFileInfo = FileSystemError(.invalid, "the request carries no file information")

    /// The request's file handle is not an open file of this mount.
    static let noOpenFile = FileSystemError(.badHandle, "the request names no open file")

    /// Replies with the errno of `failure`: every error reply goes through
    /// here, and its number is made in one place (``FileSystemError/errno``).
    @inline(__always)
    static func error(_ req: fuse_req_t?, _ failure: FileSystemError) {
        fuse_reply_err(req, failure.errno.rawValue)
    }

    @inline(__always)
    static func done(_ req: fuse_req_t?, _ result: Result<Void, FileSystemError>) {
        switch result {
        case .success: fuse_reply_err(req, 0)
        case .failure(let failure): error(req, failure)
        }
    }

    static func entry(_ req: fuse_req_t?, _ fs: FileSystem, _ result: Result<FileSystem.Entry, FileSystemError>) {
        switch result {
        case .success(let value):
            var parameters = fuse_entry_param()
            parameters.ino = fuse_ino_t(value.id)
            parameters.attr = value.attributes
            parameters.attr_timeout = fs.attributeTimeout
            parameters.entry_timeout = fs.entryTimeout
            if fuse_reply_entry(req, &parameters) != 0, value.id != 0 {
                // The kernel did not take the reference (interrupted request).
                fs.forget(value.id, count: 1)
            }
        case .failure(let failure):
            error(req, failure)
        }
    }

    static func attributes(_ req: fuse_req_t?, _ fs: FileSystem, _ result: Result<stat, FileSystemError>) {
        switch result {
        case .success(var st): fuse_reply_attr(req, &st, fs.attributeTimeout)
        case .failure(let failure): error(req, failure)
        }
    }

    static func retain(_ file: StoreFile, into fi: UnsafeMutablePointer<fuse_file_info>, store: Store) {
        fi.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(file).toOpaque()))
        // keep_cache: reads stay in the page cache across opens (the store
        // invalidates what changes underneath); direct_io for journals and
        // WALs (see Store.prefersDirectIO); noflush: close(2) costs no round
        // trip unless the store needs to see it.
        let direct = store.prefersDirectIO(file)
        cfuse_fi_set_open_flags(fi, direct ? 0 : 1, direct ? 1 : 0, store.needsFlush(file) ? 0 : 1)
    }

    /// The operation table handed to `fuse_session_new`.
    static func make() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()

        ops.`init` = { _, conn in
            guard let conn else { return }
            let unwanted = UInt32(FUSE_CAP_AUTO_INVAL_DATA) | UInt32(FUSE_CAP_WRITEBACK_CACHE) | UInt32(FUSE_CAP_ATOMIC_O_TRUNC)
                | UInt32(FUSE_CAP_POSIX_LOCKS) | UInt32(FUSE_CAP_FLOCK_LOCKS) | UInt32(FUSE_CAP_READDIRPLUS)
            cfuse_conn_configure(conn, UInt32(FUSE_CAP_ASYNC_READ) | UInt32(FUSE_CAP_PARALLEL_DIROPS), unwanted, 0, 1)
        }

        ops.lookup = { req, parent, name in
            FUSEOperations.measure(req, .lookup) {
                let fs = FUSEOperations.fileSystem(req)
                FUSEOperations.entry(req, fs, fs.lookup(parent: UInt64(parent), name: String(cString: name!)))
            }
        }

        ops.forget = { req, ino, count in
            FUSEOperations.measure(req, .forget) {
                FUSEOperations.fileSystem(req).forget(UInt64(ino), count: count)
                fuse_reply_none(req)
            }
        }

        ops.forget_multi = { req, count, forgets in
            FUSEOperations.measure(req, .forget) {
                let fs = FUSEOperations.fileSystem(req)
                if let forgets {
                    for i in 0..<count { fs.forget(UInt64(forgets[i].ino), count: forgets[i].nlookup) }
                }
                fuse_reply_none(req)
            }
        }

        ops.getattr = { req, ino, fi in
            FUSEOperations.measure(req, .getattr) {
                let fs = FUSEOperations.fileSystem(req)
                FUSEOperations.attributes(req, fs, fs.attributes(UInt64(ino), file: FUSEOperations.file(fi)))
            }
        }

        ops.setattr = { req, ino, attr, toSet, fi in
            FUSEOperations.measure(req, .setattr) {
                let fs = FUSEOperations.fileSystem(req)
                guard let attr else { return FUSEOperations.error(req, FUSEOperations.noFileInfo) }
                var changes = FileSystem.AttributeChanges()
                if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = attr.pointee.st_mode }
                if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = attr.pointee.st_uid }
                if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = attr.pointee.st_gid }
                if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = Int64(attr.pointee.st_size) }
                if toSet & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW) != 0 {
                    var atime = timespec(tv_sec: 0, tv_nsec: Syscall.utimeOmit)
                    var mtime = timespec(tv_sec: 0, tv_nsec: Syscall.utimeOmit)
                    if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 {
                        atime.tv_nsec = Syscall.utimeNow
                    } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
                        atime = attr.pointee.st_atim
                    }
                    if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
                        mtime.tv_nsec = Syscall.utimeNow
                    } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
                        mtime = attr.pointee.st_mtim
                    }
                    changes.times = (atime, mtime)
                }
                FUSEOperations.attributes(req, fs, fs.setAttributes(UInt64(ino), file: FUSEOperations.file(fi), changes, caller: FUSEOperations.caller(req)))
            }
        }

        ops.readlink = { req, ino in
            FUSEOperations.measure(req, .readlink) {
                switch FUSEOperations.fileSystem(req).readlink(UInt64(ino)) {
                case .success(let target): fuse_reply_readlink(req, target)
                case .failure(let failure): FUSEOperations.error(req, failure)
                }
            }
        }

        ops.mknod = { req, parent, name, mode, device in
            FUSEOperations.measure(req, .mknod) {
                let fs = FUSEOperations.fileSystem(req)
                FUSEOperations.entry(req, fs, fs.mknod(parent: UInt64(parent), name: String(cString: name!), mode: mode, device: device, caller: FUSEOperations.caller(req)))
            }
        }

        ops.mkdir = { req, parent, name, mode in
            FUSEOperations.measure(req, .mkdir) {
                let fs = FUSEOperations.fileSystem(req)
                FUSEOperations.entry(req, fs, fs.mkdir(parent: UInt64(parent), name: String(cString: name!), mode: mode, caller: FUSEOperations.caller(req)))
            }
        }

        ops.unlink = { req, parent, name in
            FUSEOperations.measure(req, .unlink) {
                FUSEOperations.done(req, FUSEOperations.fileSystem(req).unlink(parent: UInt64(parent), name: String(cString: name!), caller: FUSEOperations.caller(req)))
            }
        }

        ops.rmdir = { req, parent, name in
            FUSEOperations.measure(req, .rmdir) {
                FUSEOperations.done(req, FUSEOperations.fileSystem(req).rmdir(parent: UInt64(parent), name: String(cString: name!), caller: FUSEOperations.caller(req)))
            }
        }

        ops.symlink = { req, target, parent, name in
            FUSEOperations.measure(req, .symlink) {
                let fs = FUSEOperations.fileSystem(req)
                FUSEOperations.entry(req, fs, fs.symlink(target: String(cString: target!), parent: UInt64(parent), name: String(cString: name!), caller: FUSEOperations.caller(req)))
            }
        }

        ops.rename = { req, parent, name, newParent, newName, flags in
            FUSEOperations.measure(req, .rename) {
                let result = FUSEOperations.fileSystem(req).rename(
                    parent: UInt64(parent), name: String(cString: name!), newParent: UInt64(newParent), newName: String(cString: newName!),
                    flags: UInt32(flags), caller: FUSEOperations.caller(req))
                FUSEOperations.done(req, result)
            }
        }

        ops.link = { req, ino, newParent, newName in
            FUSEOperations.measure(req, .link) {
                let fs = FUSEOperations.fileSystem(req)
                FUSEOperations.entry(req, fs, fs.link(UInt64(ino), newParent: UInt64(newParent), newName: String(cString: newName!), caller: FUSEOperations.caller(req)))
            }
        }

        ops.open = { req, ino, fi in
            FUSEOperations.measure(req, .open) {
                let fs = FUSEOperations.fileSystem(req)
                guard let fi else { return FUSEOperations.error(req, FUSEOperations.noFileInfo) }
                switch fs.open(UInt64(ino), flags: cfuse_fi_flags(fi), caller: FUSEOperations.caller(req)) {
                case .success(let file):
                    FUSEOperations.retain(file, into: fi, store: fs.store)
                    if fuse_reply_open(req, fi) != 0 {
                        Unmanaged<StoreFile>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).release()
                    }
                case .failure(let failure):
                    FUSEOperations.error(req, failure)
                }
            }
        }

        ops.create = { req, parent, name, mode, fi in
            FUSEOperations.measure(req, .create) {
                let fs = FUSEOperations.fileSystem(req)
                guard let fi else { return FUSEOperations.error(req, FUSEOperations.noFileInfo) }
                switch fs.create(parent: UInt64(parent), name: String(cString: name!), mode: mode, flags: cfuse_fi_flags(fi), caller: FUSEOperations.caller(req)) {
                case .success(let (created, file)):
                    FUSEOperations.retain(file, into: fi, store: fs.store)
                    var parameters = fuse_entry_param()
                    parameters.ino = fuse_ino_t(created.id)
                    parameters.attr = created.attributes
                    parameters.attr_timeout = fs.attributeTimeout
                    parameters.entry_timeout = fs.entryTimeout
                    if fuse_reply_create(req, &parameters, fi) != 0 {
                        fs.forget(created.id, count: 1)
                        Unmanaged<StoreFile>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).release()
                    }
                case .failure(let failure):
                    FUSEOperations.error(req, failure)
                }
            }
        }

        ops.read = { req, _, size, offset, fi in
            FUSEOperations.measure(req, .read) {
                let fs = FUSEOperations.fileSystem(req)
                guard let file = FUSEOperations.file(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 4096)
                defer { buffer.deallocate() }
                switch fs.store.read(file, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]), at: Int64(offset)) {
                case .success(let count): fuse_reply_buf(req, buffer.baseAddress, count)
                case .failure(let failure): FUSEOperations.error(req, failure)
                }
            }
        }

        ops.write = { req, _, bytes, size, offset, fi in
            FUSEOperations.measure(req, .write) {
                let fs = FUSEOperations.fileSystem(req)
                guard let file = FUSEOperations.file(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                switch fs.store.write(file, UnsafeRawBufferPointer(start: bytes, count: size), at: Int64(offset)) {
                case .success(let count): fuse_reply_write(req, count)
                case .failure(let failure): FUSEOperations.error(req, failure)
                }
            }
        }

        ops.flush = { req, _, fi in
            FUSEOperations.measure(req, .flush) {
                let fs = FUSEOperations.fileSystem(req)
                guard let file = FUSEOperations.file(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                FUSEOperations.done(req, fs.store.flush(file))
            }
        }

        ops.release = { req, _, fi in
            FUSEOperations.measure(req, .release) {
                if let fi, fi.pointee.fh != 0, let pointer = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) {
                    let file = Unmanaged<StoreFile>.fromOpaque(pointer)
                    FUSEOperations.fileSystem(req).store.release(file.takeUnretainedValue())
                    file.release()
                    fi.pointee.fh = 0
                }
                fuse_reply_err(req, 0)
            }
        }

        ops.fsync = { req, _, datasync, fi in
            FUSEOperations.measure(req, .fsync) {
                let fs = FUSEOperations.fileSystem(req)
                guard let file = FUSEOperations.file(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                FUSEOperations.done(req, fs.store.sync(file, dataOnly: datasync != 0))
            }
        }

        ops.opendir = { req, ino, fi in
            FUSEOperations.measure(req, .opendir) {
                let fs = FUSEOperations.fileSystem(req)
                guard let fi else { return FUSEOperations.error(req, FUSEOperations.noFileInfo) }
                switch fs.openDirectory(UInt64(ino)) {
                case .success(let listing):
                    fi.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(listing).toOpaque()))
                    if fuse_reply_open(req, fi) != 0 {
                        Unmanaged<FileSystem.DirectoryListing>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).release()
                    }
                case .failure(let failure):
                    FUSEOperations.error(req, failure)
                }
            }
        }

        ops.readdir = { req, _, size, offset, fi in
            FUSEOperations.measure(req, .readdir) {
                guard let listing = FUSEOperations.listing(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(size, 1))
                defer { buffer.deallocate() }
                var used = 0
                var index = Int(offset)
                while index < listing.items.count {
                    let item = listing.items[index]
                    var st = stat()
                    st.st_ino = ino_t(max(item.inode, 1))
                    st.st_mode = mode_t(item.type) << 12
                    let needed = fuse_add_direntry(req, buffer + used, size - used, item.name, &st, off_t(index + 1))
                    if needed > size - used { break }
                    used += needed
                    index += 1
                }
                fuse_reply_buf(req, buffer, used)
            }
        }

        ops.releasedir = { req, _, fi in
            FUSEOperations.measure(req, .releasedir) {
                if let fi, fi.pointee.fh != 0, let pointer = UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh)) {
                    Unmanaged<FileSystem.DirectoryListing>.fromOpaque(pointer).release()
                    fi.pointee.fh = 0
                }
                fuse_reply_err(req, 0)
            }
        }

        ops.fsyncdir = { req, _, _, fi in
            FUSEOperations.measure(req, .fsyncdir) {
                let fs = FUSEOperations.fileSystem(req)
                guard let listing = FUSEOperations.listing(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                FUSEOperations.done(req, fs.store.syncDirectory(listing.fd))
            }
        }

        ops.statfs = { req, _ in
            FUSEOperations.measure(req, .statfs) {
                switch FUSEOperations.fileSystem(req).statistics() {
                case .success(var st): fuse_reply_statfs(req, &st)
                case .failure(let failure): FUSEOperations.error(req, failure)
                }
            }
        }

        ops.fallocate = { req, _, mode, offset, length, fi in
            FUSEOperations.measure(req, .fallocate) {
                let fs = FUSEOperations.fileSystem(req)
                guard let file = FUSEOperations.file(fi) else { return FUSEOperations.error(req, FUSEOperations.noOpenFile) }
                FUSEOperations.done(req, fs.store.fallocate(file, mode: mode, offset: Int64(offset), length: Int64(length)))
            }
        }

        return ops
    }
}
