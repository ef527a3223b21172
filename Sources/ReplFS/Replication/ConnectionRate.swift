import Synchronization

/// How fast new connections may arrive, per address and in all: a token
/// bucket each, refilled continuously.
///
/// With `replication.tls` a connection costs a TLS handshake (public-key
/// operations, about 0.2 ms of CPU on the listener's event loop) before
/// anything proves the peer belongs; ``ConnectionAdmission`` caps how many
/// are open at once, not how fast they come, and a stranger replaying a
/// ClientHello can open thousands a second. The limits are far above what
/// a cluster needs (a handful of peers, reconnecting with backoff, and a
/// static lease's probes) and far below what keeps a core busy.
final class ConnectionRate: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    private struct Buckets {
        var all: Bucket
        var byAddress: [String: Bucket] = [:]
    }

    /// New connections per second from one address, and the burst allowed.
    let perAddress: (rate: Double, burst: Double)
    /// New connections per second from everywhere, and the burst allowed.
    let overall: (rate: Double, burst: Double)
    private let capacity: Int
    private let buckets: Mutex<Buckets>
    private let now: @Sendable () -> UInt64

    init(
        perAddress: (rate: Double, burst: Double) = (50, 100), overall: (rate: Double, burst: Double) = (500, 500), capacity: Int = 1024,
        now: @escaping @Sendable () -> UInt64 = MonotonicClock.nanoseconds
    ) {
        self.perAddress = perAddress
        self.overall = overall
        self.capacity = capacity
        self.now = now
        buckets = Mutex(Buckets(all: Bucket(tokens: overall.burst, updated: now())))
    }

    /// Takes one connection's token from `address` and from the overall
    /// bucket; false (and nothing taken) if either is empty.
    func allow(_ address: String) -> Bool {
        let time = now()
        return buckets.withLock { buckets in
            var all = Self.refilled(buckets.all, at: time, overall)
            var mine = buckets.byAddress[address].map { Self.refilled($0, at: time, perAddress) } ?? Bucket(tokens: perAddress.burst, updated: time)
            guard all.tokens >= 1, mine.tokens >= 1 else {
                buckets.all = all
                buckets.byAddress[address] = mine
                return false
            }
            all.tokens -= 1
            mine.tokens -= 1
            buckets.all = all
            if buckets.byAddress.count >= capacity, buckets.byAddress[address] == nil {
                // Full buckets say nothing: forget those first, then anyone.
                let full = buckets.byAddress.first { Self.refilled($0.value, at: time, perAddress).tokens >= perAddress.burst }?.key
                buckets.byAddress.removeValue(forKey: full ?? buckets.byAddress.keys.first!)
            }
            buckets.byAddress[address] = mine
            return true
        }
    }

    private static func refilled(_ bucket: Bucket, at time: UInt64, _ limit: (rate: Double, burst: Double)) -> Bucket {
        let elapsed = Double(time &- bucket.updated) / 1e9
        return Bucket(tokens: min(limit.burst, bucket.tokens + elapsed * limit.rate), updated: time)
    }
}
