import Foundation

extension AdminStatus {
    /// The compact text `replfsd status` prints: one line per fact, a label
    /// column first, so an operator sees role, term, lease, positions and
    /// lag at a glance (and `grep replica` works).
    ///
    /// ```
    /// node       node-a (cluster replfs): primary, writable, epoch 7
    /// primary    node-a 10.0.0.1:20202
    /// lease      static, candidate, held, expires in 1500 ms
    /// database   db.sqlite  txid 1042  checksum 8a3f00112233aabb  12 pages x 4096 B
    /// replica    node-b 10.0.0.2:20202  connected  last ack 120 ms ago  db.sqlite lag 0
    /// ```
    public var summary: String {
        var lines: [String] = []
        func line(_ label: String, _ text: String) {
            lines.append(label.padding(toLength: 10, withPad: " ", startingAt: 0) + " " + text)
        }
        line("node", "\(node)\(nodeID.map { " [\($0)]" } ?? "") (cluster \(cluster)): \(role), \(writable ? "writable" : "read-only"), epoch \(epoch)")
        if let primary {
            var text = "\(primary.name) \(primary.address)"
            if role != "primary", lease.type == "etcd", lease.lastErrorHolds == true {
                // What this node last heard, not what is true now.
                text += lease.lastContactMsAgo.map { "  (as known \(Self.seconds($0)) ago; etcd not reached since)" } ?? "  (etcd not reached yet)"
            }
            line("primary", text)
        } else {
            line("primary", "unknown")
        }
        var lease = [self.lease.type, self.lease.candidate ? "candidate" : "not a candidate", self.lease.state]
        if let key = self.lease.key { lease.append("key \(key)") }
        if let expires = self.lease.expiresInMs { lease.append("expires in \(expires) ms") }
        if let error = self.lease.lastError {
            var when = self.lease.lastErrorAt.map { " at \($0)" } ?? ""
            if let holds = self.lease.lastErrorHolds { when += holds ? " (still holds)" : " (cleared since)" }
            lease.append("last error\(when): \(error)")
        }
        line("lease", lease.joined(separator: ", "))
        if let synchronous {
            line(
                "sync",
                synchronous.degraded
                    ? "degraded: commits go on without waiting until \(synchronous.replicas) replica(s) catch up (sync-degrade)"
                    : "commits wait for \(synchronous.replicas) replica(s)"
                        + (synchronous.members.map { " of: " + ($0.isEmpty ? "none published yet" : $0.joined(separator: ", ")) } ?? ""))
        } else {
            line("sync", "off (asynchronous)")
        }
        if let tls {
            line("tls", "on, \(tls.subject), expires \(tls.notAfter) (\(tls.daysToExpiry) days)")
        } else {
            line("tls", "off")
        }
        if let logStall { line("log", logStall) }
        if let applyStall { line("apply", applyStall) }
        if databases.isEmpty { line("database", "none") }
        for database in databases {
            line(
                "database",
                "\(database.name)  txid \(database.txid)  checksum \(database.checksum)  epoch \(database.epoch ?? .unknown)  \(database.pageCount) pages x \(database.pageSize) B")
        }
        for replica in replicas {
            var parts = [replica.node, replica.address, replica.connected ? "connected" : "disconnected"]
            if let ago = replica.lastAckMsAgo { parts.append("last ack \(ago) ms ago") }
            for position in replica.databases {
                parts.append("\(position.name) lag \(position.lagTransactions) (txid \(position.txid))")
            }
            line("replica", parts.joined(separator: "  "))
        }
        if role == "primary" && replicas.isEmpty { line("replica", "none connected") }
        if let upstream {
            var text = "\(upstream.primary)  \(upstream.connected ? "connected" : "disconnected")"
            if let lag = upstream.lagMs, lag > 0 { text += "  applying changes received \(lag) ms ago" }
            if let error = upstream.lastError { text += "  last error: \(error)" }
            line("upstream", text)
        }
        if let process {
            var parts = [process.command.joined(separator: " "), process.state]
            if let pid = process.pid { parts.append("pid \(pid)") }
            if process.state == "running", let ready = process.ready { parts.append(ready ? "ready" : process.notReady ?? "not ready") }
            parts.append("restarts \(process.restarts)")
            if let exit = process.lastExit { parts.append("last exit: \(exit)") }
            line("process", parts.joined(separator: "  "))
        }
        if let backup { line("backup", backup.summary) }
        if let vip { line("vip", "\(vip.address) on \(vip.interface)  \(vip.held ? "held by this node" : "not held here")") }
        for aside in asides { line("aside", aside + (Store.describeAside(aside).map { " (\($0))" } ?? "")) }
        if let lastError { line("error", lastError + (lastErrorAt.map { " (at \($0))" } ?? "")) }
        return lines.joined(separator: "\n")
    }

    /// "850 ms", "12.4 s".
    static func seconds(_ milliseconds: Int) -> String {
        milliseconds < 1000 ? "\(milliseconds) ms" : String(format: "%.1f s", Double(milliseconds) / 1000)
    }
}
