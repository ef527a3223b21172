/// A one-based SQLite page number.
///
/// Page numbers appear in page frames, in the page index and in the page
/// checksum; giving them their own type stops them from being mixed up with
/// page counts, byte offsets or TXIDs.
public struct PageNumber: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The on-disk value. Zero is not a valid page number: a zero page header
    /// is what terminates the LTX page block.
    public var rawValue: UInt32

    /// Wraps a raw value without validation, because decoders must be able to
    /// represent bad input long enough to report it.
    @inlinable
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Shorthand for `init(rawValue:)`.
    @inlinable
    public init(_ rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Orders pages numerically, the order frames must appear in.
    @inlinable
    public static func < (lhs: PageNumber, rhs: PageNumber) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// The page's byte offset in the database file, `(pgno - 1) * pageSize`.
    @inlinable
    public func fileOffset(pageSize: Int) -> Int {
        (Int(rawValue) - 1) * pageSize
    }

    /// The page that contains SQLite's "pending byte" (file offset 2^30),
    /// which SQLite reserves for locking and never stores data in.
    ///
    /// LTX never encodes this page and the database checksum skips it, so both
    /// the encoder and decoder reject it. It only exists in databases larger
    /// than 1 GiB.
    @inlinable
    public static func lockPage(pageSize: Int) -> PageNumber {
        PageNumber(UInt32(truncatingIfNeeded: 0x4000_0000 / pageSize + 1))
    }

    /// The decimal page number, matching how SQLite tools print them.
    public var description: String { String(rawValue) }
}
