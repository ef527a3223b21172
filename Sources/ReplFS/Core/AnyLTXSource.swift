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
}
