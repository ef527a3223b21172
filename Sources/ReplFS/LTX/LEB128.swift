/// Unsigned LEB128 varints, the encoding of the LTX page index (Go's
/// `binary.AppendUvarint`/`ReadUvarint`): seven bits per byte, least
/// significant group first, high bit set on every byte but the last.
enum LEB128 {
    /// The longest encoding of a `UInt64`.
    static let maxLength = 10

    /// Appends the encoding of `value` to `array`.
    static func append(_ value: UInt64, to array: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            array.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        array.append(UInt8(v))
    }
}
