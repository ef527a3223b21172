#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small HTTP/1.1 server for the admin socket and the metrics endpoint.
///
/// Requests are read whole (bodies up to ``maximumBodySize``) and answered
/// by a synchronous handler that runs on a small thread pool, never on the
/// event loop: admin handlers block for seconds (a promotion waits for the
/// lease and the catch-up) and must not stall other requests such as
/// `status` meanwhile.
///
/// On a Unix socket the server refuses to take over a socket another process
/// still answers on, replaces a stale one, creates the missing parent
/// directory and makes the socket `0600` right after binding: whoever can
/// connect can promote the node, so only its owner (root) may.
public final class HTTPServer: Sendable {
    /// Answers one request; may block (it runs on the server's own threads).
    public typealias Handler = @Sendable (HTTPServerRequest) -> HTTPServerResponse

    /// The largest request body accepted (1 MiB); larger requests get 413.
    public static let maximumBodySize = 1 << 20

    private struct Running: Sendable {
        let group: MultiThreadedEventLoopGroup
        let pool: NIOThreadPool
        let channel: any Channel
        /// The socket file this server created (path, inode), removed by ``stop()`` if still its own.
        let socketFile: (path: String, inode: UInt64)?
    }

    private let key: String
    private let handlerThreads: Int
    private let logger: Logger
    private let handler: Handler
    private let running = Mutex<Running?>(nil)

    /// - Parameters:
    ///   - key: the configuration key the address comes from ("admin.socket"), used in errors.
    ///   - handlerThreads: how many requests may block in the handler at once.
    ///   - handler: answers each request, off the event loop.
    public init(key: String, handlerThreads: Int = 4, logger: Logger, handler: @escaping Handler) {
        self.key = key
        self.handlerThreads = max(1, handlerThreads)
        self.logger = logger
        self.handler = handler
    }

    deinit {
        stop()
    }

    /// Binds `address` and starts answering. Throws ``HTTPServerError`` naming
    /// the key and address; nothing is left running or bound on failure.
    public func start(at address: HTTPServerAddress) throws(HTTPServerError) {
        precondition(running.withLock { $0 == nil }, "HTTPServer.start called twice")
        if case .unixSocket(let path) = address { try prepareSocketPath(path) }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: handlerThreads)
        pool.start()
        let handler = self.handler
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 32)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPServerChannelHandler(handler: handler, pool: pool, maximumBodySize: HTTPServer.maximumBodySize))
                }
            }
        func shutDown() {
            try? group.syncShutdownGracefully()
            try? pool.syncShutdownGracefully()
        }

        let channel: any Channel
        var socketFile: (path: String, inode: UInt64)?
        switch address {
        case .unixSocket(let path):
            do {
                channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
            } catch {
                shutDown()
                throw HTTPServerError(.bind, key: key, address: path, "cannot be bound: \(HTTPServer.describe(error))")
            }
            // Before the first request can be answered: only the owner may connect.
            let made = Syscall.chmod(at: AT_FDCWD, path, mode: 0o600).flatMap { Syscall.stat(path) }
            switch made {
            case .success(let st):
                socketFile = (path, UInt64(st.st_ino))
            case .failure(let errno):
                try? channel.close().wait()
                _ = Syscall.unlink(at: AT_FDCWD, path)
                shutDown()
                throw HTTPServerError(.bind, key: key, address: path, "cannot be made private (chmod 0600): \(errno)")
            }
        case .tcp(let host, let port):
            do {
                channel = try bootstrap.serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .bind(host: host, port: port).wait()
            } catch {
                shutDown()
                throw HTTPServerError(.bind, key: key, address: address.description, "cannot be bound: \(HTTPServer.describe(error))")
            }
        }
        running.withLock { $0 = Running(group: group, pool: pool, channel: channel, socketFile: socketFile) }
        logger.info("listening", metadata: ["\(key)": "\(boundAddress?.description ?? address.description)"])
    }

    /// Where the server listens now, with the real port when bound to port 0
    /// (tests); `nil` when not running.
    public var boundAddress: HTTPServerAddress? {
        running.withLock { running -> HTTPServerAddress? in
            guard let running else { return nil }
            if let file = running.socketFile { return .unixSocket(path: file.path) }
            guard let local = running.channel.localAddress, let port = local.port else { return nil }
            return .tcp(host: local.ipAddress ?? "?", port: port)
        }
    }

    /// Stops listening, lets handlers already running finish, and removes the
    /// socket file if it is still the one this server created. Idempotent.
    public func stop() {
        guard let stopping = running.withLock({ running -> Running? in
            defer { running = nil }
            return running
        }) else { return }
        try? stopping.channel.close().wait()
        try? stopping.group.syncShutdownGracefully()
        try? stopping.pool.syncShutdownGracefully()
        if let file = stopping.socketFile, case .success(let st) = Syscall.stat(file.path), UInt64(st.st_ino) == file.inode {
            _ = Syscall.unlink(at: AT_FDCWD, file.path)
        }
    }

    /// Creates the parent directory if missing; removes a stale socket file
    /// (nobody answers on it) and refuses a live one or anything else.
    private func prepareSocketPath(_ path: String) throws(HTTPServerError) {
        guard path.hasPrefix("/"), path.count > 1 else {
            throw HTTPServerError(.invalidAddress, key: key, address: path, "must be an absolute path")
        }
        if case .failure(let errno) = HTTPServer.makeDirectories(HTTPServer.parent(of: path)) {
            throw HTTPServerError(.directory, key: key, address: path, "cannot create its directory \(HTTPServer.parent(of: path)): \(errno)")
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
        switch HTTPServer.probe(socket: path) {
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

    /// Connects to a Unix socket and closes at once: `.success` means a
    /// process listens on it. `connect(2)` on a Unix socket does not wait for
    /// the peer to accept, so this returns immediately either way.
    static func probe(socket path: String) -> Result<Void, Errno> {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        do {
            let channel = try ClientBootstrap(group: group).connectTimeout(.seconds(2)).connect(unixDomainSocketPath: path).wait()
            try? channel.close().wait()
            return .success(())
        } catch {
            return .failure(errno(of: error) ?? .io)
        }
    }

    /// The errno inside a NIO connect or bind error, if there is one.
    static func errno(of error: any Error) -> Errno? {
        if let io = error as? IOError { return Errno(rawValue: io.errnoCode) }
        if let connection = error as? NIOConnectionError {
            for failure in connection.connectionErrors {
                if let found = errno(of: failure.error) { return found }
            }
        }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError { return Errno(rawValue: ETIMEDOUT) }
        return nil
    }

    /// A short reason for a NIO error: the errno's text when there is one.
    static func describe(_ error: any Error) -> String {
        errno(of: error).map { "\($0)" } ?? "\(error)"
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// `mkdir -p` with mode 0755 (the socket itself is 0600).
    static func makeDirectories(_ path: String) -> Result<Void, Errno> {
        switch Syscall.stat(path) {
        case .success(let st):
            return st.st_mode & S_IFMT == S_IFDIR ? .success(()) : .failure(.notDirectory)
        case .failure(.noEntry):
            if case .failure(let errno) = makeDirectories(parent(of: path)) { return .failure(errno) }
            switch Syscall.mkdir(at: AT_FDCWD, path, mode: 0o755) {
            case .success, .failure(.exists): return .success(())
            case .failure(let errno): return .failure(errno)
            }
        case .failure(let errno):
            return .failure(errno)
        }
    }
}
