/// Big-endian load/store helpers for the fixed-width LTX fields.
///
/// LTX stores every fixed-width integer big-endian; these keep the byte
/// shuffling in one place and work on unaligned raw memory.
enum BigEndian {
    /// Reads a big-endian integer of type `T` at `offset`.
    @inline(__always)
    static func load<T: FixedWidthInteger>(_: T.Type, from bytes: UnsafeRawBufferPointer, at offset: Int) -> T {
        T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Writes `value` big-endian at `offset`.
    @inline(__always)
    static func store<T: FixedWidthInteger>(_ value: T, into bytes: UnsafeMutableRawBufferPointer, at offset: Int) {
        bytes.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }

    /// Appends `value` big-endian to `array`.
    @inline(__always)
    static func append<T: FixedWidthInteger>(_ value: T, to array: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { array.append(contentsOf: $0) }
    }
}
