import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A stand-in for Headscale behind the endpoints: an HTTP server that
/// answers every GET with its node's name (`REPLFS_NODE`, which replfsd
/// gives the application), after a start-up pause (Headscale migrates its
/// database before it listens). Stops on SIGTERM.
enum NodeNameServer {
    /// Writes the script to `path`; run it as `python3 PATH HOST PORT`.
    static func write(to path: String, startup: Double = 0.2) throws {
        try """
            import http.server, os, sys, time
            time.sleep(\(startup))
            name = os.environ.get("REPLFS_NODE", "?").encode()
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(name)))
                    self.end_headers()
                    self.wfile.write(name)
                def log_message(self, *args):
                    pass
            server = http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
            server.daemon_threads = True
            server.serve_forever()
            """.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// The `exec` section that runs it on `host:port`, ready once it answers.
    static func execSection(script: String, host: String, port: Int) -> String {
        """
        exec:
          command: [python3, \(script), \(host), "\(port)"]
          stop-timeout: 2s
          ready: {http: "http://\(host == "0.0.0.0" ? "127.0.0.1" : host):\(port)/"}
        """
    }
}

/// A LAN of network namespaces joined by a bridge, as machines on one
/// switch: `members` node namespaces and one client namespace, each with an
/// `eth0` on 10.202.S.0/24 (nodes .11, .12, ..., the client .100, the
/// host's end of the bridge .1, where etcd answers). Cutting a member's
/// link is pulling its cable.
final class LocalAreaNetwork {
    let tag: String
    let subnet: Int
    let members: Int
    var bridge: String { "rfsb" + tag }
    var hostAddress: String { "10.202.\(subnet).1" }
    var clientAddress: String { "10.202.\(subnet).100" }
    var client: String { namespace(members) }
    /// The virtual IP's address in this LAN (not yet on any interface).
    var virtualAddress: String { "10.202.\(subnet).200" }

    init(members: Int) throws {
        tag = String(UUID().uuidString.prefix(4)).lowercased()
        subnet = Int.random(in: 1...250)
        self.members = members
        do {
            try ip(["link", "add", bridge, "type", "bridge"])
            try ip(["addr", "add", hostAddress + "/24", "dev", bridge])
            try ip(["link", "set", bridge, "up"])
            for index in 0...members {
                let name = namespace(index)
                let (outside, inside) = ("rfh\(tag)\(index)", "rfn\(tag)\(index)")
                let address = index == members ? clientAddress : memberAddress(index)
                try ip(["netns", "add", name])
                try ip(["link", "add", outside, "type", "veth", "peer", "name", inside])
                try ip(["link", "set", outside, "master", bridge])
                try ip(["link", "set", outside, "up"])
                try ip(["link", "set", inside, "netns", name])
                try ip(["-n", name, "link", "set", inside, "name", "eth0"])
                try ip(["-n", name, "addr", "add", address + "/24", "dev", "eth0"])
                try ip(["-n", name, "link", "set", "eth0", "up"])
                try ip(["-n", name, "link", "set", "lo", "up"])
            }
        } catch {
            destroy()
            throw error
        }
    }

    func namespace(_ index: Int) -> String { "rfs-\(tag)-\(index)" }
    func memberAddress(_ index: Int) -> String { "10.202.\(subnet).\(11 + index)" }
    func path(_ index: Int) -> String { "/run/netns/" + namespace(index) }

    /// Pulls (or plugs back) member `index`'s cable.
    func setLink(_ index: Int, up: Bool) throws {
        try ip(["link", "set", "rfh\(tag)\(index)", up ? "up" : "down"])
    }

    /// Which members hold `address` on their eth0 now.
    func holders(of address: String) -> [Int] {
        (0..<members).filter { index in
            let result = try? Command.run("/usr/sbin/ip", ["-n", namespace(index), "-o", "addr", "show", "dev", "eth0"], timeout: 10)
            return result?.output.contains(" \(address)/") == true
        }
    }

    func destroy() {
        for index in 0...members {
            _ = try? Command.run("/usr/sbin/ip", ["link", "del", "rfh\(tag)\(index)"])
            _ = try? Command.run("/usr/sbin/ip", ["netns", "del", namespace(index)])
        }
        _ = try? Command.run("/usr/sbin/ip", ["link", "del", bridge])
    }

    private func ip(_ arguments: [String]) throws {
        let result = try Command.run("/usr/sbin/ip", arguments)
        guard result.status == 0 else { throw Failure("ip \(arguments.joined(separator: " ")): \(result)") }
    }
}

/// A client in its own namespace fetching `http://ADDRESS:PORT/` every
/// 20 ms (each attempt bounded by 100 ms), recording when and which node
/// answered: what a Tailscale client dialing the control server sees.
final class EndpointClient {
    private let started: Command.Started

    init(namespace: String, address: String, port: Int) throws {
        started = try Command.start("/usr/sbin/ip", [
            "netns", "exec", namespace, "python3", "-c",
            """
            import socket, sys, time
            while True:
                at = time.monotonic()
                try:
                    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.1)
                    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk: break
                        data += chunk
                    s.close()
                    head, _, body = data.partition(b"\\r\\n\\r\\n")
                    who = body.decode() if head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200") else "-"
                except Exception:
                    who = "-"
                sys.stderr.write("%.3f %s\\n" % (at, who)); sys.stderr.flush()
                time.sleep(0.02)
            """,
            address, "\(port)",
        ])
    }

    /// Every attempt so far: (CLOCK_MONOTONIC seconds, node name or "-").
    var answers: [(at: Double, node: String)] {
        started.errorSoFar.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let at = Double(parts[0]) else { return nil }
            return (at, String(parts[1]))
        }
    }

    func stop() {
        kill(started.pid, SIGKILL)
        _ = started.finish()
    }

    /// CLOCK_MONOTONIC now, in seconds (the client's clock).
    static var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
