#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization
import Testing

@testable import ReplFS

/// The parts that point clients at the primary, without a mount: short
/// commands, role hooks, the readiness probe, the announcement frames,
/// the announcer's order, and (as root) the virtual IP on a veth interface.
@Suite("Endpoints", .serialized)
struct EndpointTests {
    // MARK: - ShortCommand

    @Test("a short command's output, status and environment are collected; a hung one is killed at its timeout")
    func shortCommand() {
        let ok = ShortCommand(["sh", "-c", "echo out; echo err >&2; echo $REPLFS_X"], environment: ["REPLFS_X": "x y"], timeout: .seconds(5)).run()
        #expect(ok.succeeded)
        #expect(ok.output == "out\nerr\nx y")
        let failed = ShortCommand(["sh", "-c", "exit 3"], timeout: .seconds(5)).run()
        #expect(failed.status == .exited(3) && !failed.succeeded)
        let missing = ShortCommand(["/nonexistent/hook"], timeout: .seconds(5)).run()
        #expect(missing.error == .noEntry && !missing.succeeded)

        let started = ContinuousClock.now
        let hung = ShortCommand(["sh", "-c", "echo before; sleep 100"], timeout: .milliseconds(300)).run()
        #expect(hung.timedOut && !hung.succeeded)
        #expect(hung.output == "before")
        #expect(ContinuousClock.now - started < .seconds(5))

        // A background child holding the output open does not hold up the
        // run, and is killed with the command's process group.
        let background = ContinuousClock.now
        let detached = ShortCommand(["sh", "-c", "sleep 100 & echo started"], timeout: .seconds(20)).run()
        #expect(detached.succeeded && detached.output == "started")
        #expect(ContinuousClock.now - background < .seconds(5))
    }

    // MARK: - Hooks

