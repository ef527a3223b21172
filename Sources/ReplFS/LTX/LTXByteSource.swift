/// Where an `LTXDecoder` reads from.
///
/// A minimal pull interface, like POSIX `read(2)`, so the decoder can stream a
/// file of any size through a fixed buffer and the same decoder works on
/// memory, files, or anything else (a FUSE read handle, a network stream).
public protocol LTXByteSource {
    /// Reads up to `buffer.count` bytes into the start of `buffer` and returns
    /// how many were read. Returns 0 only at the end of the data; short reads
    /// are fine. Failures are reported as `LTXError` (typically `.io`).
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws(LTXError) -> Int
}
