import Synchronization

/// How many connections a replication listener holds, and how many of them
/// have not proven the token yet.
///
/// A stranger can open connections for free; each costs this node a socket,
/// a pipeline and up to one frame of buffer. Capping connections that have
/// not authenticated (and all connections) bounds what strangers cost,
/// whatever they send, while authenticated replicas are never turned away
/// by them: a peer that proves the token leaves the unauthenticated count.
final class ConnectionAdmission: Sendable {
    /// Connections still in their handshake, at most.
    let maximumUnauthenticated: Int
    /// Connections of any kind, at most (a cluster has a handful of nodes).
    let maximumConnections: Int

    private struct Counts {
        var unauthenticated = 0
        var total = 0
    }

    private let counts = Mutex(Counts())

    init(maximumUnauthenticated: Int = 16, maximumConnections: Int = 64) {
        self.maximumUnauthenticated = maximumUnauthenticated
        self.maximumConnections = maximumConnections
    }

    /// Counts a new connection in, or returns false if a cap is reached.
    func admit() -> Bool {
        counts.withLock { counts in
            guard counts.unauthenticated < maximumUnauthenticated, counts.total < maximumConnections else { return false }
            counts.unauthenticated += 1
            counts.total += 1
            return true
        }
    }

    /// An admitted connection proved the token.
    func authenticated() {
        counts.withLock { $0.unauthenticated -= 1 }
    }

    /// An admitted connection closed.
    func closed(authenticated: Bool) {
        counts.withLock { counts in
            if !authenticated { counts.unauthenticated -= 1 }
            counts.total -= 1
        }
    }

    /// Connections held now, and how many are unauthenticated.
    var current: (total: Int, unauthenticated: Int) {
        counts.withLock { ($0.total, $0.unauthenticated) }
    }
}
