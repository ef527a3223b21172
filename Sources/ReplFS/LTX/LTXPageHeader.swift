/// The six bytes in front of every page frame: page number (u32) and flags
/// (u16), big-endian.
///
/// An all-zero page header terminates the page block. With
/// `Flags.sizePrefix` (ReplFS's log and replication) a u32 compressed size
/// and an LZ4 *block* follow; without it, an LZ4 *frame* (the backup
/// archive's files, see ``LTXEncoder/PageEncoding``).
public struct LTXPageHeader: Hashable, Sendable {
    /// Page header flag bits.
    public struct Flags: OptionSet, Hashable, Sendable {
        /// Raw on-disk bits, unknown bits preserved for error reporting.
        public var rawValue: UInt16

        /// Wraps raw bits.
        public init(rawValue: UInt16) {
            self.rawValue = rawValue
        }

        /// A four-byte compressed size follows the header and the payload is
        /// an LZ4 block. Without it the payload is a legacy LZ4 frame.
        public static let sizePrefix = Flags(rawValue: 1 << 0)

        /// Every bit the format defines.
        public static let all: Flags = [.sizePrefix]
    }

    /// The size of an encoded page header (without the size prefix).
    public static let size = 6

    /// The size of the compressed-size prefix that follows when
    /// `Flags.sizePrefix` is set.
    public static let sizePrefixSize = 4

    /// The all-zero header that ends the page block.
    public static let terminator = LTXPageHeader(pgno: PageNumber(0), flags: [])

    /// The page the frame carries.
    public var pgno: PageNumber
    /// The frame's flags.
    public var flags: Flags

    /// Creates a page header.
    public init(pgno: PageNumber, flags: Flags = .sizePrefix) {
        self.pgno = pgno
        self.flags = flags
    }

    /// Decodes the first six bytes of `bytes`.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(LTXError) {
        guard bytes.count >= LTXPageHeader.size else {
            throw .truncated(offset: bytes.count, expected: "\(LTXPageHeader.size)-byte page header")
        }
        pgno = PageNumber(BigEndian.load(UInt32.self, from: bytes, at: 0))
        flags = Flags(rawValue: BigEndian.load(UInt16.self, from: bytes, at: 4))
    }

    /// Whether this is the end-of-page-block marker.
    public var isTerminator: Bool { pgno.rawValue == 0 && flags.rawValue == 0 }

    /// Appends the six on-disk bytes to `bytes`.
    public func encode(into bytes: inout [UInt8]) {
        BigEndian.append(pgno.rawValue, to: &bytes)
        BigEndian.append(flags.rawValue, to: &bytes)
    }
}
