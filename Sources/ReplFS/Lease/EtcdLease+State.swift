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
        /// Since when ``takeover`` is set: a handoff that did not happen
        /// within 3 TTLs (the old primary resumed) ends it.
        var takeoverSince: ContinuousClock.Instant?
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
        /// The term this node handed over (`promote`/`demote`): its
        /// members' confirmations still count for commits waiting then.
        var handedOverEpoch: Epoch?
        /// This term's ``Progress`` samples, oldest first, and the last
        /// renewal's (published only when the history moved).
        var progress: [Progress.Sample] = []
        var lastRenewalSample: Progress.Sample?
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
            /// The primary's monotonic clock, in milliseconds (only
            /// differences between samples of one term are used).
            var at: Int64
        }

        /// How far behind the newest sample a candidate is.
        enum Lag: Equatable {
            case caughtUp
            /// From the last sample it had reached to the newest (a bound from above).
            case behind(Duration)
            /// Behind the oldest sample kept: more than the record shows.
            case beyondRecord
        }

        var node: String
        var epoch: Epoch
        /// Oldest first: the newest sample older than a minute (an anchor),
        /// then every change since; a sample before a change after a
        /// quiet time marks when the quiet ended.
        var samples: [Sample]

        func lag(of transactions: UInt64) -> Lag {
            guard let newest = samples.last, transactions < newest.transactions else { return .caughtUp }
            guard let ahead = samples.firstIndex(where: { $0.transactions > transactions }), ahead > 0 else { return .beyondRecord }
            return .behind(.milliseconds(max(0, newest.at - samples[ahead - 1].at)))
        }

        /// The samples after `sample` is taken at a renewal: a change is
        /// recorded (after the last unchanged renewal, so a quiet time does
        /// not count as lag), and what is older than `window` goes but for
        /// one anchor.
        static func record(_ sample: Sample, after samples: [Sample], lastRenewal: Sample?, window: Int64 = 60_000) -> [Sample]? {
            guard samples.last?.transactions != sample.transactions else { return nil }
            var next = samples
            if let quiet = lastRenewal, quiet.transactions == next.last?.transactions, quiet.at > (next.last?.at ?? .max) { next.append(quiet) }
            next.append(sample)
            if let recent = next.firstIndex(where: { sample.at - $0.at <= window }), recent > 1 { next.removeFirst(recent - 1) }
            return next
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
        /// The TXID of each database's last transaction (absent from
        /// older versions' standings).
        var databases: [String: UInt64]?

        /// Whether this standing holds a transaction `other` lacks in some
        /// database (without per-database TXIDs: whether it ranks above).
        func isAhead(ofAny other: Standing) -> Bool {
            guard let databases, let theirs = other.databases else { return ranks(above: other) }
            return databases.contains { $0.value > (theirs[$0.key] ?? 0) }
        }

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
