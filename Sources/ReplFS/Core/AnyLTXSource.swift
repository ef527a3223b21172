/// An LTX byte source that is either in memory or a file.
enum AnyLTXSource: LTXByteSource {
    case memory(LTXMemorySource)
    case file(LTXFileSource)

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
        switch self {
        case .memory(var source):
            let n = try source.read(into: buffer)
            self = .memory(source)
            return n
        case .file(var source):
            let n = try source.read(into: buffer)
            self = .file(source)
            return n
        }
    }

    func closeIfFile() {
        if case .file(let source) = self { source.close() }
    }
}

extension LTXContent {
    /// A decoder reading the record from memory or from its file.
    func decoder() throws(LTXError) -> LTXDecoder<AnyLTXSource> {
        switch self {
        case .bytes(let bytes): return LTXDecoder(source: .memory(LTXMemorySource(bytes)))
        case .file(let path): return LTXDecoder(source: .file(try LTXFileSource(path: path)))
        }
    }

    /// The header alone.
    func header() throws(LTXError) -> LTXHeader {
        var decoder = try decoder()
        defer { decoder.source.closeIfFile() }
        return try decoder.decodeHeader()
    }

    /// The LTX file `content` re-encoded to start right after `position`
    /// (which lies inside it): the same pages and post-apply checksum, with
    /// the replica's position as pre-apply checksum. Applying a merged
    /// file's pages (their values after its last transaction) to any state
    /// it went through gives the same result; the replica still verifies
    /// the post-apply checksum.
    func rebased(from position: Position) -> [UInt8]? {
        do {
            var decoder = try decoder()
            defer { decoder.source.closeIfFile() }
            let original = try decoder.decodeHeader()
            var header = original
            header.minTXID = position.txid.next
            header.preApplyChecksum = position.checksum
            var encoder = try LTXEncoder(header: header)
            var page = [UInt8](repeating: 0, count: Int(original.pageSize))
            while let pgno = try decoder.nextPage(into: &page) {
                try encoder.append(pgno, page: page)
            }
            let trailer = try decoder.finish()
            try encoder.finish(postApplyChecksum: trailer.postApplyChecksum)
            return encoder.takeBytes()
        } catch {
            return nil
        }
    }
}
