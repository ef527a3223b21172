import Testing

@testable import ReplFS

@Suite("Change feed")
struct ChangeFeedTests {
    static func commit(_ feed: ChangeFeed, _ txid: UInt64) {
        feed.storeDidChange(.transaction(database: "db", txid: TXID(txid), epoch: Epoch(1), ltx: .bytes([UInt8](repeating: 7, count: 500))))
    }

    @Test("with no reader the feed keeps nothing; a reader keeps only what it has not read")
    func keepsOnlyUnread() {
        let feed = ChangeFeed()
        for txid in 1...10_000 { Self.commit(feed, UInt64(txid)) }
        #expect(feed.heldEntries == 0, "nobody reads: nothing is held")

        let (reader, start) = feed.join()
        for txid in 10_001...10_100 { Self.commit(feed, UInt64(txid)) }
        #expect(feed.heldEntries == 100)
        guard case .entries(let first) = feed.next(from: start, timeout: 0, reader: reader) else {
            Issue.record("the reader is not behind")
            return
        }
        #expect(first.count == 100)
        // Read up to the end; the next change releases what was read.
        _ = feed.next(from: start + 100, timeout: 0, reader: reader)
        Self.commit(feed, 10_101)
        #expect(feed.heldEntries == 1)
        feed.leave(reader)
        Self.commit(feed, 10_102)
        #expect(feed.heldEntries == 0)
    }

    @Test("a reader that falls behind the limits is told so, and restarts from the next change")
    func behind() {
        let feed = ChangeFeed(maximumBytes: 1 << 20, maximumEntries: 1_000)
        let (reader, start) = feed.join()
        for txid in 1...5_000 { Self.commit(feed, UInt64(txid)) }
        #expect(feed.heldEntries <= 1_000)
        guard case .behind = feed.next(from: start, timeout: 0, reader: reader) else {
            Issue.record("a reader 5,000 changes back is behind a feed of 1,000")
            return
        }
        let restart = feed.restart(reader)
        Self.commit(feed, 5_001)
        guard case .entries(let entries) = feed.next(from: restart, timeout: 0, reader: reader) else {
            Issue.record("after a restart the reader follows")
            return
        }
        #expect(entries.count == 1)
    }
}
