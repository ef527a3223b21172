import Foundation
import Yams

/// Reads and validates a YAML configuration.
///
/// Unknown keys are errors (a misspelt `sync-replica` must not silently mean
/// asynchronous replication), and every error names its key.
public enum ConfigLoader {
    /// Loads `path`. Throws ``ConfigError`` naming the file and the key.
    public static func load(path: String) throws(ConfigError) -> Config {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, key: nil, "cannot read config file")
        }
        do {
            let config = try parse(text)
            // The same check on the paths as the kernel resolves them: a
            // symlink may lead `data` into the mount, which would hang the
            // daemon on its own dead mount.
            try checkSeparate(mount: ResolvedPath.resolved(config.mount), data: ResolvedPath.resolved(config.data))
            return config
        } catch var error {
            error.file = path
            throw error
        }
    }

    /// Refuses a data directory inside the mount point or containing it.
    static func checkSeparate(mount: String, data: String) throws(ConfigError) {
        if mount == data || ResolvedPath.isInside(data, mount) || ResolvedPath.isInside(mount, data) {
            throw ConfigError(key: "data", "must not be inside the mount point or contain it (\(data) and \(mount) as resolved)")
        }
    }

    /// Parses YAML text.
    public static func parse(_ text: String, hostname: String = ProcessInfo.processInfo.hostName) throws(ConfigError) -> Config {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            // One line: Yams' message carries the offending line and a caret.
            let message = "\(error)".split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && $0 != "^" }
            throw ConfigError(key: nil, "invalid YAML: " + message.prefix(2).joined(separator: " "))
        }
        let top = try Section(root ?? Node.mapping(Node.Mapping([])), path: "")
        let mount = try top.requiredPath("mount")
        let data = try top.requiredPath("data")
        var config = Config(node: try top.string("node") ?? hostname, mount: mount, data: data)
        if let cluster = try top.string("cluster") { config.cluster = cluster }
        guard !config.node.isEmpty else { throw ConfigError(key: "node", "must not be empty") }
        try checkSeparate(mount: ResolvedPath.lexical(config.mount), data: ResolvedPath.lexical(config.data))
        if let retention = try top.duration("retention") { config.retention = retention }

        if let replication = try top.section("replication") { try parseReplication(replication, into: &config) }
        if let lease = try top.section("lease") { try parseLease(lease, into: &config) }
        if config.lease.type == Config.Lease.Kind.static, let primary = config.lease.staticPrimary, !config.lease.staticPeers.isEmpty,
            config.lease.staticPeers[primary] == nil
        {
            throw ConfigError(key: "lease.static.primary", "\"\(primary)\" is not one of lease.static.peers")
        }
        if config.lease.type == Config.Lease.Kind.static, !config.lease.staticPeers.isEmpty {
            try checkOwnPeerEntry(config)
        }

        if let admin = try top.section("admin") {
            if let socket = try admin.path("socket") { config.admin.socket = socket }
            try admin.rejectUnknown()
        }
        if let exec = try top.section("exec") {
            guard let command = try exec.stringList("command"), !command.isEmpty else {
                throw ConfigError(key: "exec.command", "required: the command to run while primary, as a list")
            }
            var value = Config.Exec(command: command)
            if let timeout = try exec.duration("stop-timeout") { value.stopTimeout = timeout }
            if let ready = try exec.section("ready") { value.ready = try parseReadiness(ready) }
            config.exec = value
            try exec.rejectUnknown()
        }
        if let metrics = try top.section("metrics") {
            config.metrics.listen = try metrics.address("listen")
            try metrics.rejectUnknown()
        }
        if let http = try top.section("http") {
            config.http.listen = try http.address("listen")
            if let maxLag = try http.duration("max-lag") { config.http.maxLag = maxLag }
            try http.rejectUnknown()
        }
        if let hooks = try top.section("hooks") { config.hooks = try parseHooks(hooks) }
        if let vip = try top.section("vip") { config.vip = try parseVIP(vip) }
        if let backup = try top.section("backup") { config.backup = try parseBackup(backup, config: config) }
        try readPendingSections(top, into: &config)
        try top.rejectUnknown()
        return config
    }

    private static func parseReplication(_ replication: Section, into config: inout Config) throws(ConfigError) {
        if let listen = try replication.address("listen") { config.replication.listen = listen }
        config.replication.advertise = try replication.address("advertise")
        config.replication.tokenFile = try replication.path("token-file")
        if let tls = try replication.section("tls") {
            config.replication.tls = Config.TLS(
                cert: try tls.requiredPath("cert"), key: try tls.requiredPath("key"), ca: try tls.requiredPath("ca"), serverName: try tls.string("server-name"))
            try tls.rejectUnknown()
        }
        if let sync = try replication.integer("sync-replicas") {
            guard sync >= 0 else { throw ConfigError(key: "replication.sync-replicas", "must be 0 or more") }
            config.replication.syncReplicas = sync
        }
        if let timeout = try replication.duration("sync-timeout") {
            guard timeout > .zero else { throw ConfigError(key: "replication.sync-timeout", "must be more than 0") }
            config.replication.syncTimeout = timeout
        }
        if let degrade = try replication.bool("sync-degrade") { config.replication.syncDegrade = degrade }
        try replication.rejectUnknown()
    }

    private static func parseLease(_ lease: Section, into config: inout Config) throws(ConfigError) {
        if let type = try lease.string("type") {
            guard let kind = Config.Lease.Kind(rawValue: type) else {
                throw ConfigError(key: "lease.type", "\"\(type)\" is not a lease type (static or etcd)")
            }
            config.lease.type = kind
        }
        if let candidate = try lease.bool("candidate") { config.lease.candidate = candidate }
        if let maxLag = try lease.string("max-lag"), maxLag != "0" {
            guard let duration = ConfigLoader.parseDuration(maxLag) else {
                throw ConfigError(key: "lease.max-lag", "\"\(maxLag)\" is not a duration (use 0, 500ms, 5s)")
            }
            config.lease.maxLag = duration
        }
        if let staticSection = try lease.section("static") { try parseStatic(staticSection, into: &config) }
        if let etcd = try lease.section("etcd") { try parseEtcd(etcd, into: &config) }
        try lease.rejectUnknown()
    }

    private static func parseStatic(_ staticSection: Section, into config: inout Config) throws(ConfigError) {
        config.lease.staticPrimary = try staticSection.string("primary")
        if let peers = try staticSection.section("peers") {
            for key in peers.keys {
                guard let address = try peers.address(key) else { continue }
                config.lease.staticPeers[key] = address
            }
        }
        try staticSection.rejectUnknown()
    }

    private static func parseEtcd(_ etcd: Section, into config: inout Config) throws(ConfigError) {
        if let endpoints = try etcd.stringList("endpoints") {
            guard !endpoints.isEmpty else { throw ConfigError(key: "lease.etcd.endpoints", "must list at least one endpoint") }
            for endpoint in endpoints where !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
                throw ConfigError(key: "lease.etcd.endpoints", "\"\(endpoint)\" is not an http(s) URL")
            }
            config.lease.etcdEndpoints = endpoints
        }
        if let key = try etcd.string("key") {
            guard key.hasPrefix("/") else { throw ConfigError(key: "lease.etcd.key", "must start with /") }
            config.lease.etcdKey = key
        }
        if let ttl = try etcd.duration("ttl") {
            guard ttl >= Duration.seconds(2) else { throw ConfigError(key: "lease.etcd.ttl", "must be at least 2s (etcd's minimum lease)") }
            config.lease.etcdTTL = ttl
        }
        if let tls = try etcd.section("tls") {
            config.lease.etcdTLS = Config.TLS(cert: try tls.requiredPath("cert"), key: try tls.requiredPath("key"), ca: try tls.requiredPath("ca"))
            try tls.rejectUnknown()
        }
        try etcd.rejectUnknown()
    }

    /// `exec.ready`: exactly one of `http: URL` or `tcp: HOST:PORT`.
    private static func parseReadiness(_ ready: Section) throws(ConfigError) -> ReadinessProbe {
        let url = try ready.string("http")
        let tcp = try ready.address("tcp")
        try ready.rejectUnknown()
        switch (url, tcp) {
        case (let url?, nil):
            if let problem = ReadinessProbe.problem(withURL: url) { throw ConfigError(key: "exec.ready.http", problem) }
            return ReadinessProbe(.http(url: url))
        case (nil, let tcp?):
            let colon = tcp.lastIndex(of: ":")!
            let host = tcp[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard !host.isEmpty else { throw ConfigError(key: "exec.ready.tcp", "\"\(tcp)\" has no host") }
            return ReadinessProbe(.tcp(host: host, port: Int(tcp[tcp.index(after: colon)...])!))
        default:
            throw ConfigError(key: "exec.ready", "give exactly one of http: URL (answers 2xx when ready) or tcp: HOST:PORT (accepts a connection)")
        }
    }

    private static func parseHooks(_ hooks: Section) throws(ConfigError) -> Config.Hooks {
        var value = Config.Hooks()
        for (key, list) in [("on-primary", try hooks.stringList("on-primary")), ("on-replica", try hooks.stringList("on-replica"))] {
            if let list, list.isEmpty || list[0].isEmpty { throw ConfigError(key: "hooks.\(key)", "must name a command, as a list") }
            if key == "on-primary" { value.onPrimary = list } else { value.onReplica = list }
        }
        if let timeout = try hooks.duration("timeout") { value.timeout = timeout }
        try hooks.rejectUnknown()
        return value
    }

    private static func parseVIP(_ vip: Section) throws(ConfigError) -> Config.VIP {
        guard let text = try vip.string("address") else { throw ConfigError(key: "vip.address", "required: the address clients dial, as ADDRESS/PREFIX") }
        guard let address = VirtualAddress(cidr: text) else {
            throw ConfigError(key: "vip.address", "\"\(text)\" is not in CIDR form ADDRESS/PREFIX (10.0.0.100/24, fd00::100/64)")
        }
        guard let interface = try vip.string("interface"), !interface.isEmpty else {
            throw ConfigError(key: "vip.interface", "required: the network interface the address goes on (eth0)")
        }
        guard interface.utf8.count < 16, !interface.contains("/"), !interface.contains(" ") else {
            throw ConfigError(key: "vip.interface", "\"\(interface)\" is not a network interface name")
        }
        try vip.rejectUnknown()
        return Config.VIP(address: address, interface: interface)
    }

    private static func parseBackup(_ section: Section, config: Config) throws(ConfigError) -> Config.Backup {
        guard let path = try section.path("path") else { throw ConfigError(key: "backup.path", "required: the directory the archive goes to") }
        for (key, inside) in [("mount", config.mount), ("data", config.data)] where path == inside || path.hasPrefix(inside + "/") || inside.hasPrefix(path + "/") {
            throw ConfigError(key: "backup.path", "\"\(path)\" overlaps \(key) \(inside): the archive must be a directory of its own")
        }
        var backup = Config.Backup(path: path)
        if let retention = try section.duration("retention") { backup.retention = retention }
        if let interval = try section.duration("snapshot-interval") { backup.snapshotInterval = interval }
        try section.rejectUnknown()
        return backup
    }

    /// The design's sections this version does not act on yet: each is
    /// validated like any other (so a typo is still named), and recorded
    /// as pending so that `mount` refuses it instead of running without it.
    private static func readPendingSections(_ top: Section, into config: inout Config) throws(ConfigError) {
        if let fuse = try top.section("fuse") {
            if let mode = try fuse.string("io-uring") {
                guard ["auto", "on", "off"].contains(mode) else {
                    throw ConfigError(key: "fuse.io-uring", "\"\(mode)\" is not auto, on or off")
                }
                if mode == "on" { config.pending.append("fuse.io-uring") }
            }
            try fuse.rejectUnknown()
        }
    }

    /// A static peers map is the cluster's membership: it must name this
    /// node, at the address this node is reached at. Otherwise two daemons
    /// can each believe they are the same member (design.md, invariant 5).
    static func checkOwnPeerEntry(_ config: Config) throws(ConfigError) {
        let peers = config.lease.staticPeers
        guard let own = peers[config.node] else {
            throw ConfigError(
                key: "lease.static.peers", "does not name this node \"\(config.node)\" (config key node); every node lists every member, itself included")
        }
        if let advertise = config.replication.advertise {
            guard own == advertise else {
                throw ConfigError(
                    key: "lease.static.peers",
                    "entry for \"\(config.node)\" is \(own), but replication.advertise is \(advertise): they must be the same address")
            }
            return
        }
        let listen = config.replication.listen
        guard own == listen || (Config.isWildcard(listen) && Config.port(of: own) == Config.port(of: listen)) else {
            throw ConfigError(
                key: "lease.static.peers",
                "entry for \"\(config.node)\" is \(own), but replication.listen is \(listen): set replication.advertise, or make them the same")
        }
    }

    /// The longest duration accepted (100 years): longer is a typo, and
    /// would not fit the integer milliseconds a duration is kept in.
    static let longestDuration: Double = 100 * 365 * 24 * 3600

    /// Parses "500ms", "2s", "10m", "1h" (and combinations like "1m30s");
    /// nil for anything else, or for more than ``longestDuration``.
    public static func parseDuration(_ text: String) -> Duration? {
        var total = Duration.zero
        var number = ""
        var unit = ""
        var any = false
        func flush() -> Bool {
            guard let value = Double(number), !unit.isEmpty else { return false }
            let scale: Double
            switch unit {
            case "ms": scale = 0.001
            case "s": scale = 1
            case "m": scale = 60
            case "h": scale = 3600
            default: return false
            }
            let seconds = value * scale
            guard seconds.isFinite, seconds <= longestDuration, total + .seconds(seconds) <= .seconds(longestDuration) else { return false }
            total += .milliseconds(Int64((seconds * 1000).rounded()))
            number = ""
            unit = ""
            any = true
            return true
        }
        for character in text.trimmingCharacters(in: .whitespaces) {
            if character.isNumber || character == "." {
                if !unit.isEmpty { guard flush() else { return nil } }
                number.append(character)
            } else if character.isLetter {
                guard !number.isEmpty else { return nil }
                unit.append(character)
            } else {
                return nil
            }
        }
        guard flush(), any else { return nil }
        return total
    }
}

