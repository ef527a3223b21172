/// One HTTP request as ``HTTPServer`` hands it to its handler: fully read,
/// so a handler never deals with streaming or the event loop.
public struct HTTPServerRequest: Sendable, Equatable {
    /// The method as sent ("GET", "POST").
    public var method: String
    /// The path without the query string ("/status").
    public var path: String
    /// The query string without its "?", if any.
    public var query: String?
    /// Header values by lower-cased name (the last one wins when repeated).
    public var headers: [String: String]
    /// The body (at most ``HTTPServer/maximumBodySize`` bytes; larger requests never reach a handler).
    public var body: [UInt8]

    public init(method: String, path: String, query: String? = nil, headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// Splits a request target ("/status?x=1") into path and query.
    static func split(target: String) -> (path: String, query: String?) {
        guard let mark = target.firstIndex(of: "?") else { return (target, nil) }
        return (String(target[..<mark]), String(target[target.index(after: mark)...]))
    }
}
