import NIOCore

/// Encodes and decodes protocol frames.
///
/// ```
/// u32  length of what follows (type + payload + checksum), big-endian
/// u8   message type
/// ...  payload
/// u64  CRC-64/ISO of type + payload
/// ```
///
/// The checksum makes a flipped bit or a spliced stream fail loudly instead
/// of being applied; LTX files inside carry their own checksums too.
public enum ReplicationFrameCodec {
    /// Largest frame accepted (LTX files are sent in parts well below this).
    public static let maximumFrameSize = 32 << 20
    /// Largest frame accepted from a peer that has not proven the token yet:
    /// a handshake is a few hundred bytes, and a stranger's length prefix
    /// must not make this node buffer megabytes (design.md, invariant 7).
    public static let unauthenticatedFrameSize = 64 << 10
    /// Size of the LTX parts a large file is split into.
    public static let ltxPartSize = 1 << 20

    private enum MessageType: UInt8 {
        case hello = 1
        case challenge = 2
        case authenticate = 3
        case refused = 4
        case welcome = 5
        case ltx = 10
        case epochs = 11
        case putFile = 20
        case removePath = 21
        case makeDirectory = 22
        case symlink = 23
        case heartbeat = 30
        case acknowledge = 31
        case logged = 32
        case handoffRequest = 40
        case handoff = 41
        case handoffAccepted = 42
    }

    /// One message, framed, in a new buffer.
    public static func frame(_ message: ReplicationMessage, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(message, into: &buffer)
        return buffer
    }

    /// Appends one framed message to `buffer`.
    public static func encode(_ message: ReplicationMessage, into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let bodyStart = buffer.writerIndex
        switch message {
        case .hello(let hello):
            write(hello, into: &buffer)
        case .challenge(let challenge):
            write(challenge, into: &buffer)
        case .welcome(let welcome):
            write(welcome, into: &buffer)
        case .authenticate(let authenticate):
            write(authenticate, into: &buffer)
        case .refused(let reason):
            buffer.writeInteger(MessageType.refused.rawValue)
            buffer.writeShortString(reason)
        case .epochs(let database, let history):
            buffer.writeInteger(MessageType.epochs.rawValue)
            buffer.writeShortString(database)
            buffer.writeInteger(UInt32(history.entries.count))
            for entry in history.entries {
                buffer.writeInteger(entry.epoch.rawValue)
                buffer.writeInteger(entry.firstTXID.rawValue)
            }
        case .ltx(let database, let part, let bytes):
            buffer.writeInteger(MessageType.ltx.rawValue)
            buffer.writeShortString(database)
            buffer.writeInteger(part.rawValue)
            buffer.writeBlob(bytes)
        case .putFile(let file):
            buffer.writeInteger(MessageType.putFile.rawValue)
            buffer.writeShortString(file.path)
            buffer.writeInteger(file.mode)
            buffer.writeBlob(file.content)
        case .removePath(let path):
            buffer.writeInteger(MessageType.removePath.rawValue)
            buffer.writeShortString(path)
        case .makeDirectory(let path, let mode):
            buffer.writeInteger(MessageType.makeDirectory.rawValue)
            buffer.writeShortString(path)
            buffer.writeInteger(mode)
        case .symlink(let path, let target):
            buffer.writeInteger(MessageType.symlink.rawValue)
            buffer.writeShortString(path)
            buffer.writeShortString(target)
        case .heartbeat(let epoch):
            buffer.writeInteger(MessageType.heartbeat.rawValue)
            buffer.writeInteger(epoch.rawValue)
        case .acknowledge(let database, let txid):
            buffer.writeInteger(MessageType.acknowledge.rawValue)
            buffer.writeShortString(database)
            buffer.writeInteger(txid.rawValue)
        case .logged(let database, let txid):
            buffer.writeInteger(MessageType.logged.rawValue)
            buffer.writeShortString(database)
            buffer.writeInteger(txid.rawValue)
        case .handoffRequest(let node):
            buffer.writeInteger(MessageType.handoffRequest.rawValue)
            buffer.writeShortString(node)
        case .handoff(let handoff):
            buffer.writeInteger(MessageType.handoff.rawValue)
            buffer.writeShortString(handoff.node)
            buffer.writeShortString(handoff.address)
            buffer.writeInteger(handoff.epoch.rawValue)
        case .handoffAccepted(let node):
            buffer.writeInteger(MessageType.handoffAccepted.rawValue)
            buffer.writeShortString(node)
        }
        let checksum = buffer.withUnsafeReadableBytes { raw in
            CRC64.checksum(UnsafeRawBufferPointer(rebasing: raw[(bodyStart - buffer.readerIndex)...]))
        }
        buffer.writeInteger(checksum)
        buffer.setInteger(UInt32(buffer.writerIndex - bodyStart), at: lengthIndex)
    }

