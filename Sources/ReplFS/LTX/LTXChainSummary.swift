/// What a verified (or rebuilt) chain of LTX files adds up to.
///
/// The final TXID and post-apply checksum together are the replication
/// position a replica holding this chain has reached; page size and commit
/// describe the resulting database.
public struct LTXChainSummary: Hashable, Sendable {
    /// How many files the chain contains.
    public var fileCount: Int
    /// The first transaction covered (1 when the chain starts with a snapshot).
    public var firstTXID: TXID
    /// The last transaction covered.
    public var lastTXID: TXID
    /// The database checksum after the last file (zero if untracked).
    public var postApplyChecksum: Checksum
    /// The database page size.
    public var pageSize: UInt32
    /// The database size in pages after the last file.
    public var commit: UInt32
    /// The checksum of the database as rebuilt, computed from the pages
    /// written (`LTXRebuilder`), even when the files track no checksums
    /// (`noChecksum`, as in a backup archive), so it can be compared with
    /// a checksum recorded elsewhere. Nil when no database was built
    /// (`LTXChainVerifier`).
    public var databaseChecksum: Checksum?

    /// Creates a summary.
    public init(
        fileCount: Int, firstTXID: TXID, lastTXID: TXID, postApplyChecksum: Checksum, pageSize: UInt32, commit: UInt32,
        databaseChecksum: Checksum? = nil
    ) {
        self.fileCount = fileCount
        self.firstTXID = firstTXID
        self.lastTXID = lastTXID
        self.postApplyChecksum = postApplyChecksum
        self.pageSize = pageSize
        self.commit = commit
        self.databaseChecksum = databaseChecksum
    }
}

extension LTXChainSummary: CustomStringConvertible {
    /// One line for operators: "5 files, TXID 1..5, position 5/CHECKSUM, 4096-byte pages, 12 pages".
    public var description: String {
        "\(fileCount) file\(fileCount == 1 ? "" : "s"), TXID \(firstTXID.rawValue)..\(lastTXID.rawValue), "
            + "position \(lastTXID)/\(postApplyChecksum), \(pageSize)-byte pages, \(commit) pages"
    }
}
