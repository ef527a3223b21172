import Foundation
import Logging
import ServiceLifecycle

/// The admin API on the Unix socket (`admin.socket`): HTTP with JSON bodies,
/// answered by an ``AdminHandler``.
///
/// Routes: `GET /status`, `POST /promote` (`{"force": bool}`, optional),
/// `POST /demote`, `POST /export` and `POST /import`
/// (`{"database": ..., "path": ...}`). A malformed request is answered 400
/// with a message naming what is wrong and never reaches the handler; an
/// unknown path is 404, a known path with the wrong method 405. Refusals
/// from the handler keep their ``AdminError/Code`` (409 for role conflicts).
public final class AdminServer: Service, Sendable {
    private let server: HTTPServer

    /// - Parameter handlerThreads: how many admin calls may block at once
    ///   (a `status` must still answer while a promotion waits).
    public init(handler: any AdminHandler, handlerThreads: Int = 4, logger: Logger) {
        let router = AdminRouter(handler: handler, logger: logger)
        server = HTTPServer(key: "admin.socket", handlerThreads: handlerThreads, logger: logger) { router.respond(to: $0) }
    }

    /// Listens on the Unix socket at `path` (mode 0600). Throws when another
    /// replfsd answers there or the path cannot be bound.
    public func start(socket path: String) async throws(HTTPServerError) {
        try await server.start(at: .unixSocket(path: path))
    }

    /// Serves until the daemon's graceful shutdown, then stops.
    public func run() async throws {
        try await server.run()
    }

    /// Stops listening and removes the socket file. Idempotent.
    public func stop() async {
        await server.stop()
    }
}