    // The handshake messages, field by field in the order ``decode(_:limit:)`` reads them.

    private static func write(_ hello: ReplicationMessage.Hello, into buffer: inout ByteBuffer) {
        buffer.writeInteger(MessageType.hello.rawValue)
        buffer.writeInteger(hello.version)
        buffer.writeShortString(hello.cluster)
        buffer.writeShortString(hello.node)
        buffer.writeInteger(hello.nodeID)
        buffer.writeBlob(hello.nonce)
    }

    private static func write(_ challenge: ReplicationMessage.Challenge, into buffer: inout ByteBuffer) {
        buffer.writeInteger(MessageType.challenge.rawValue)
        buffer.writeInteger(challenge.version)
        buffer.writeBlob(challenge.nonce)
        buffer.writeBlob(challenge.proof)
    }

    private static func write(_ welcome: ReplicationMessage.Welcome, into buffer: inout ByteBuffer) {
        buffer.writeInteger(MessageType.welcome.rawValue)
        buffer.writeShortString(welcome.node)
        buffer.writeInteger(welcome.nodeID)
        buffer.writeInteger(welcome.epoch.rawValue)
        buffer.writeInteger(UInt8(welcome.isPrimary ? 1 : 0))
        buffer.writeShortString(welcome.primary)
        buffer.writeShortString(welcome.primaryAddress)
        buffer.writeBlob(welcome.proof)
    }

    private static func write(_ authenticate: ReplicationMessage.Authenticate, into buffer: inout ByteBuffer) {
        buffer.writeInteger(MessageType.authenticate.rawValue)
        buffer.writeBlob(authenticate.proof)
        buffer.writeInteger(authenticate.epoch.rawValue)
        buffer.writeInteger(UInt8((authenticate.candidate ? 1 : 0) | (authenticate.probe ? 2 : 0)))
        buffer.writeShortString(authenticate.address)
        buffer.writeInteger(UInt32(authenticate.positions.count))
        for entry in authenticate.positions {
            buffer.writeShortString(entry.database)
            buffer.writeInteger(entry.position.txid.rawValue)
            buffer.writeInteger(entry.position.checksum.rawValue)
            buffer.writeInteger(entry.position.epoch.rawValue)
        }
        buffer.writeInteger(UInt32(authenticate.files.count))
        for file in authenticate.files {
            buffer.writeShortString(file.path)
            buffer.writeInteger(file.checksum)
        }
    }

