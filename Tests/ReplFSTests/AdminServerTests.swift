#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import TestHTTP
import Testing

@testable import ReplFS

/// A real admin server on a Unix socket in a fresh temporary directory,
/// stopped and removed when the test body returns.
struct AdminFixture {
    let directory: String
    let socket: String
    let handler: FakeAdminHandler
    let server: AdminServer

    var client: AdminClient { AdminClient(socket: socket, statusTimeout: .seconds(10), actionTimeout: .seconds(20)) }

    func raw(_ method: String, _ path: String, body: String? = nil) -> RawHTTP.Response? {
        RawHTTP.send(unixSocket: socket, RawHTTP.request(method, path, body: body))
    }

    static func temporaryDirectory() -> String {
        var template = Array("/tmp/replfs-admin-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: path!)
    }

    /// Starts a server, runs `body` (which blocks on sockets) on a thread of
    /// its own, then stops the server and removes the directory.
    static func with(
        _ handler: FakeAdminHandler = FakeAdminHandler(), socketName: String = "run/replfsd.sock",
        _ body: @escaping @Sendable (AdminFixture) throws -> Void
    ) async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/" + socketName
        let server = AdminServer(handler: handler, logger: Logger(label: "admin-test"))
        try await server.start(socket: socket)
        let fixture = AdminFixture(directory: directory, socket: socket, handler: handler, server: server)
        do {
            try await blocking { try body(fixture) }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}

@Suite("Admin socket", .serialized)
struct AdminServerTests {
    @Test("status round-trips through AdminClient as the handler returned it")
    func statusRoundTrip() async throws {
        try await AdminFixture.with { fixture in
            let status = try fixture.client.status().get()
            #expect(status == FakeAdminHandler.sampleStatus)
            #expect(fixture.handler.recorded == ["status"])
        }
    }

    @Test("promote passes force; an empty body means not forced")
    func promoteForce() async throws {
        try await AdminFixture.with { fixture in
            let result = try fixture.client.promote(force: true).get()
            #expect(result == AdminActionResult(message: "promoted node-a", epoch: Epoch(8), primary: "node-a", tookMs: 12))
            _ = try fixture.client.promote(force: false).get()
            let raw = try #require(fixture.raw("POST", "/promote"))
            #expect(raw.status == 200)
            #expect(fixture.handler.recorded == ["promote(force: true)", "promote(force: false)", "promote(force: false)"])
        }
    }

    @Test("a refusal comes back as the handler's AdminError, code and message, with its HTTP status")
    func refusal() async throws {
        let refusal = AdminError(.noCandidate, "no replica is caught up (node-b lags 3 transactions)")
        try await AdminFixture.with(FakeAdminHandler(demote: .failure(refusal))) { fixture in
            switch fixture.client.demote() {
            case .success(let value):
                Issue.record("demote succeeded: \(value)")
            case .failure(let error):
                #expect(error.code == .refused)
                #expect(error.refusal == refusal)
                #expect("\(error)".contains("no replica is caught up"))
            }
            let raw = try #require(fixture.raw("POST", "/demote"))
            #expect(raw.status == 409)
            #expect(raw.body.contains(#""error":"no-candidate""#))

            guard case .failure(let importError) = fixture.client.importDatabase("db.sqlite", from: "/tmp/in.db") else {
                Issue.record("import succeeded")
                return
            }
            #expect(importError.refusal?.code == .notPrimary)
            guard case .failure(let missing) = fixture.client.export(database: "nope.db", to: "/tmp/out.db") else {
                Issue.record("export of a missing database succeeded")
                return
            }
            #expect(missing.refusal == AdminError(.notFound, "no database nope.db"))
        }
    }

    @Test("export and import send the database and the path")
    func transfer() async throws {
        try await AdminFixture.with { fixture in
            let exported = try fixture.client.export(database: "db.sqlite", to: "/backup/db.sqlite").get()
            #expect(exported.message == "exported db.sqlite at txid 1042 to /backup/db.sqlite")
            _ = fixture.client.importDatabase("db.sqlite", from: "/backup/in.sqlite")
            #expect(fixture.handler.recorded == ["export(db.sqlite, /backup/db.sqlite)", "import(db.sqlite, /backup/in.sqlite)"])
        }
    }

    @Test("malformed or incomplete bodies get 400 naming the problem; the handler is not called")
    func badRequests() async throws {
        try await AdminFixture.with { fixture in
            let cases: [(String, String, String)] = [
                ("/promote", #"{"force": tru"#, "malformed JSON"),
                ("/promote", #"{"force": "yes"}"#, #"field "force" must be true or false"#),
                ("/promote", "[1, 2]", "body must be a JSON object"),
                ("/demote", "not json", "malformed JSON"),
                ("/export", #"{"database": "db.sqlite"}"#, #"missing field "path""#),
                ("/import", #"{"path": "/tmp/in.db"}"#, #"missing field "database""#),
                ("/export", "", "missing JSON body"),
                ("/export", #"{"database": "db.sqlite", "path": "out.db"}"#, "must be an absolute path"),
                ("/import", #"{"database": "../etc", "path": "/tmp/in.db"}"#, "is not a database name"),
            ]
            for (path, body, message) in cases {
                let response = try #require(fixture.raw("POST", path, body: body))
                #expect(response.status == 400, "\(path) \(body)")
                let error = try JSONDecoder().decode(AdminError.self, from: Data(response.body.utf8))
                #expect(error.code == .badRequest, "\(path) \(body)")
                #expect(error.message.contains(message), "\(path) \(body): \(error.message)")
            }
            #expect(fixture.handler.recorded.isEmpty)
        }
    }

    @Test("unknown path is 404, wrong method 405 with Allow; neither reaches the handler")
    func routing() async throws {
        try await AdminFixture.with { fixture in
            let unknown = try #require(fixture.raw("GET", "/nope"))
            #expect(unknown.status == 404)
            #expect(unknown.body.contains(#""error":"not-found""#))
            let wrong = try #require(fixture.raw("GET", "/promote"))
            #expect(wrong.status == 405)
            #expect(wrong.headers["allow"] == "POST")
            let wrongStatus = try #require(fixture.raw("POST", "/status", body: "{}"))
            #expect(wrongStatus.status == 405)
            #expect(fixture.handler.recorded.isEmpty)
        }
    }

    @Test("a body over 1 MiB is refused with 413 before the handler")
    func tooLarge() async throws {
        try await AdminFixture.with { fixture in
            let request = RawHTTP.request("POST", "/promote", bodyBytes: HTTPServer.maximumBodySize + 1)
            let response = try #require(RawHTTP.send(unixSocket: fixture.socket, request))
            #expect(response.status == 413)
            #expect(fixture.handler.recorded.isEmpty)
        }
    }

    @Test("status is answered while a promotion blocks in the handler")
    func handlersRunOffTheEventLoop() async throws {
        let gate = Semaphore()
        try await AdminFixture.with(FakeAdminHandler(promoteGate: gate)) { fixture in
            let client = fixture.client
            let promoted = Semaphore()
            let outcome = Locked<Result<AdminActionResult, AdminClientError>?>(nil)
            DetachedThread {
                let result = client.promote(force: false)
                outcome.withLock { $0 = result }
                promoted.post()
            }.start()
            // Wait until the promotion is inside the handler.
            let start = ContinuousClock.now
            while !fixture.handler.recorded.contains("promote(force: false)") && ContinuousClock.now - start < .seconds(10) { usleep(10_000) }
            let status = try client.status().get()
            #expect(status.node == "node-a")
            #expect(outcome.value == nil)
            gate.post()
            promoted.wait()
            let promotion = try #require(outcome.value).get()
            #expect(promotion.epoch == 8)
        }
    }

    @Test("the socket is 0600, in a directory created for it, and removed by stop")
    func socketFile() async throws {
        let directory = AdminFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/a/b/replfsd.sock"
        let server = AdminServer(handler: FakeAdminHandler(), logger: Logger(label: "admin-test"))
        try await server.start(socket: socket)
        let attributes = try FileManager.default.attributesOfItem(atPath: socket)
        #expect(attributes[.type] as? FileAttributeType == .typeSocket)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        await server.stop()
        #expect(Syscall.stat(socket).failure == .noEntry)
    }

    @Test("a stale socket file (its replfsd died) is replaced")
    func staleSocket() async throws {
        let directory = AdminFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/replfsd.sock"
        #expect(RawHTTP.makeStaleSocket(at: path))
        guard case .failure(let unreachable) = try await blocking({ AdminClient(socket: path).status() }) else {
            Issue.record("a stale socket answered")
            return
        }
        #expect(unreachable.code == .unreachable)
        #expect("\(unreachable)".hasPrefix("cannot reach replfsd at \(path): connection refused"))

        let handler = FakeAdminHandler()
        let server = AdminServer(handler: handler, logger: Logger(label: "admin-test"))
        try await server.start(socket: path)
        let status = try await blocking { try AdminClient(socket: path).status().get() }
        await server.stop()
        #expect(status == FakeAdminHandler.sampleStatus)
    }

    @Test("a second server on a live socket fails clearly and leaves the first one serving")
    func socketInUse() async throws {
        let directory = AdminFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/replfsd.sock"
        let first = AdminServer(handler: FakeAdminHandler(), logger: Logger(label: "admin-test"))
        try await first.start(socket: socket)
        let second = AdminServer(handler: FakeAdminHandler(), logger: Logger(label: "admin-test"))
        await #expect {
            try await second.start(socket: socket)
        } throws: { error in
            guard let error = error as? HTTPServerError else { return false }
            return error.code == .inUse && "\(error)" == "admin.socket: \(socket) is in use by another replfsd"
        }
        await second.stop()
        let status = try await blocking { try AdminClient(socket: socket).status().get() }
        await first.stop()
        #expect(status.node == "node-a")
    }

    @Test("a path that is not a socket is refused and left alone")
    func notASocket() async throws {
        let directory = AdminFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/replfsd.sock"
        try "keep me".write(toFile: path, atomically: false, encoding: .utf8)
        let server = AdminServer(handler: FakeAdminHandler(), logger: Logger(label: "admin-test"))
        await #expect(throws: HTTPServerError.self) { try await server.start(socket: path) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test("no daemon: the client names the socket")
    func unreachable() {
        let path = "/tmp/replfs-admin-missing-\(getpid())/replfsd.sock"
        guard case .failure(let error) = AdminClient(socket: path).promote(force: false) else {
            Issue.record("promote succeeded without a daemon")
            return
        }
        #expect(error.code == .unreachable)
        #expect("\(error)".hasPrefix("cannot reach replfsd at \(path): no such socket"))
    }

    @Test("the human summary shows role, lease, positions, lag, process, asides and the last error")
    func summary() {
        let text = FakeAdminHandler.sampleStatus.summary
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first == "node       node-a (cluster headscale): primary, writable, epoch 7")
        #expect(lines.contains("primary    node-a 10.0.0.1:20202"))
        #expect(lines.contains("lease      etcd, candidate, held, key /replfs/headscale/primary, expires in 1500 ms"))
        #expect(lines.contains("database   db.sqlite  txid 1042  checksum 8a3f00112233aabb  epoch 0  12 pages x 4096 B"))
        #expect(lines.contains("replica    node-b  10.0.0.2:20202  connected  last ack 120 ms ago  db.sqlite lag 3 (txid 1039)"))
        #expect(lines.contains("process    headscale serve  running  pid 4242  restarts 1  last exit: exit 1"))
        #expect(lines.contains("aside      db.sqlite.aside-epoch6"))
        #expect(lines.contains("error      lease renewal took 900 ms"))
    }

    @Test("AdminError codes map to the documented HTTP statuses and wire names")
    func errorCodes() throws {
        #expect(AdminError(.badRequest, "").httpStatus == 400)
        for code in [AdminError.Code.notPrimary, .notCandidate, .noCandidate, .conflict] { #expect(AdminError(code, "").httpStatus == 409) }
        #expect(AdminError(.notFound, "").httpStatus == 404)
        #expect(AdminError(.failed, "").httpStatus == 500)
        let json = String(decoding: try JSONEncoder().encode(AdminError(.notPrimary, "replica")), as: UTF8.self)
        #expect(json.contains(#""error":"not-primary""#) && json.contains(#""message":"replica""#))
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
