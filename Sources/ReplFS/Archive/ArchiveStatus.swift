/// Where the continuous archive stands, for `replfsd status` and the
/// metrics: per database, the newest archived TXID against the newest
/// committed one, and how long the oldest commit not yet archived has
/// waited.
public struct ArchiveStatus: Codable, Hashable, Sendable {
    public struct Database: Codable, Hashable, Sendable {
        public var name: String
        public var txid: UInt64 = 0
        public var archivedTXID: UInt64 = 0
        /// When the archive last fell behind this database (ms since the
        /// epoch; nil while caught up).
        public var behindSince: Int64?
        /// The newest archived commit's time (ms since the epoch).
        public var archivedAt: Int64?
        public var lagTransactions: UInt64 = 0
        public var lagSeconds: Double = 0

        public init(name: String) {
            self.name = name
        }

        func withLag(now: Int64) -> Database {
            var copy = self
            copy.lagTransactions = txid > archivedTXID ? txid - archivedTXID : 0
            copy.lagSeconds = copy.lagTransactions == 0 ? 0 : Double(max(0, now - (behindSince ?? now))) / 1000
            return copy
        }

        enum CodingKeys: String, CodingKey {
            case name, txid
            case archivedTXID = "archived_txid"
            case behindSince = "behind_since_ms"
            case archivedAt = "archived_at_ms"
            case lagTransactions = "lag_transactions"
            case lagSeconds = "lag_seconds"
        }
    }

    public var path: String
    public var databases: [Database]
    /// The last failure to write the archive, while it lasts.
    public var error: String?
    public var errors: Int
    public var filesWritten: Int

    enum CodingKeys: String, CodingKey {
        case path, databases, error, errors
        case filesWritten = "files_written"
    }

    /// One line for `replfsd status`.
    public var summary: String {
        let behind = databases.filter { $0.lagTransactions > 0 }
        var line = path + ": "
        if behind.isEmpty {
            line += databases.isEmpty ? "nothing archived yet" : "up to date (\(databases.count) database\(databases.count == 1 ? "" : "s"))"
        } else {
            line += behind.map { "\($0.name) \($0.lagTransactions) transactions, \(String(format: "%.1f", $0.lagSeconds)) s behind" }.joined(separator: "; ")
        }
        if let error { line += "; failing: " + error }
        return line
    }
}
