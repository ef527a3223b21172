import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Logging
@testable import ReplFS

/// The parsers that read bytes from outside this node, each as a function
/// that must take any input without crashing, hanging or leaking: the LTX
/// decoder (files from the log, a peer, `verify`), the replication frame
/// codec and the connecting side of the handshake (anything on the
/// replication port), the admin HTTP request parser and router (anything on
/// the admin socket), and the configuration loader.
enum FuzzTarget: String, CaseIterable {
    case ltx
    case frames
    case http
    case config

    /// The target libFuzzer runs, from `REPLFS_FUZZ_TARGET`.
    static let selected: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["REPLFS_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("REPLFS_FUZZ_TARGET must be one of \(allCases.map(\.rawValue))\n".utf8))
            exit(2)
        }
        return target
    }()

    func run(_ input: [UInt8]) {
        switch self {
        case .ltx: Self.decodeLTX(input)
        case .frames: Self.decodeFrames(input)
        case .http: Self.answerHTTP(input)
        case .config: Self.loadConfig(input)
        }
    }

    /// Decodes a whole LTX file: header, every page, trailer and checksums.
    static func decodeLTX(_ input: [UInt8]) {
        var decoder = LTXDecoder(source: LTXMemorySource(input))
        guard let header = try? decoder.decodeHeader(), header.pageSize <= 65536 else { return }
        var page = [UInt8](repeating: 0, count: Int(header.pageSize))
        var pages = 0
        while pages <= 1 << 16, let _ = try? decoder.nextPage(into: &page) { pages += 1 }
        _ = try? decoder.finish()
        _ = input.withUnsafeBytes { try? LTXHeader(decoding: $0) }
    }

    /// Decodes frames as a listener does before a peer authenticates (64 KiB
    /// at most) and answers any challenge and welcome as the connecting
    /// side of the handshake would.
    static func decodeFrames(_ input: [UInt8]) {
        var buffer = ByteBufferAllocator().buffer(bytes: input)
        let identity = ReplicaClient.Identity(
            cluster: "fuzz", node: "node-b", nodeID: 2, candidate: true, address: "127.0.0.1:1", authenticator: Authenticator(token: Array("token".utf8)))
        var initiator = HandshakeInitiator(identity: identity, nonce: Array(repeating: 7, count: 16))
        var limit = ReplicationFrameCodec.unauthenticatedFrameSize
        while let message = try? ReplicationFrameCodec.decode(&buffer, limit: limit) {
            switch message {
            case .challenge(let challenge):
                _ = initiator.answer(challenge, epoch: Epoch(1))
            case .welcome(let welcome):
                if initiator.accepts(welcome) { limit = ReplicationFrameCodec.maximumFrameSize }
            case .authenticate(let authenticate):
                _ = authenticate.claims(identity: initiator.hello)
            case .epochs(_, let history):
                _ = history.epoch(at: TXID(1))
            default:
                break
            }
            // Re-encoding what was decoded must give a frame that decodes the same.
            var again = ReplicationFrameCodec.frame(message, allocator: ByteBufferAllocator())
            guard (try? ReplicationFrameCodec.decode(&again)) == message else { fatalError("frame does not round-trip: \(message)") }
        }
    }

    /// Parses bytes as HTTP requests on the admin socket (NIO's HTTP/1.1
    /// decoder, as the server configures it) and routes each one.
    static func answerHTTP(_ input: [UInt8]) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        guard (try? channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))) != nil else { return }
        _ = try? channel.writeInbound(ByteBufferAllocator().buffer(bytes: input))
        let router = AdminRouter(handler: FuzzAdminHandler(), logger: .init(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            switch part {
            case .head(let value):
                head = value
                body = []
            case .body(let chunk):
                if body.count < HTTPServer.maximumBodySize { body += chunk.readableBytesView }
            case .end:
                guard let request = head else { continue }
                let (path, query) = HTTPServerRequest.split(target: request.uri)
                var headers: [String: String] = [:]
                for (name, value) in request.headers { headers[name.lowercased()] = value }
                _ = router.respond(to: HTTPServerRequest(method: request.method.rawValue, path: path, query: query, headers: headers, body: body))
                head = nil
            }
        }
    }

    /// Loads bytes as a configuration file, and checks it as `mount` does.
    static func loadConfig(_ input: [UInt8]) {
        guard let config = try? ConfigLoader.parse(String(decoding: input, as: UTF8.self), hostname: "fuzz-host") else { return }
        _ = try? config.requireImplemented()
    }
}
