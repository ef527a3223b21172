/// An incremental CRC-64/ISO hasher, bit-compatible with Go's
/// `crc64.New(crc64.MakeTable(crc64.ISO))`.
///
/// LTX uses this CRC for both the per-file checksum and the per-page database
/// checksum, so it runs over every committed page on the write path. It is
/// therefore implemented with slicing-by-8 lookup tables (eight bytes per loop
/// iteration) over raw pointers, and it never allocates.
///
/// Parameters: reflected polynomial `0xD800000000000000`, initial value and
/// final XOR all ones. `CRC64.checksum("123456789")` is `0xB90956C775A41001`.
public struct CRC64: Sendable, Hashable {
    /// The running register, kept in its complemented (pre-final-XOR) form so
    /// `update` does not have to flip bits on every call.
    @usableFromInline
    internal var state: UInt64

    /// Creates a hasher for an empty input.
    @inlinable
    public init() {
        state = ~0
    }

    /// The CRC of all bytes fed so far. Reading it does not reset the hasher, so
    /// a caller can keep appending afterwards.
    @inlinable
    public var value: UInt64 { ~state }

    /// Feeds `bytes` into the CRC. Calling this repeatedly on consecutive
    /// pieces gives the same result as one call on their concatenation.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, !bytes.isEmpty else { return }
        var remaining = bytes.count
        var crc = state
        CRC64.tables.withUnsafeBufferPointer { tables in
            let t = tables.baseAddress.unsafelyUnwrapped
            while remaining >= 8 {
                crc ^= UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
                crc = t[7 &* 256 &+ Int(crc & 0xFF)]
                    ^ t[6 &* 256 &+ Int((crc &>> 8) & 0xFF)]
                    ^ t[5 &* 256 &+ Int((crc &>> 16) & 0xFF)]
                    ^ t[4 &* 256 &+ Int((crc &>> 24) & 0xFF)]
                    ^ t[3 &* 256 &+ Int((crc &>> 32) & 0xFF)]
                    ^ t[2 &* 256 &+ Int((crc &>> 40) & 0xFF)]
                    ^ t[1 &* 256 &+ Int((crc &>> 48) & 0xFF)]
                    ^ t[Int(crc &>> 56)]
                p += 8
                remaining &-= 8
            }
            while remaining > 0 {
                let byte = p.load(as: UInt8.self)
                crc = t[Int(UInt8(truncatingIfNeeded: crc) ^ byte)] ^ (crc &>> 8)
                p += 1
                remaining &-= 1
            }
        }
        state = crc
    }

    /// Feeds a big-endian 32-bit integer, as LTX does with page numbers.
    @inlinable
    public mutating func update(bigEndian value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { update($0) }
    }

    /// One-shot CRC of `bytes`.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }

    /// One-shot CRC of a byte array; a convenience for tests and cold paths.
    @inlinable
    public static func checksum(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// The reflected ISO polynomial (x^64 + x^4 + x^3 + x + 1, bit-reversed).
    static let polynomial: UInt64 = 0xD800_0000_0000_0000

    /// Eight 256-entry tables laid out back to back. Table 0 is the classic
    /// byte-at-a-time table; table k advances a byte through k further zero
    /// bytes, which is what lets the main loop consume eight bytes at once.
    /// Computed once, lazily and thread-safely, by Swift's `static let`.
    static let tables: [UInt64] = {
        var t = [UInt64](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var crc = UInt64(i)
            for _ in 0..<8 {
                crc = (crc & 1) == 1 ? (crc >> 1) ^ polynomial : crc >> 1
            }
            t[i] = crc
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let previous = t[(k - 1) * 256 + i]
                t[k * 256 + i] = t[Int(previous & 0xFF)] ^ (previous >> 8)
            }
        }
        return t
    }()
}
