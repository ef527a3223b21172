#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// The TLS side of replication: mutual TLS 1.3 contexts built from a node's
/// ``TLSIdentity``, rebuilt when its files change.
///
/// Both directions are authenticated: the listener requires a client
/// certificate chained to the CA file, the dialer verifies the listener's
/// chain and that its subject alternative names match the address it
/// dialed (IP or DNS name), or `server-name` if configured. New connections
/// take the contexts current when they start; existing ones keep theirs
/// until they reconnect. A changed file that does not pass
/// ``TLSIdentity/load(_:key:now:)`` is refused with one log line and the
/// identity in use stays, so a rotation done in the wrong order (the
/// certificate before its key) heals at the next change instead of
/// cutting the cluster off.
public final class TLSCredentials: Sendable {
    private struct Current: Sendable {
        let identity: TLSIdentity
        let server: NIOSSLContext
        let client: NIOSSLContext
        /// What the files looked like when last read (loaded or refused).
        var stamps: [FileStamp]
        /// What they looked like at the last check, if that differed from
        /// ``stamps``: they are read once they look the same at two checks
        /// in a row, so that a rotation writing the key and then the
        /// certificate is not caught between the two.
        var settling: [FileStamp]?
    }

    /// Enough of a file's `stat` to see that it was replaced, rewritten or
    /// had its mode changed (the status change time covers the last).
    struct FileStamp: Equatable, Sendable {
        var inode: UInt64
        var size: Int64
        var modified: Int
        var modifiedNanoseconds: Int
        var changed: Int
        var changedNanoseconds: Int

        static let missing = FileStamp(inode: 0, size: -1, modified: 0, modifiedNanoseconds: 0, changed: 0, changedNanoseconds: 0)

        static func of(_ path: String) -> FileStamp {
            guard case .success(let st) = Syscall.stat(path) else { return missing }
            return FileStamp(
                inode: UInt64(st.st_ino), size: Int64(st.st_size), modified: st.st_mtim.tv_sec, modifiedNanoseconds: st.st_mtim.tv_nsec,
                changed: st.st_ctim.tv_sec, changedNanoseconds: st.st_ctim.tv_nsec)
        }
    }

    /// The configuration section, for log lines and errors ("replication.tls").
    public let key: String
    private let current: Mutex<Current>
    private let logger: Logger
    private let watcher = Locked<PeriodicTask?>(nil)
    /// The expiry last warned about, and when: once a day per certificate.
    private let lastWarning = Mutex<(notAfter: Date, at: ContinuousClock.Instant)?>(nil)

    /// Loads and checks the files. Throws ``TLSFileError`` (exit 2 at start).
    public init(files: Config.TLS, key: String, logger: Logger) throws(TLSFileError) {
        self.key = key
        self.logger = logger
        let stamps = TLSCredentials.stamps(files)
        let identity = try TLSIdentity.load(files, key: key)
        current = Mutex(try TLSCredentials.build(identity, stamps: stamps, key: key))
        warnIfExpiring(identity)
    }

    /// The identity in use now.
    public var identity: TLSIdentity { current.withLock { $0.identity } }

    /// A handler that makes an accepted connection a TLS server connection
    /// (a peer that does not start a handshake fails at its first bytes).
    func serverHandler() -> NIOSSLServerHandler {
        NIOSSLServerHandler(context: current.withLock { $0.server })
    }

    /// A handler that makes a dialed connection to `host` a TLS client connection.
    func clientHandler(dialing host: String) throws -> NIOSSLClientHandler {
        let (context, serverName) = current.withLock { ($0.client, $0.identity.files.serverName) }
        // An address is matched against the certificate's IP SANs by
        // NIOSSL itself when no name is given (SNI cannot carry an IP).
        return try NIOSSLClientHandler(context: context, serverHostname: serverName ?? (TLSCredentials.isIPAddress(host) ? nil : host))
    }

