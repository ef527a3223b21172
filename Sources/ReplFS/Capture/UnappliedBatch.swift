import Foundation

/// A replicated batch that this node's log holds, durably, but whose pages
/// could not all be written to the database file (a full disk, an I/O
/// error). The file may hold part of the batch, so SQLite's readers are kept
/// out (`gate`) until the batch is written again from its log record; the
/// position stays where the file's last complete batch left it, so nothing
/// is acknowledged and the node does not lead meanwhile.
struct UnappliedBatch {
    /// What the log recorded for the batch, oldest first (the redo).
    var records: [LTXContent]
    /// The batch's transactions, moved into the state once the file holds them.
    var transactions: [Database.Prepared]
    /// This node's own WAL frames (it was primary until now), folded first.
    var ownFrames: [PageNumber: Int]
    var ownPageSize: Int
    var gate: any ReaderGate
}

/// Replicated transactions this node could not record or write, since when
/// (for `status`, the metric, and the refusal to lead).
struct ApplyFailure: Sendable {
    var error: Errno
    /// Wall-clock time of the first failure.
    var since: Date
    var attempts: Int
    /// The log holds transactions through this TXID that the file does not.
    var loggedThrough: TXID?
}