/// One YAML mapping being read, remembering which keys were used so that
/// the rest can be reported as unknown.
private final class Section {
    let path: String
    private var values: [String: Node] = [:]
    private(set) var keys: [String] = []
    private var used = Set<String>()

    init(_ node: Node, path: String) throws(ConfigError) {
        self.path = path
        guard case .mapping(let mapping) = node else {
            throw ConfigError(key: path.isEmpty ? nil : path, "must be a mapping of keys to values")
        }
        var lines: [String: Int] = [:]
        for (key, value) in mapping {
            guard let name = key.string else { throw ConfigError(key: path.isEmpty ? nil : path, "keys must be strings") }
            let line = key.mark?.line ?? 0
            // YAML leaves duplicates to the reader and Yams keeps the last one:
            // a second `data:` must not silently win over the first.
            if let first = lines[name] {
                throw ConfigError(key: self.name(name), "appears twice (lines \(first) and \(line))")
            }
            lines[name] = line
            values[name] = value
            keys.append(name)
        }
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    private func scalar(_ key: String) throws(ConfigError) -> String? {
        used.insert(key)
        guard let node = values[key] else { return nil }
        if case .scalar(let scalar) = node {
            if scalar.string == "~" || (scalar.string.isEmpty && scalar.style == .plain) { return nil }
            return scalar.string
        }
        throw ConfigError(key: name(key), "must be a single value")
    }

    func string(_ key: String) throws(ConfigError) -> String? { try scalar(key) }

    func path(_ key: String) throws(ConfigError) -> String? {
        guard let value = try scalar(key) else { return nil }
        guard value.hasPrefix("/") else { throw ConfigError(key: name(key), "\"\(value)\" must be an absolute path") }
        return value.count > 1 && value.hasSuffix("/") ? String(value.dropLast()) : value
    }

    func requiredPath(_ key: String) throws(ConfigError) -> String {
        guard let value = try path(key) else { throw ConfigError(key: name(key), "required") }
        return value
    }

    func address(_ key: String) throws(ConfigError) -> String? {
        guard let value = try scalar(key) else { return nil }
        guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]), (1...65535).contains(port),
            colon != value.startIndex
        else {
            throw ConfigError(key: name(key), "\"\(value)\" is not host:port")
        }
        return value
    }

    func integer(_ key: String) throws(ConfigError) -> Int? {
        guard let value = try scalar(key) else { return nil }
        guard let number = Int(value) else { throw ConfigError(key: name(key), "\"\(value)\" is not an integer") }
        return number
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = try scalar(key) else { return nil }
        switch value.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigError(key: name(key), "\"\(value)\" is not true or false")
        }
    }

    func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let value = try scalar(key) else { return nil }
        guard let duration = ConfigLoader.parseDuration(value), duration > .zero else {
            throw ConfigError(key: name(key), "\"\(value)\" is not a duration (use 500ms, 2s, 10m, 1h)")
        }
        return duration
    }

    func stringList(_ key: String) throws(ConfigError) -> [String]? {
        used.insert(key)
        guard let node = values[key] else { return nil }
        guard case .sequence(let sequence) = node else { throw ConfigError(key: name(key), "must be a list") }
        var result: [String] = []
        for item in sequence {
            guard case .scalar(let scalar) = item else { throw ConfigError(key: name(key), "must be a list of strings") }
            result.append(scalar.string)
        }
        return result
    }

    func section(_ key: String) throws(ConfigError) -> Section? {
        used.insert(key)
        guard let node = values[key] else { return nil }
        if case .scalar(let scalar) = node, scalar.string.isEmpty || scalar.string == "~" { return nil }
        return try Section(node, path: name(key))
    }

    func rejectUnknown() throws(ConfigError) {
        for key in keys where !used.contains(key) {
            throw ConfigError(key: name(key), "unknown key")
        }
    }
}

