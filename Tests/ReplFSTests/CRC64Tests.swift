import Testing

@testable import ReplFS

@Suite("CRC64")
struct CRC64Tests {
    @Test("check value of CRC-64/ISO")
    func checkValue() {
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0xB909_56C7_75A4_1001)
    }

    @Test("empty input is zero")
    func emptyInput() {
        #expect(CRC64.checksum([]) == 0)
        #expect(CRC64().value == 0)
    }

    @Test("vector computed by the pure-Python reference")
    func pythonVector() {
        // ltx_reference.crc64(b"The quick brown fox jumps over the lazy dog")
        #expect(CRC64.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x4EF1_4E19_F4C6_E28E)
    }

    @Test("incremental updates equal one shot, for every split point")
    func incremental() {
        let data = LTXFixture.randomBytes(100, seed: 7)
        let whole = CRC64.checksum(data)
        data.withUnsafeBytes { bytes in
            for split in 0...bytes.count {
                var crc = CRC64()
                crc.update(UnsafeRawBufferPointer(rebasing: bytes[..<split]))
                crc.update(UnsafeRawBufferPointer(rebasing: bytes[split...]))
                #expect(crc.value == whole, "split at \(split)")
            }
            // Byte at a time, and unaligned starts.
            var crc = CRC64()
            for i in 0..<bytes.count { crc.update(UnsafeRawBufferPointer(rebasing: bytes[i..<i + 1])) }
            #expect(crc.value == whole)
        }
    }

    @Test("slicing-by-8 agrees with a bitwise CRC")
    func agreesWithBitwise() {
        func bitwise(_ data: [UInt8]) -> UInt64 {
            var crc = ~UInt64(0)
            for byte in data {
                crc ^= UInt64(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xD800_0000_0000_0000 : crc >> 1 }
            }
            return ~crc
        }
        for length in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            let data = LTXFixture.randomBytes(length, seed: UInt64(length))
            #expect(CRC64.checksum(data) == bitwise(data), "length \(length)")
        }
    }

    @Test("4 KiB page throughput (printed; meaningful in release builds)")
    func throughput() {
        let page = LTXFixture.randomBytes(4096, seed: 1)
        let iterations = 20_000
        var sink: UInt64 = 0
        let elapsed = ContinuousClock().measure {
            page.withUnsafeBytes { bytes in
                for _ in 0..<iterations { sink ^= CRC64.checksum(bytes) }
            }
        }
        let perPage = elapsed / iterations
        print("CRC64: 4 KiB page in \(perPage) on average (sink \(sink & 1))")
    }
}