    @Test("hooks run in order with REPLFS_ROLE, REPLFS_EPOCH, REPLFS_PRIMARY, REPLFS_NODE; a failure is reported and the next still runs")
    func hooks() throws {
        let directory = try SupervisorTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/hooks"
        let outcomes = Mutex<[(RoleHooks.Hook, Bool)]>([])
        let script = "echo \"$0 $REPLFS_ROLE $REPLFS_EPOCH $REPLFS_PRIMARY $REPLFS_NODE\" >> \(log)"
        let hooks = RoleHooks(
            onPrimary: ["sh", "-c", script + "; exit 1", "on-primary"], onReplica: ["sh", "-c", script, "on-replica"], timeout: .seconds(5),
            node: "node-a", logger: Logger(label: "test")
        ) { hook, outcome in outcomes.withLock { $0.append((hook, outcome.succeeded)) } }
        hooks.run(.onReplica, epoch: Epoch(3), primary: "node-b")
        hooks.run(.onPrimary, epoch: Epoch(4), primary: "node-a")
        hooks.run(.onReplica, epoch: Epoch(4), primary: nil)
        hooks.drain()
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines == ["on-replica replica 3 node-b node-a", "on-primary primary 4 node-a node-a", "on-replica replica 4  node-a"])
        let recorded = outcomes.withLock { $0.map { "\($0.0.rawValue) \($0.1)" } }
        #expect(recorded == ["on-replica true", "on-primary false", "on-replica true"])
    }

    // MARK: - Announcer

    @Test("the announcer runs on-primary only once the application is ready, on-replica once per change, and withdraws at once")
    func announcerOrder() throws {
        let directory = try SupervisorTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = directory + "/hooks"
        let script = "echo \"$REPLFS_ROLE $REPLFS_EPOCH $REPLFS_PRIMARY\" >> \(log)"
        let hooks = RoleHooks(
            onPrimary: ["sh", "-c", script], onReplica: ["sh", "-c", script], timeout: .seconds(5), node: "node-a", logger: Logger(label: "test"))
        let ready = Atomic<Bool>(false)
        let announcer = PrimaryAnnouncer(vip: nil, hooks: hooks, node: "node-a", isReady: { ready.load(ordering: .relaxed) }, logger: Logger(label: "test"))
        announcer.start()
        defer { announcer.close() }
        func lines() -> [String] {
            hooks.drain()
            return ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        announcer.becameReplica(epoch: Epoch(1), primary: "node-b")
        #expect(SupervisorTests.eventually { lines().count == 1 ? true : nil } == true)
        announcer.becameReplica(epoch: Epoch(1), primary: "node-b")  // no change of role: no hook
        announcer.becamePrimary(epoch: Epoch(2))
        usleep(200_000)
        #expect(lines() == ["replica 1 node-b"], "on-primary must wait for the application")
        ready.store(true, ordering: .relaxed)
        #expect(SupervisorTests.eventually { lines().count == 2 ? true : nil } == true)
        announcer.leavingPrimary()
        announcer.becameReplica(epoch: Epoch(3), primary: "node-c")
        #expect(SupervisorTests.eventually { lines().count == 3 ? true : nil } == true)
        #expect(lines() == ["replica 1 node-b", "primary 2 node-a", "replica 3 node-c"])

        // Became primary and lost it before the application was ready:
        // clients were never pointed here, so nothing is announced.
        ready.store(false, ordering: .relaxed)
        announcer.becamePrimary(epoch: Epoch(4))
        announcer.leavingPrimary()
        announcer.becameReplica(epoch: Epoch(4), primary: nil)
        ready.store(true, ordering: .relaxed)
        usleep(200_000)
        #expect(lines().count == 3)
    }

    // MARK: - Readiness

    @Test("the readiness probe: TCP accepted or refused, HTTP 2xx or not")
    func readinessProbe() throws {
        let port = try Self.freePort()
        if case .success = ReadinessProbe(.tcp(host: "127.0.0.1", port: port)).check() { Issue.record("nothing listens, yet ready") }
        if case .success = ReadinessProbe(.http(url: "http://127.0.0.1:\(port)/health")).check() { Issue.record("nothing listens, yet ready") }

        let server = try Self.startPython(
            """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(200 if self.path == "/health" else 500); self.end_headers(); self.wfile.write(b"x")
                def log_message(self, *a): pass
            http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
            """, "\(port)")
        defer {
            // SIGKILL: a server left running would hold the test run's output open.
            kill(server.processIdentifier, SIGKILL)
            server.waitUntilExit()
        }
        let tcp = ReadinessProbe(.tcp(host: "127.0.0.1", port: port))
        #expect(SupervisorTests.eventually { if case .success = tcp.check() { true } else { nil } } == true)
        if case .failure(let error) = ReadinessProbe(.http(url: "http://127.0.0.1:\(port)/health")).check() { Issue.record("\(error)") }
        guard case .failure(let error) = ReadinessProbe(.http(url: "http://127.0.0.1:\(port)/other")).check() else {
            Issue.record("a 500 counted as ready")
            return
        }
        #expect(error.description.contains("answered 500"))
    }

    @Test("the supervisor counts the application ready only once its probe answers")
    func supervisorReadiness() throws {
        let port = try Self.freePort()
        let script = "sleep 0.5; exec python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\", \(port))); s.listen(); time.sleep(100)'"
        let supervisor = Supervisor(
            command: ["sh", "-c", script], stopTimeout: .seconds(5), readiness: ReadinessProbe(.tcp(host: "127.0.0.1", port: port)),
            logger: Logger(label: "test"))
        supervisor.start()
        defer { supervisor.stop() }
        #expect(SupervisorTests.eventually { if case .running = supervisor.status.state { true } else { nil } } == true)
        #expect(!supervisor.status.ready, "running is not ready: \(supervisor.status)")
        #expect(SupervisorTests.eventually { supervisor.status.ready ? true : nil } == true)
        #expect(supervisor.status.notReady == nil)
    }

    // MARK: - Frames

    @Test("a gratuitous ARP names the address as sender and target; a neighbour advertisement carries a valid checksum and the override flag")
    func frames() {
        let mac: [UInt8] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]
        let arp = NeighbourAnnouncement.gratuitousARP(address: [10, 0, 0, 100], hardware: mac)
        #expect(arp.count == 28)
        #expect(Array(arp[0..<8]) == [0, 1, 8, 0, 6, 4, 0, 1])
        #expect(Array(arp[8..<14]) == mac)
        #expect(Array(arp[14..<18]) == [10, 0, 0, 100])
        #expect(Array(arp[24..<28]) == [10, 0, 0, 100])

        let address: [UInt8] = [0xfd, 0] + [UInt8](repeating: 0, count: 12) + [0x01, 0x00]
        let packet = NeighbourAnnouncement.unsolicitedAdvertisement(address: address, hardware: mac)
        #expect(packet.count == 40 + 32)
        #expect(packet[6] == 58 && packet[7] == 255, "ICMPv6, hop limit 255")
        #expect(Array(packet[8..<24]) == address)
        let icmp = Array(packet[40...])
        #expect(icmp[0] == 136 && icmp[4] == 0x20, "neighbour advertisement, override")
        #expect(Array(icmp[8..<24]) == address)
        #expect(Array(icmp[24..<32]) == [2, 1] + mac)
        // Summing with the checksum in place gives zero (RFC 1071).
        var zeroed = icmp
        zeroed[2] = 0
        zeroed[3] = 0
        let checksum = NeighbourAnnouncement.icmpv6Checksum(source: address, destination: NeighbourAnnouncement.allNodesAddress, message: zeroed)
        #expect(UInt16(icmp[2]) << 8 | UInt16(icmp[3]) == checksum)
        #expect(NeighbourAnnouncement.icmpv6Checksum(source: address, destination: NeighbourAnnouncement.allNodesAddress, message: icmp) == 0)
    }

    // MARK: - The virtual IP on a real interface

    @Test(
        "a virtual IP on a veth interface: added, announced, removed; adding twice and removing twice are no-ops",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")))
    func virtualIP() throws {
        let tag = String(UUID().uuidString.prefix(6)).lowercased()
        let interface = "rfsv" + tag
        let created = ShortCommand(["ip", "link", "add", interface, "type", "veth", "peer", "name", "rfsp" + tag], timeout: .seconds(5)).run()
        guard created.succeeded else {
            Issue.record("cannot create a veth pair: \(created.summary) \(created.output)")
            return
        }
        defer { _ = ShortCommand(["ip", "link", "del", interface], timeout: .seconds(5)).run() }
        _ = ShortCommand(["ip", "link", "set", interface, "up"], timeout: .seconds(5)).run()
        _ = ShortCommand(["ip", "link", "set", "rfsp" + tag, "up"], timeout: .seconds(5)).run()
        for text in ["10.203.7.100/24", "fd00:203::100/64"] {
            let vip = VirtualIP(address: try #require(VirtualAddress(cidr: text)), interface: interface)
            try vip.check()
            #expect(vip.isHeld == false)
            try vip.add()
            try vip.add()
            #expect(vip.isHeld == true)
            try vip.announce()
            try vip.remove()
            try vip.remove()
            #expect(vip.isHeld == false)
        }
        #expect(throws: ConfigError.self) { try VirtualIP(address: VirtualAddress(cidr: "10.0.0.1/24")!, interface: "nosuch0").check() }
    }

    /// A port nothing listens on now (bound, read back, closed).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// `python3 -c SCRIPT ARGS...` in the background.
    static func startPython(_ script: String, _ arguments: String...) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }
}
