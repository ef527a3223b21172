import Foundation

/// What a handler of ``HTTPServer`` answers: a status, a content type and a
/// body. The server adds `Content-Length` and the connection headers.
public struct HTTPServerResponse: Sendable, Equatable {
    /// The HTTP status code (200, 400, ...).
    public var status: Int
    /// The `Content-Type` header.
    public var contentType: String
    /// Further headers (for example `Allow` on a 405).
    public var headers: [String: String]
    /// The body bytes.
    public var body: [UInt8]

    public init(status: Int, contentType: String, headers: [String: String] = [:], body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }

    /// A plain text answer (newline added when missing, so `curl` output ends cleanly).
    public static func text(_ text: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> HTTPServerResponse {
        HTTPServerResponse(status: status, contentType: contentType, body: Array((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// A JSON answer with sorted keys, so the same state always reads the same.
    /// A value that cannot be encoded becomes a 500 naming the type.
    public static func json(_ value: some Encodable, status: Int = 200) -> HTTPServerResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            var body = Array(try encoder.encode(value))
            body.append(UInt8(ascii: "\n"))
            return HTTPServerResponse(status: status, contentType: "application/json", body: body)
        } catch {
            return .text("cannot encode \(type(of: value)) as JSON: \(error)", status: 500)
        }
    }
}
