import HTTPTypes
import Hummingbird
import NIOCore
import NIOPosix

/// Turns a Hummingbird request into an ``HTTPServerRequest`` (read whole),
/// runs the synchronous handler on the server's thread pool, and turns its
/// ``HTTPServerResponse`` back. The only place the server's own request and
/// response types meet Hummingbird's.
struct HTTPServerResponder: Sendable {
    let handler: HTTPServer.Handler
    let pool: NIOThreadPool
    let maximumBodySize: Int

    func respond(to incoming: Request) async -> Response {
        var incoming = incoming
        let body: ByteBuffer
        do {
            body = try await incoming.collectBody(upTo: maximumBodySize)
        } catch is NIOTooManyBytesError {
            return Self.response(.text("request body larger than \(maximumBodySize) bytes", status: 413))
        } catch {
            return Self.response(.text("cannot read the request body: \(error)", status: 400))
        }
        var headers: [String: String] = [:]
        for field in incoming.headers { headers[field.name.canonicalName] = field.value }
        let request = HTTPServerRequest(
            method: incoming.method.rawValue, path: incoming.uri.path, query: incoming.uri.query, headers: headers,
            body: Array(body.readableBytesView))
        let handler = self.handler
        do {
            var response = Self.response(try await pool.runIfActive { handler(request) })
            if incoming.method == .head { response.body = ResponseBody() }
            return response
        } catch {
            // The pool is shutting down: the server is stopping.
            return Self.response(.text("server is stopping", status: 503))
        }
    }

    static func response(_ answer: HTTPServerResponse) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = answer.contentType
        for (name, value) in answer.headers.sorted(by: { $0.key < $1.key }) {
            if let name = HTTPField.Name(name) { fields[name] = value }
        }
        return Response(
            status: HTTPResponse.Status(code: answer.status), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
    }
}