    /// Re-reads the files if any of them changed since they were last read
    /// and has not changed since the previous call (`settled: false` reads
    /// at once). Returns whether a new identity is now in use.
    @discardableResult
    public func reloadIfChanged(now: Date = Date(), settled: Bool = true) -> Bool {
        let files = current.withLock { $0.identity.files }
        let stamps = TLSCredentials.stamps(files)
        let due = current.withLock { current -> Bool in
            guard stamps != current.stamps else {
                current.settling = nil
                return false
            }
            defer { current.settling = stamps }
            return !settled || current.settling == stamps
        }
        guard due else {
            warnIfExpiring(identity, now: now)
            return false
        }
        do {
            let identity = try TLSIdentity.load(files, key: key, now: now)
            let fresh = try TLSCredentials.build(identity, stamps: stamps, key: key)
            current.withLock { $0 = fresh }
            logger.notice(
                "TLS files changed: new connections use them",
                metadata: ["subject": "\(identity.subject)", "expires": "\(TLSIdentity.timestamp(identity.notAfter))"])
            warnIfExpiring(identity, now: now)
            return true
        } catch {
            current.withLock { $0.stamps = stamps }
            logger.error("TLS files changed but cannot be used; the ones loaded before stay in use", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Checks the files for changes every `interval` until ``stopWatching()``.
    public func startWatching(every interval: Duration = .seconds(2)) {
        let task = PeriodicTask(every: interval) { [self] in reloadIfChanged() }
        watcher.withLock { $0 = task }
        task.start()
    }

    public func stopWatching() {
        watcher.value?.stop()
    }

    /// Logs, once a day, that the certificate expires within 14 days.
    private func warnIfExpiring(_ identity: TLSIdentity, now: Date = Date()) {
        guard identity.notAfter.timeIntervalSince(now) < 14 * 86_400 else { return }
        let due = lastWarning.withLock { last -> Bool in
            if let last, last.notAfter == identity.notAfter, ContinuousClock.now - last.at < .seconds(86_400) { return false }
            last = (identity.notAfter, ContinuousClock.now)
            return true
        }
        guard due else { return }
        let days = identity.daysToExpiry(now: now)
        logger.warning(
            "the TLS certificate expires soon: issue a new one and replace the file (it is re-read without a restart)",
            metadata: ["\(key).cert": "\(identity.files.cert)", "expires": "\(TLSIdentity.timestamp(identity.notAfter))", "days": "\(days)"])
    }

    private static func stamps(_ files: Config.TLS) -> [FileStamp] {
        [files.cert, files.key, files.ca].map(FileStamp.of)
    }

    private static func build(_ identity: TLSIdentity, stamps: [FileStamp], key: String) throws(TLSFileError) -> Current {
        do {
            var server = TLSConfiguration.makeServerConfiguration(
                certificateChain: identity.chain.map { .certificate($0) }, privateKey: .privateKey(identity.privateKey))
            server.minimumTLSVersion = .tlsv13
            server.certificateVerification = .noHostnameVerification
            server.trustRoots = .certificates(identity.authorities)
            return Current(
                identity: identity, server: try NIOSSLContext(configuration: server),
                client: try NIOSSLContext(configuration: clientConfiguration(identity)), stamps: stamps, settling: nil)
        } catch {
            throw TLSFileError(.malformed, key: key + ".cert", path: identity.files.cert, "cannot be used by BoringSSL: \(error)")
        }
    }

    /// A TLS 1.3 client configuration presenting `identity` and trusting
    /// only its CA file (also what the etcd client uses).
    public static func clientConfiguration(_ identity: TLSIdentity) -> TLSConfiguration {
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        client.certificateVerification = .fullVerification
        client.trustRoots = .certificates(identity.authorities)
        client.certificateChain = identity.chain.map { .certificate($0) }
        client.privateKey = .privateKey(identity.privateKey)
        return client
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
