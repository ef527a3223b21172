import Logging
import Prometheus
import ServiceLifecycle

/// Serves the daemon's metrics at `GET /metrics` on `metrics.listen`, in the
/// Prometheus text format (`text/plain; version=0.0.4`).
///
/// Owns the registry and the ``ReplFSMetrics`` handles the daemon updates;
/// the handles work whether or not the endpoint is started, so the daemon
/// can create them unconditionally and start serving only when configured.
public final class MetricsEndpoint: Service, Sendable {
    /// The content type of the Prometheus text exposition format 0.0.4.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public let registry: PrometheusCollectorRegistry
    public let metrics: ReplFSMetrics
    private let server: HTTPServer

    public init(logger: Logger) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        metrics = ReplFSMetrics(registry: registry)
        server = HTTPServer(key: "metrics.listen", handlerThreads: 1, logger: logger) { MetricsEndpoint.respond(to: $0, registry: registry) }
    }

    /// Listens on "host:port" (port 0 picks a free one; see ``port``).
    public func start(listen address: String) async throws(HTTPServerError) {
        try await server.start(at: HTTPServerAddress.parse(hostPort: address, key: "metrics.listen"))
    }

    /// Serves until the daemon's graceful shutdown, then stops.
    public func run() async throws {
        try await server.run()
    }

    /// The bound port while running.
    public var port: Int? {
        if case .tcp(_, let port) = server.boundAddress { return port }
        return nil
    }

    /// Stops listening. Idempotent.
    public func stop() async {
        await server.stop()
    }

    /// The current exposition text (what a scrape returns).
    public func render() -> String {
        registry.emitToString()
    }

    static func respond(to request: HTTPServerRequest, registry: PrometheusCollectorRegistry) -> HTTPServerResponse {
        switch (request.method, request.path) {
        case ("GET", "/metrics"), ("HEAD", "/metrics"):
            return HTTPServerResponse(status: 200, contentType: contentType, body: registry.emitToBuffer())
        case (_, "/metrics"):
            return HTTPServerResponse(status: 405, contentType: "text/plain; charset=utf-8", headers: ["Allow": "GET"], body: Array("use GET\n".utf8))
        case ("GET", "/"):
            return .text("replfsd metrics: GET /metrics")
        default:
            return .text("not found: \(request.path) (metrics are at /metrics)", status: 404)
        }
    }
}
