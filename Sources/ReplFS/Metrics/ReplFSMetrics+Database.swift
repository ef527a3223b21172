import Prometheus

extension ReplFSMetrics {
    /// The handles of one database's series. The store can keep one per
    /// database and update it without any lookup or lock.
    public struct Database: Sendable {
        /// `replfs_database_txid{database}`.
        public let txid: Gauge
        /// `replfs_commits_total{database}`.
        public let commits: Counter

        /// Records one committed transaction and the database's new TXID.
        public func commit(txid value: UInt64) {
            commits.increment()
            txid.set(Double(value))
        }
    }
}