    /// Decodes one frame from the front of `buffer`, or returns nil when the
    /// frame is not complete yet. Throws on a malformed frame.
    /// The length prefix is checked against `limit` before any of the frame
    /// is waited for, so an oversized frame costs nothing to refuse.
    public static func decode(_ buffer: inout ByteBuffer, limit: Int = maximumFrameSize) throws(ReplicationProtocolError) -> ReplicationMessage? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 9, Int(length) <= limit else {
            throw ReplicationProtocolError(.frameTooLarge, "frame length \(length) is outside 9...\(limit)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard var body = buffer.readSlice(length: Int(length) - 8), let stored = buffer.readInteger(as: UInt64.self) else {
            throw ReplicationProtocolError(.truncated, "frame shorter than its length")
        }
        let computed = body.withUnsafeReadableBytes { CRC64.checksum($0) }
        guard computed == stored else {
            throw ReplicationProtocolError(.checksumMismatch, "frame checksum \(HexFormat.sixteenDigits(stored)) != computed \(HexFormat.sixteenDigits(computed))")
        }
        let message = try decodeBody(&body)
        guard body.readableBytes == 0 else {
            throw ReplicationProtocolError(.malformed, "\(body.readableBytes) unexpected bytes after the message")
        }
        return message
    }

    private static func decodeBody(_ body: inout ByteBuffer) throws(ReplicationProtocolError) -> ReplicationMessage {
        guard let rawType = body.readInteger(as: UInt8.self) else { throw ReplicationProtocolError(.truncated, "empty frame") }
        guard let type = MessageType(rawValue: rawType) else { throw ReplicationProtocolError(.unknownMessage, "message type \(rawType)") }
        switch type {
        case .hello:
            return .hello(.init(
                version: try body.read(UInt16.self), cluster: try body.readShortString(), node: try body.readShortString(),
                nodeID: try body.read(UInt64.self), nonce: try body.readBlob()))
        case .challenge:
            return .challenge(.init(version: try body.read(UInt16.self), nonce: try body.readBlob(), proof: try body.readBlob()))
        case .welcome:
            return .welcome(.init(
                node: try body.readShortString(), nodeID: try body.read(UInt64.self), epoch: Epoch(try body.read(UInt64.self)),
                isPrimary: try body.read(UInt8.self) != 0, primary: try body.readShortString(), primaryAddress: try body.readShortString(),
                proof: try body.readBlob()))
        case .authenticate:
            let proof = try body.readBlob()
            let epoch = try body.read(UInt64.self)
            let flags = try body.read(UInt8.self)
            let candidate = flags & 1 != 0
            let probe = flags & 2 != 0
            let address = try body.readShortString()
            var positions: [ReplicationMessage.DatabasePosition] = []
            for _ in 0..<(try body.readCount()) {
                let database = try body.readShortString()
                let txid = TXID(try body.read(UInt64.self))
                let checksum = Checksum(try body.read(UInt64.self))
                let epoch = try body.read(UInt64.self)
                positions.append(.init(database: database, position: Position(txid: txid, checksum: checksum, epoch: Epoch(epoch))))
            }
            var files: [ReplicationMessage.FileDigest] = []
            for _ in 0..<(try body.readCount()) {
                files.append(.init(path: try body.readShortString(), checksum: try body.read(UInt64.self)))
            }
            return .authenticate(.init(proof: proof, epoch: Epoch(epoch), candidate: candidate, probe: probe, address: address, positions: positions, files: files))
        case .refused:
            return .refused(reason: try body.readShortString())
        case .epochs:
            let database = try body.readShortString()
            let count = try body.readCount()
            guard count <= EpochHistory.maximumEntries else {
                throw ReplicationProtocolError(.malformed, "epoch history of \(count) entries (at most \(EpochHistory.maximumEntries))")
            }
            var entries: [EpochHistory.Entry] = []
            for _ in 0..<count {
                let epoch = try body.read(UInt64.self)
                let txid = try body.read(UInt64.self)
                guard txid > 0 else { throw ReplicationProtocolError(.malformed, "epoch history entry at TXID 0") }
                entries.append(.init(epoch: Epoch(epoch), firstTXID: TXID(txid)))
            }
            return .epochs(database: database, history: EpochHistory(entries))
        case .ltx:
            return .ltx(database: try body.readShortString(), part: .init(rawValue: try body.read(UInt8.self)), bytes: try body.readBlob())
        case .putFile:
            return .putFile(.init(path: try body.readShortString(), mode: try body.read(UInt32.self), content: try body.readBlob()))
        case .removePath:
            return .removePath(try body.readShortString())
        case .makeDirectory:
            return .makeDirectory(path: try body.readShortString(), mode: try body.read(UInt32.self))
        case .symlink:
            return .symlink(path: try body.readShortString(), target: try body.readShortString())
        case .heartbeat:
            return .heartbeat(epoch: Epoch(try body.read(UInt64.self)))
        case .acknowledge:
            return .acknowledge(database: try body.readShortString(), txid: TXID(try body.read(UInt64.self)))
        case .logged:
            return .logged(database: try body.readShortString(), txid: TXID(try body.read(UInt64.self)))
        case .handoffRequest:
            return .handoffRequest(node: try body.readShortString())
        case .handoff:
            return .handoff(.init(node: try body.readShortString(), address: try body.readShortString(), epoch: Epoch(try body.read(UInt64.self))))
        case .handoffAccepted:
            return .handoffAccepted(node: try body.readShortString())
        }
    }
}

