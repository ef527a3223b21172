/// The 16 bytes that end an LTX file: the database checksum after applying
/// the file, then the checksum of the file itself.
///
/// The post-apply checksum lets a replica confirm it reached the intended
/// state; the file checksum (CRC-64/ISO over header, page headers,
/// *decompressed* page data, index and post-apply checksum, flag set) detects
/// corruption of the file's logical content.
public struct LTXTrailer: Hashable, Sendable {
    /// The size of the encoded trailer.
    public static let size = 16

    /// The database checksum after applying the file; zero with `noChecksum`.
    public var postApplyChecksum: Checksum
    /// The checksum of the file's logical content, with the flag set.
    public var fileChecksum: Checksum

    /// Creates a trailer.
    public init(postApplyChecksum: Checksum, fileChecksum: Checksum) {
        self.postApplyChecksum = postApplyChecksum
        self.fileChecksum = fileChecksum
    }

    /// Decodes the first 16 bytes of `bytes`.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(LTXError) {
        guard bytes.count >= LTXTrailer.size else {
            throw .truncated(offset: bytes.count, expected: "\(LTXTrailer.size)-byte trailer")
        }
        postApplyChecksum = Checksum(BigEndian.load(UInt64.self, from: bytes, at: 0))
        fileChecksum = Checksum(BigEndian.load(UInt64.self, from: bytes, at: 8))
    }

    /// The 16 on-disk bytes.
    public func encode() -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(LTXTrailer.size)
        BigEndian.append(postApplyChecksum.rawValue, to: &bytes)
        BigEndian.append(fileChecksum.rawValue, to: &bytes)
        return bytes
    }

    /// Checks the trailer's checksum fields against the header's rules
    /// (upstream `Trailer.Validate`, plus the deleted-database rule that the
    /// upstream encoder enforces).
    public func validate(for header: LTXHeader) throws(LTXError) {
        if header.tracksChecksums {
            if !postApplyChecksum.hasFlag {
                throw .invalidTrailer(reason: "post-apply checksum \(postApplyChecksum) lacks the flag bit")
            }
            if header.commit == 0 && postApplyChecksum != .emptyDatabase {
                throw .invalidTrailer(
                    reason: "post-apply checksum \(postApplyChecksum) must be \(Checksum.emptyDatabase) for a deleted database (commit 0)")
            }
        } else if postApplyChecksum != .zero {
            throw .invalidTrailer(reason: "post-apply checksum \(postApplyChecksum) not allowed with the noChecksum flag")
        }
        if !fileChecksum.hasFlag {
            throw .invalidTrailer(reason: "file checksum \(fileChecksum) lacks the flag bit")
        }
    }
}
