/// An `LTXByteSource` over bytes already in memory, such as an LTX file that
/// was just encoded or received whole.
public struct LTXMemorySource: LTXByteSource, Sendable {
    /// The complete input.
    public let bytes: [UInt8]
    /// How many bytes have been handed out.
    public private(set) var position: Int = 0

    /// Reads from the start of `bytes`.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Copies the next bytes into `buffer`; never fails.
    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int {
        let n = min(buffer.count, bytes.count - position)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[position..<position + n]))
        }
        position += n
        return n
    }
}
