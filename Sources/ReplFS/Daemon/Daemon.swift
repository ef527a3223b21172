#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging

/// Wires a configuration into a running node: data directory, store
/// (with recovery), file system and FUSE session.
///
/// Startup checks come first and change nothing when they fail (exit code
/// 2); `run()` then serves until `stop()`, and unmounts cleanly.
public final class Daemon: Sendable {
    public let config: Config
    public let store: Store
    public let session: FUSESession
    private let lockFD: Int32
    private let logger: Logger

    /// A startup failure: bad configuration or environment (exit code 2).
    public struct StartupError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(config: Config, logger: Logger) throws(StartupError) {
        self.config = config
        self.logger = logger
        let directory = DataDirectory(root: config.data)
        // Every check first; nothing is created or changed until all pass.
        let preparation: MountPoint.Preparation
        do {
            preparation = try MountPoint.check(config.mount)
            try directory.check(cluster: config.cluster)
        } catch let error as MountError {
            throw StartupError(description: "\(error)")
        } catch {
            throw StartupError(description: "\(error)")
        }
        do {
            try directory.prepare(cluster: config.cluster, node: config.node)
            lockFD = try directory.lock()
        } catch {
            throw StartupError(description: "\(error)")
        }
        do {
            store = try Store(directory: directory, nodeID: config.nodeID, logger: logger)
            let fileSystem = try FileSystem(store: store)
            // Cleared or created only now, right before mounting: while a dead
            // mount is in place nothing can be written under it by mistake.
            try MountPoint.prepare(config.mount, preparation, logger: logger)
            session = try FUSESession(fileSystem: fileSystem, mountPoint: config.mount)
        } catch let error as StoreError {
            Syscall.close(lockFD)
            throw StartupError(description: "\(error)")
        } catch {
            Syscall.close(lockFD)
            throw StartupError(description: "\(error)")
        }
    }

    deinit {
        Syscall.close(lockFD)
    }

    /// Serves until ``stop()``, then unmounts and flushes the logs.
    public func run() {
        logger.info("mounted", metadata: ["mount": "\(config.mount)", "data": "\(config.data)", "node": "\(config.node)"])
        let result = session.run()
        session.unmount()
        store.close()
        logger.info("unmounted", metadata: ["mount": "\(config.mount)", "loop": "\(result)"])
    }

    /// Ends ``run()`` (from any thread or a signal handler's queue).
    public func stop() {
        session.stop()
    }
}