extension Config {
    /// What `mount` checks of this machine before it starts: the virtual
    /// IP's interface exists and `ip` (iproute2) can be run.
    public func checkThisMachine() throws(ConfigError) {
        if let vip { try VirtualIP(address: vip.address, interface: vip.interface).check() }
        // A mistyped path would only show as an archive that never grows.
        // (A target that goes away later is the archiver's to report.)
        if let backup, !Syscall.isDirectory(backup.path) {
            throw ConfigError(key: "backup.path", "\(backup.path) is not a directory")
        }
    }

    /// Refuses keys of the design that this version parses but does not act
    /// on. An operator who asks for encryption or for commits that wait for
    /// replicas must not silently run without them.
    public func requireImplemented() throws(ConfigError) {
        // Commits would wait for replicas that cannot exist.
        if lease.type == .static, replication.syncReplicas > 0, replication.syncReplicas > lease.staticPeers.count - 1 {
            throw ConfigError(
                key: "replication.sync-replicas",
                "\(replication.syncReplicas) is more than the \(max(0, lease.staticPeers.count - 1)) other node(s) in lease.static.peers: commits would never be confirmed")
        }
        if let key = pending.first {
            throw ConfigError(key: key, "not supported by this version yet (docs/design.md lists what is); remove the key")
        }
    }
}
