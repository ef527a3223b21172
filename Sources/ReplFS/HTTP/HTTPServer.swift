#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The HTTP/1.1 server of the admin socket and the metrics endpoint:
/// Hummingbird 2 serves the connections, and a synchronous ``Handler``
/// answers each request, read whole (bodies up to ``maximumBodySize``).
///
/// The handler runs on a small thread pool of its own, never on the
/// concurrency pool: admin handlers block for seconds (a promotion waits for
/// the lease and the catch-up) and must not stall other requests such as
/// `status` meanwhile.
///
/// ``start(at:)`` binds before it returns, so a daemon reports an address in
/// use as a startup error; the server is then a `Service` of the daemon's
/// group, which stops it at graceful shutdown (requests in flight finish).
/// On a Unix socket it follows ``UnixSocketPath``'s rules and makes the
/// socket `0600` before ``start(at:)`` returns: whoever can connect can
/// promote the node, so only its owner (root) may.
public final class HTTPServer: Service, Sendable {
    /// Answers one request; may block (it runs on the server's own threads).
    public typealias Handler = @Sendable (HTTPServerRequest) -> HTTPServerResponse

    /// The largest request body accepted (1 MiB); larger requests get 413.
    public static let maximumBodySize = 1 << 20

    private struct Running: Sendable {
        /// Runs the Hummingbird application; shut down gracefully to stop it.
        let group: ServiceGroup
        /// Ends when the application has stopped.
        let served: Task<Void, Never>
        let pool: NIOThreadPool
        let address: HTTPServerAddress
        /// The socket file this server created, removed by ``stop()`` if still its own.
        let socket: UnixSocketPath.Created?
    }

    /// What the application reports first: listening (on this address), or ended.
    private enum Startup: Sendable {
        case listening(SocketAddress?)
        case ended((any Error)?)
    }

    private let key: String
    private let handlerThreads: Int
    private let logger: Logger
    private let handler: Handler
    private let running = Mutex<Running?>(nil)

    /// - Parameters:
    ///   - key: the configuration key the address comes from ("admin.socket"), used in errors.
    ///   - handlerThreads: how many requests may block in the handler at once.
    ///   - handler: answers each request, off the concurrency pool.
    public init(key: String, handlerThreads: Int = 4, logger: Logger, handler: @escaping Handler) {
        self.key = key
        self.handlerThreads = max(1, handlerThreads)
        self.logger = logger
        self.handler = handler
    }

    /// Binds `address` and starts answering. Throws ``HTTPServerError`` naming
    /// the key and address; nothing is left running or bound on failure.
    public func start(at address: HTTPServerAddress) async throws(HTTPServerError) {
        precondition(running.withLock { $0 == nil }, "HTTPServer.start called twice")
        let bind: BindAddress
        switch address {
        case .unixSocket(let path):
            try UnixSocketPath(key: key, path: path, logger: logger).prepare()
            bind = .unixDomainSocket(path: path)
        case .tcp(let host, let port):
            bind = .hostname(host, port: port)
        }
        let pool = NIOThreadPool(numberOfThreads: handlerThreads)
        pool.start()
        let (events, reporter) = AsyncStream.makeStream(of: Startup.self)
        let responder = HTTPServerResponder(handler: handler, pool: pool, maximumBodySize: HTTPServer.maximumBodySize)
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        let application = Application(
            responder: CallbackResponder { (request: Request, _: BasicRequestContext) in await responder.respond(to: request) },
            configuration: ApplicationConfiguration(address: bind, backlog: 32, reuseAddress: true),
            onServerRunning: { channel in reporter.yield(.listening(channel.localAddress)) },
            logger: quiet)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [application], logger: quiet))
        let served = Task {
            do {
                try await group.run()
                reporter.yield(.ended(nil))
            } catch {
                reporter.yield(.ended(error))
            }
            reporter.finish()
        }
        var startup = events.makeAsyncIterator()
        let local: SocketAddress?
        switch await startup.next() {
        case .listening(let address)?:
            local = address
        case .ended(let error)?:
            await served.value
            try? await pool.shutdownGracefully()
            let reason = error.map(HTTPServer.describe) ?? "the server ended at once"
            throw HTTPServerError(.bind, key: key, address: address.description, "cannot be bound: \(reason)")
        case nil:
            preconditionFailure("the startup stream ends only after reporting")
        }
        var socket: UnixSocketPath.Created?
        var bound = address
        if case .unixSocket(let path) = address {
            // Before start returns, and so before the daemon announces it: only the owner may connect.
            switch UnixSocketPath.makePrivate(path) {
            case .success(let created):
                socket = created
            case .failure(let errno):
                await Self.shutDown(group: group, served: served, pool: pool)
                _ = Syscall.unlink(at: AT_FDCWD, path)
                throw HTTPServerError(.bind, key: key, address: path, "cannot be made private (chmod 0600): \(errno)")
            }
        } else if let local, let port = local.port {
            bound = .tcp(host: local.ipAddress ?? "?", port: port)
        }
        running.withLock { $0 = Running(group: group, served: served, pool: pool, address: bound, socket: socket) }
        logger.info("listening", metadata: ["\(key)": "\(bound)"])
    }

    /// Where the server listens now, with the real port when bound to port 0
    /// (tests); `nil` when not running.
    public var boundAddress: HTTPServerAddress? {
        running.withLock { $0?.address }
    }

    /// Serves until graceful shutdown of the daemon's group, then stops.
    public func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }

    /// Stops listening, lets requests in flight finish, and removes the
    /// socket file if it is still the one this server created. Idempotent.
    public func stop() async {
        guard let stopping = running.withLock({ running -> Running? in
            defer { running = nil }
            return running
        }) else { return }
        await Self.shutDown(group: stopping.group, served: stopping.served, pool: stopping.pool)
        stopping.socket?.removeIfStillOurs()
    }

    private static func shutDown(group: ServiceGroup, served: Task<Void, Never>, pool: NIOThreadPool) async {
        await group.triggerGracefulShutdown()
        await served.value
        try? await pool.shutdownGracefully()
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
}