extension ByteBuffer {
    mutating func writeShortString(_ string: String) {
        let utf8 = Array(string.utf8.prefix(Int(UInt16.max)))
        writeInteger(UInt16(utf8.count))
        writeBytes(utf8)
    }

    mutating func writeBlob(_ bytes: [UInt8]) {
        writeInteger(UInt32(bytes.count))
        writeBytes(bytes)
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(ReplicationProtocolError) -> T {
        guard let value = readInteger(as: T.self) else { throw ReplicationProtocolError(.truncated, "message ends inside a field") }
        return value
    }

    mutating func readCount() throws(ReplicationProtocolError) -> Int {
        let count = Int(try read(UInt32.self))
        guard count <= readableBytes else { throw ReplicationProtocolError(.malformed, "count \(count) exceeds the frame") }
        return count
    }

    mutating func readShortString() throws(ReplicationProtocolError) -> String {
        let length = Int(try read(UInt16.self))
        guard let string = readString(length: length) else { throw ReplicationProtocolError(.truncated, "string longer than the frame") }
        return string
    }

    mutating func readBlob() throws(ReplicationProtocolError) -> [UInt8] {
        let length = Int(try read(UInt32.self))
        guard let bytes = readBytes(length: length) else { throw ReplicationProtocolError(.truncated, "field longer than the frame") }
        return bytes
    }
}

/// NIO decoder: bytes to ``ReplicationMessage``s. A malformed frame is an
/// error in the pipeline (the handler logs it with the peer and closes).
public struct ReplicationFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ReplicationMessage

    /// The largest frame accepted now; a listener starts at
    /// ``ReplicationFrameCodec/unauthenticatedFrameSize`` and raises it once
    /// the peer has proven the token.
    public let limit: FrameLimit

    public init(limit: FrameLimit = FrameLimit(ReplicationFrameCodec.maximumFrameSize)) {
        self.limit = limit
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try ReplicationFrameCodec.decode(&buffer, limit: limit.bytes) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw ReplicationProtocolError(.truncated, "connection closed inside a frame (\(buffer.readableBytes) bytes)")
        }
        return .needMoreData
    }
}

/// NIO encoder: ``ReplicationMessage``s to framed bytes.
public struct ReplicationFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = ReplicationMessage

    public init() {}

    public func encode(data: ReplicationMessage, out: inout ByteBuffer) throws {
        ReplicationFrameCodec.encode(data, into: &out)
    }
}

/// The frame-size limit of one connection, shared by its decoder and its
/// handler. Both run on the connection's event loop, which orders every
/// access; it is never touched from another thread.
public final class FrameLimit: @unchecked Sendable {
    public var bytes: Int

    public init(_ bytes: Int) { self.bytes = bytes }
}
