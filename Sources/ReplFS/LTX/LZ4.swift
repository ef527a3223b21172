import CLZ4

/// A thin wrapper over liblz4's *block* API, the page compression of LTX
/// format version 3.
///
/// Only raw blocks are supported (`LZ4_compress_default` /
/// `LZ4_decompress_safe`); the legacy LZ4 *frame* encoding of older LTX files
/// is deliberately not handled here. Kept internal so the rest of ReplFS does
/// not depend on the C module.
enum LZ4 {
    /// The largest compressed size of `size` input bytes, so a destination of
    /// this size never makes compression fail. 65 809 for a 64 KiB page.
    static func compressBound(_ size: Int) -> Int {
        Int(LZ4_compressBound(Int32(size)))
    }

    /// Compresses `source` into `destination` and returns the compressed
    /// size, or 0 if it did not fit (which cannot happen when `destination`
    /// holds `compressBound(source.count)` bytes).
    static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return 0 }
        return Int(LZ4_compress_default(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count),
            Int32(destination.count)))
    }

    /// Decompresses the block `source` into `destination` and returns the
    /// number of bytes produced, or `nil` if the block is malformed or would
    /// overflow `destination`. liblz4's "safe" decoder never reads or writes
    /// out of bounds, whatever the input.
    static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return nil }
        let n = LZ4_decompress_safe(
            src.assumingMemoryBound(to: CChar.self),
            dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count),
            Int32(destination.count))
        return n < 0 ? nil : Int(n)
    }
}
