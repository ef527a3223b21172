#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// What the etcd lease keeps between its loop's turns, and what it
/// publishes in etcd (the holder's key value, each candidate's standing).
extension EtcdLease {
    struct State {
        /// The lease this node holds the key with, and the key's revision.
        var lease: Int64?
        var epoch: Epoch = .unknown
        /// Writes stop at this monotonic time (ns) unless renewed.
        var deadline: UInt64 = 0
        /// The holder this node last acted on (node, create revision).
        var lastHolder: (String, Int64)?
        /// Take the key as soon as it is free (this node is a handoff's target).
        var takeover = false
        /// Do not campaign before this: this node has never been part of a
        /// term, and nodes that hold the data should win a fresh start.
        /// Cleared once it follows a primary. (A handoff holds others back
        /// through the notice in etcd, see ``released(to:)``.)
        var freshHoldBackUntil: ContinuousClock.Instant?
        var description = "starting"
        var lastError: String?
        var lastErrorAt: Date?
        /// Whether the last error still holds: no exchange with etcd has
        /// succeeded since.
        var errorHolds = false
        /// When an exchange with etcd last succeeded.
        var lastContact: ContinuousClock.Instant?
        /// When this node first saw the key free, this time round.
        var freeSince: ContinuousClock.Instant?
        /// Until then, a free key is not campaigned for: candidates of a
        /// cluster starting together publish their standings first. Set at
        /// start (2 TTLs), cleared once this node follows a primary.
        var gatherUntil: ContinuousClock.Instant?
        /// The lease this node's standing is attached to, and what it last said.
        var standingLease: Int64?
        var lastPublished: (standing: Standing, at: ContinuousClock.Instant)?
        /// The synchronous replicas this node published in its current term.
        var synchronousMembers: SynchronousMembers?
        /// This term's ``Progress`` samples, oldest first.
        var progress: [Progress.Sample] = []
    }

    /// What a primary publishes at each renewal (`<key>.progress`, attached
    /// to no lease, written only while it holds the key): how far its
    /// history went, and when, for the last minute. After a crash a
    /// candidate reads how long ago the primary was where the candidate is
    /// now: its lag, for `lease.max-lag` (Patroni's
    /// `maximum_lag_on_failover`, in time rather than bytes).
    struct Progress: Codable, Equatable {
        struct Sample: Codable, Equatable {
            /// The TXIDs of the databases' last transactions, summed (as ``Standing``).
            var transactions: UInt64
            /// The primary's wall clock, in milliseconds since 1970 (only
            /// differences between samples are used).
            var at: Int64
        }

        var node: String
        var epoch: Epoch
        var samples: [Sample]

        /// How far a candidate holding `transactions` is behind the
        /// newest sample: from the last sample it had reached to the
        /// newest (a bound from above, as far as samples go); nil: not
        /// behind what was published.
        func lag(of transactions: UInt64) -> Duration? {
            guard let newest = samples.last, transactions < newest.transactions else { return nil }
            guard let ahead = samples.firstIndex(where: { $0.transactions > transactions }) else { return nil }
            let reached = ahead > 0 ? samples[ahead - 1].at : samples[0].at
            return .milliseconds(max(0, newest.at - reached))
        }
    }

    /// What a candidate publishes before it campaigns
    /// (`<key>.positions/<node>`, attached to a lease of its own): how far
    /// its history goes. The candidate holding the newest history takes the
    /// key; the others hold back while it is live.
    struct Standing: Codable, Equatable {
        var node: String
        /// The highest epoch of any database's last transaction.
        var epoch: Epoch
        /// The TXIDs of the databases' last transactions, summed.
        var transactions: UInt64
        /// Published once the key is free: the term (the holder key's
        /// create revision) this node saw end. Nil while it follows (the
        /// standing then only says the candidate is alive, its position
        /// may be old). A candidate compares itself with standings
        /// published for the same ended term only.
        var after: Int64?

        /// Raft's up-to-date rule (the later last term, then the longer log),
        /// then the name, so that exactly one candidate ranks first.
        func ranks(above other: Standing) -> Bool {
            (epoch, transactions, other.node) > (other.epoch, other.transactions, node)
        }
    }

    /// What the key holds: the primary's name and replication address.
    struct Holder: Codable {
        var node: String
        var address: String
    }
}
