/// An LTX checksum: a CRC-64/ISO value with bit 63 forced on.
///
/// Forcing the top bit guarantees a real checksum is never zero, so zero can
/// mean "not tracked" (snapshots' pre-apply checksum, `noChecksum` files).
///
/// A *database* checksum is the XOR of the checksums of all pages except the
/// lock page, with the flag set. XOR makes it order-independent and lets a
/// writer update it in O(1) per changed page instead of re-reading the
/// database: `new = flag | (old ^ oldPageChecksum ^ newPageChecksum)`.
public struct Checksum: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The stored value.
    public var rawValue: UInt64

    /// Wraps a raw value as read from disk; it may lack the flag.
    @inlinable
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Shorthand for `init(rawValue:)`.
    @inlinable
    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Bit 63, set on every real checksum.
    public static let flag = Checksum(1 << 63)

    /// The checksum of a database with no pages. Equal to `flag` because the
    /// XOR over zero pages is zero; LTX files with `commit == 0` (the database
    /// was deleted) must carry exactly this post-apply checksum.
    public static let emptyDatabase = flag

    /// "No checksum": the pre-apply value of snapshots and both values of
    /// files written with `LTXHeader.Flags.noChecksum`.
    public static let zero = Checksum(0)

    /// Whether bit 63 is set, i.e. whether this is a well-formed checksum.
    @inlinable
    public var hasFlag: Bool { rawValue & Checksum.flag.rawValue != 0 }

    /// The checksum of one page: `flag | crc64(pgno as 4 big-endian bytes ++ data)`.
    ///
    /// Mixing in the page number makes identical content at different page
    /// numbers (for example zero-filled pages) contribute different values, so
    /// they do not cancel out in the database XOR.
    @inlinable
    public static func page(_ pgno: PageNumber, _ data: UnsafeRawBufferPointer) -> Checksum {
        var crc = CRC64()
        crc.update(bigEndian: pgno.rawValue)
        crc.update(data)
        return Checksum(flag.rawValue | crc.value)
    }

    /// Replaces one page's contribution in a database checksum.
    ///
    /// Pass `.zero` as `old` for a page that did not exist before and as `new`
    /// for a page that was truncated away.
    @inlinable
    public func replacingPage(old: Checksum, new: Checksum) -> Checksum {
        Checksum(Checksum.flag.rawValue | (rawValue ^ old.rawValue ^ new.rawValue))
    }

    /// Sixteen lowercase hex digits, as upstream `ltx` prints checksums.
    public var description: String { HexFormat.sixteenDigits(rawValue) }
}
