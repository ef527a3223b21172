import NIOCore
import Testing

@testable import ReplFS

@Suite("Epoch history")
struct EpochHistoryTests {
    @Test("each TXID has the epoch of the last entry at or before it; before the first, none")
    func lookup() {
        var history = EpochHistory()
        #expect(history.epoch(at: TXID(1)) == nil)
        history.begin(epoch: Epoch(2), at: TXID(1))
        history.begin(epoch: Epoch(2), at: TXID(5))  // same epoch: no new entry
        history.begin(epoch: Epoch(5), at: TXID(6))
        history.begin(epoch: Epoch(9), at: TXID(100))
        #expect(history.entries.count == 3)
        #expect(history.epoch(at: TXID(0)) == nil)
        #expect(history.epoch(at: TXID(1)) == 2)
        #expect(history.epoch(at: TXID(5)) == 2)
        #expect(history.epoch(at: TXID(6)) == 5)
        #expect(history.epoch(at: TXID(99)) == 5)
        #expect(history.epoch(at: TXID(100)) == 9)
        #expect(history.epoch(at: TXID(1 << 40)) == 9)
        #expect(EpochHistory([.init(epoch: Epoch(7), firstTXID: TXID(10))]).epoch(at: TXID(9)) == nil)
    }

    @Test("a new term drops the entries of transactions that never committed; through() cuts at a position")
    func newTermAndCut() {
        var history = EpochHistory([.init(epoch: Epoch(1), firstTXID: TXID(1)), .init(epoch: Epoch(4), firstTXID: TXID(6)), .init(epoch: Epoch(5), firstTXID: TXID(9))])
        history.begin(epoch: Epoch(7), at: TXID(6))
        #expect(history.entries == [.init(epoch: Epoch(1), firstTXID: TXID(1)), .init(epoch: Epoch(7), firstTXID: TXID(6))])
        #expect(history.through(TXID(5)).entries == [.init(epoch: Epoch(1), firstTXID: TXID(1))])
        #expect(history.through(TXID(6)) == history)
        let changed = history.begin(epoch: Epoch(7), at: TXID(8))
        #expect(!changed)
    }

    @Test("the text form round-trips; a malformed line is refused")
    func text() {
        let history = EpochHistory([.init(epoch: Epoch(3), firstTXID: TXID(1)), .init(epoch: 0x1_0000_0001, firstTXID: TXID(77))])
        #expect(history.description == "0000000000000003 0000000000000001\n0000000100000001 000000000000004d\n")
        #expect(EpochHistory(parsing: history.description) == history)
        #expect(EpochHistory(parsing: "") == EpochHistory())
        #expect(EpochHistory(parsing: "3 1\n") == nil)
        #expect(EpochHistory(parsing: "0000000000000003 0000000000000000\n") == nil)
    }

    @Test("a history is bounded, in memory and on the wire")
    func bounded() throws {
        var history = EpochHistory()
        for epoch in 1...UInt64(EpochHistory.maximumEntries + 10) { history.begin(epoch: Epoch(epoch), at: TXID(epoch)) }
        #expect(history.entries.count == EpochHistory.maximumEntries)
        #expect(history.epoch(at: TXID(UInt64(EpochHistory.maximumEntries + 10))) == Epoch(UInt64(EpochHistory.maximumEntries + 10)))
        // A frame claiming more entries than that is malformed.
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeInteger(UInt8(11))
        buffer.writeShortString("db")
        buffer.writeInteger(UInt32(EpochHistory.maximumEntries + 1))
        for index in 0...EpochHistory.maximumEntries {
            buffer.writeInteger(UInt64(1))
            buffer.writeInteger(UInt64(index + 1))
        }
        var framed = ByteBufferAllocator().buffer(capacity: buffer.readableBytes + 12)
        framed.writeInteger(UInt32(buffer.readableBytes + 8))
        framed.writeImmutableBuffer(buffer)
        framed.writeInteger(buffer.withUnsafeReadableBytes { CRC64.checksum($0) })
        #expect(throws: ReplicationProtocolError.self) { _ = try ReplicationFrameCodec.decode(&framed) }
    }
}
