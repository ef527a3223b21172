#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix

/// The rules for the file of a listening Unix socket: the server refuses
/// to take over a socket another process still answers on, replaces a
/// stale one (left by a process that died), refuses anything that is not a
/// socket, and creates the missing parent directory.
struct UnixSocketPath {
    /// A socket file a server made, by path and inode: removed at stop only
    /// if it is still that file (another server may have replaced it).
    struct Created: Sendable {
        let path: String
        let inode: UInt64

        func removeIfStillOurs() {
            if case .success(let st) = Syscall.stat(path), UInt64(st.st_ino) == inode {
                _ = Syscall.unlink(at: AT_FDCWD, path)
            }
        }
    }

    /// The configuration key the path comes from ("admin.socket"), for errors.
    let key: String
    let path: String
    let logger: Logger

    /// Makes the path ready to bind, or says why it cannot be.
    func prepare() throws(HTTPServerError) {
        guard path.hasPrefix("/"), path.count > 1 else {
            throw HTTPServerError(.invalidAddress, key: key, address: path, "must be an absolute path")
        }
        let parent = UnixSocketPath.parent(of: path)
        if case .failure(let errno) = Syscall.makeDirectories(parent) {
            throw HTTPServerError(.directory, key: key, address: path, "cannot create its directory \(parent): \(errno)")
        }
        switch Syscall.lstat(at: AT_FDCWD, path) {
        case .failure(.noEntry):
            return
        case .failure(let errno):
            throw HTTPServerError(.bind, key: key, address: path, "cannot be checked: \(errno)")
        case .success(let st):
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                throw HTTPServerError(.notASocket, key: key, address: path, "exists and is not a socket (not removed)")
            }
        }
        switch UnixSocketPath.probe(path) {
        case .success:
            throw HTTPServerError(.inUse, key: key, address: path, "is in use by another replfsd")
        case .failure(let errno) where errno.rawValue == ECONNREFUSED || errno == .noEntry:
            // Left by a replfsd that died: nobody listens, so it is safe to replace.
            logger.notice("removing stale socket", metadata: ["\(key)": "\(path)"])
            if case .failure(let errno) = Syscall.unlink(at: AT_FDCWD, path), errno != .noEntry {
                throw HTTPServerError(.bind, key: key, address: path, "is stale but cannot be removed: \(errno)")
            }
        case .failure(let errno):
            throw HTTPServerError(.bind, key: key, address: path, "cannot be checked (connect: \(errno))")
        }
    }

    /// Makes a freshly bound socket `0600` and says which file it is.
    static func makePrivate(_ path: String) -> Result<Created, Errno> {
        Syscall.chmod(at: AT_FDCWD, path, mode: 0o600)
            .flatMap { Syscall.stat(path) }
            .map { Created(path: path, inode: UInt64($0.st_ino)) }
    }

    /// Connects to a Unix socket and closes at once: `.success` means a
    /// process listens on it. `connect(2)` on a Unix socket does not wait for
    /// the peer to accept, so this returns immediately either way.
    static func probe(_ path: String) -> Result<Void, Errno> {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        do {
            let channel = try ClientBootstrap(group: group).connectTimeout(.seconds(2)).connect(unixDomainSocketPath: path).wait()
            try? channel.close().wait()
            return .success(())
        } catch {
            return .failure(HTTPServer.errno(of: error) ?? .io)
        }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
