import CLZ4

/// A thin wrapper over liblz4: its *block* API, the page compression of
/// LTX format version 3 as ReplFS writes it (`LZ4_compress_default` /
/// `LZ4_decompress_safe`), and its *frame* API, the page encoding of LTX
/// files before the size-prefix flag, which every Litestream 0.5 release
/// reads (the backup archive's files). Kept internal so the rest of ReplFS
/// does not depend on the C module.
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

    // MARK: - Frames

    /// The frame preferences of LTX pages: 64 KiB blocks, a content checksum.
    private static var framePreferences: LZ4F_preferences_t {
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max64KB
        preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        return preferences
    }

    /// The largest frame `size` input bytes compress to.
    static func frameBound(_ size: Int) -> Int {
        var preferences = framePreferences
        return LZ4F_compressFrameBound(size, &preferences)
    }

    /// Compresses `source` into one LZ4 frame in `destination`; returns its
    /// size, or 0 if it did not fit (never with `frameBound` bytes).
    static func compressFrame(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int {
        guard let src = source.baseAddress, let dst = destination.baseAddress else { return 0 }
        var preferences = framePreferences
        let n = LZ4F_compressFrame(dst, destination.count, src, source.count, &preferences)
        return LZ4F_isError(n) != 0 ? 0 : n
    }

    /// A streaming decoder of one frame at a time: frames are
    /// self-delimiting, so it is fed what is at hand and says when the
    /// frame ended.
    /// (`@unchecked Sendable`: a decoder finishes each frame within one
    /// call, leaving no state between calls.)
    final class FrameDecoder: @unchecked Sendable {
        private var context: OpaquePointer?

        init?() {
            var context: OpaquePointer?
            guard LZ4F_isError(LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))) == 0 else { return nil }
            self.context = context
        }

        deinit { LZ4F_freeDecompressionContext(context) }

        /// Decodes from `source` into `destination`: how many bytes were
        /// read and written, and whether the frame ended; nil if the input
        /// is not a valid frame (the decoder is then reset).
        func decode(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> (read: Int, written: Int, ended: Bool)? {
            var read = source.count
            var written = destination.count
            let hint = LZ4F_decompress(context, destination.baseAddress, &written, source.baseAddress, &read, nil)
            if LZ4F_isError(hint) != 0 {
                LZ4F_resetDecompressionContext(context)
                return nil
            }
            return (read, written, hint == 0)
        }

        /// Forgets a frame left unfinished.
        func reset() {
            LZ4F_resetDecompressionContext(context)
        }
    }
}
