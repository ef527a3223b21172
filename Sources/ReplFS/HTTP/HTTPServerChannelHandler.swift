import NIOCore
import NIOHTTP1
import NIOPosix

/// Collects one HTTP request on the event loop, runs the handler on the
/// server's thread pool (handlers block: a promotion waits seconds) and
/// writes the answer back on the event loop.
///
/// `HTTPServerPipelineHandler` (added by `configureHTTPServerPipeline`) holds
/// back pipelined requests until the answer to the current one has ended, so
/// this handler sees one request at a time per connection.
final class HTTPServerChannelHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: HTTPServer.Handler
    private let pool: NIOThreadPool
    private let maximumBodySize: Int
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false

    init(handler: @escaping HTTPServer.Handler, pool: NIOThreadPool, maximumBodySize: Int) {
        self.handler = handler
        self.pool = pool
        self.maximumBodySize = maximumBodySize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = nil
            tooLarge = false
        case .body(var chunk):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > maximumBodySize {
                // Stop buffering; the request is refused at its end.
                tooLarge = true
                body = nil
            } else if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if tooLarge {
                write(
                    context: context, head: head, keepAlive: false,
                    .text("request body larger than \(maximumBodySize) bytes", status: 413))
                return
            }
            let (path, query) = HTTPServerRequest.split(target: head.uri)
            var headers: [String: String] = [:]
            for (name, value) in head.headers { headers[name.lowercased()] = value }
            let request = HTTPServerRequest(
                method: head.method.rawValue, path: path, query: query, headers: headers,
                body: body.map { Array($0.readableBytesView) } ?? [])
            body = nil
            let handler = self.handler
            pool.runIfActive(eventLoop: context.eventLoop) { handler(request) }
                .assumeIsolated()
                .whenComplete { result in
                    switch result {
                    case .success(let response):
                        self.write(context: context, head: head, keepAlive: head.isKeepAlive, response)
                    case .failure:
                        // The pool is shutting down: the server is stopping.
                        self.write(context: context, head: head, keepAlive: false, .text("server is stopping", status: 503))
                    }
                }
        }
    }

    private func write(context: ChannelHandlerContext, head request: HTTPRequestHead, keepAlive: Bool, _ response: HTTPServerResponse) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        for (name, value) in response.headers.sorted(by: { $0.key < $1.key }) { headers.add(name: name, value: value) }
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: request.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !response.body.isEmpty, request.method != .HEAD {
            let buffer = context.channel.allocator.buffer(bytes: response.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
