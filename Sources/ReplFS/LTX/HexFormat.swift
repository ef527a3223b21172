/// Fixed-width hex formatting shared by TXIDs, checksums and file names.
///
/// Kept internal and Foundation-free so formatting a file name on the commit
/// path does not go through `String(format:)`.
enum HexFormat {
    /// `value` as exactly sixteen lowercase hex digits.
    static func sixteenDigits(_ value: UInt64) -> String {
        let digits = String(value, radix: 16, uppercase: false)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// `byte` as exactly two lowercase hex digits, for dumping raw bytes.
    static func twoDigits(_ byte: UInt8) -> String {
        byte < 0x10 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
    }

    /// Parses exactly sixteen lowercase hex digits; anything else is `nil`
    /// (upper case is rejected so that every value has one spelling).
    static func parseSixteenDigits(_ text: Substring) -> UInt64? {
        guard text.utf8.count == 16 else { return nil }
        var value: UInt64 = 0
        for c in text.utf8 {
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }
}
