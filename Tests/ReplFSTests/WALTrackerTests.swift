import Testing

@testable import ReplFS

/// The WAL tracker recognises commits from the writes SQLite makes, as
/// `sqlite3WalFrames` makes them: a 32-byte header at offset 0, then per frame
/// a 24-byte header and the page, each in its own write.
@Suite("WAL tracker")
struct WALTrackerTests {
    static let pageSize = 1024

    static func walHeader(salt1: UInt32 = 0x1111, salt2: UInt32 = 0x2222) -> [UInt8] {
        var bytes: [UInt8] = []
        for value: UInt32 in [0x377F_0682, 3_007_000, UInt32(pageSize), 0, salt1, salt2, 0, 0] { BigEndian.append(value, to: &bytes) }
        return bytes
    }

    static func frameHeader(pgno: UInt32, commit: UInt32, salt1: UInt32 = 0x1111, salt2: UInt32 = 0x2222) -> [UInt8] {
        var bytes: [UInt8] = []
        for value: UInt32 in [pgno, commit, salt1, salt2, 0, 0] { BigEndian.append(value, to: &bytes) }
        return bytes
    }

    static func offset(frame: Int) -> Int64 { Int64(32 + (frame - 1) * (24 + pageSize)) }

    /// Writes one frame as SQLite does; returns the commit the data write completes.
    static func writeFrame(_ tracker: inout WALTracker, _ index: Int, pgno: UInt32, commit: UInt32 = 0, salt1: UInt32 = 0x1111) -> WALTracker.Commit? {
        let header = frameHeader(pgno: pgno, commit: commit, salt1: salt1)
        #expect(header.withUnsafeBytes { tracker.observe($0, at: offset(frame: index)) } == nil, "a header write never completes a commit")
        let page = [UInt8](repeating: UInt8(pgno), count: pageSize)
        return page.withUnsafeBytes { tracker.observe($0, at: offset(frame: index) + 24) }
    }

    @Test("a transaction is the frames after the last commit, ending at the commit frame")
    func commits() throws {
        var tracker = WALTracker()
        _ = Self.walHeader().withUnsafeBytes { tracker.observe($0, at: 0) }
        #expect(Self.writeFrame(&tracker, 1, pgno: 1) == nil)
        #expect(Self.writeFrame(&tracker, 2, pgno: 5) == nil)
        let first = try #require(Self.writeFrame(&tracker, 3, pgno: 2, commit: 5))
        #expect(first.frames == 1...3)
        #expect(first.pageNumbers == [1, 5, 2])
        #expect(first.commitSize == 5)
        #expect(first.isComplete)
        tracker.didCommit(first)
        let second = try #require(Self.writeFrame(&tracker, 4, pgno: 3, commit: 6))
        #expect(second.frames == 4...4)
        #expect(second.pageNumbers == [3])
    }

    @Test("frames a rolled-back transaction left are overwritten, not counted")
    func rollback() throws {
        var tracker = WALTracker()
        _ = Self.walHeader().withUnsafeBytes { tracker.observe($0, at: 0) }
        let first = try #require(Self.writeFrame(&tracker, 1, pgno: 1, commit: 3))
        tracker.didCommit(first)
        // A transaction spills frames 2 and 3, then rolls back.
        #expect(Self.writeFrame(&tracker, 2, pgno: 7) == nil)
        #expect(Self.writeFrame(&tracker, 3, pgno: 8) == nil)
        // The next one starts again at frame 2; its header write resets the frame.
        let header = Self.frameHeader(pgno: 9, commit: 9)
        #expect(header.withUnsafeBytes { tracker.observe($0, at: Self.offset(frame: 2)) } == nil, "stale data does not complete the new frame")
        let page = [UInt8](repeating: 9, count: Self.pageSize)
        let second = try #require(page.withUnsafeBytes { tracker.observe($0, at: Self.offset(frame: 2) + 24) })
        #expect(second.frames == 2...2)
        #expect(second.pageNumbers == [9])
    }

    @Test("a page written in two pieces completes the frame only when whole")
    func splitWrite() throws {
        var tracker = WALTracker()
        _ = Self.walHeader().withUnsafeBytes { tracker.observe($0, at: 0) }
        let header = Self.frameHeader(pgno: 4, commit: 4)
        _ = header.withUnsafeBytes { tracker.observe($0, at: Self.offset(frame: 1)) }
        let page = [UInt8](repeating: 4, count: Self.pageSize)
        #expect(page.withUnsafeBytes { tracker.observe(UnsafeRawBufferPointer(rebasing: $0[0..<600]), at: Self.offset(frame: 1) + 24) } == nil)
        let commit = page.withUnsafeBytes { tracker.observe(UnsafeRawBufferPointer(rebasing: $0[600...]), at: Self.offset(frame: 1) + 24 + 600) }
        #expect(commit?.frames == 1...1)
    }

    @Test("a new WAL header (new salts) restarts numbering; frames with stale salts are ignored")
    func restart() throws {
        var tracker = WALTracker()
        _ = Self.walHeader().withUnsafeBytes { tracker.observe($0, at: 0) }
        let first = try #require(Self.writeFrame(&tracker, 1, pgno: 1, commit: 2))
        tracker.didCommit(first)
        _ = Self.walHeader(salt1: 0x3333).withUnsafeBytes { tracker.observe($0, at: 0) }
        #expect(tracker.lastCommit == 0)
        #expect(Self.writeFrame(&tracker, 1, pgno: 2, commit: 2, salt1: 0x1111) == nil, "old salts: not part of the new WAL")
        let second = try #require(Self.writeFrame(&tracker, 1, pgno: 2, commit: 2, salt1: 0x3333))
        #expect(second.frames == 1...1)
    }

    @Test("a commit whose earlier frames were never seen is reported incomplete")
    func incomplete() throws {
        var tracker = WALTracker()
        _ = Self.walHeader().withUnsafeBytes { tracker.observe($0, at: 0) }
        // Tracking starts at frame 3 (frames 1 and 2 were written before).
        let commit = try #require(Self.writeFrame(&tracker, 3, pgno: 6, commit: 6))
        #expect(!commit.isComplete)
        #expect(commit.frames == 3...3)
    }
}
