import Testing

/// Every integration test mounts real FUSE file systems and runs real
/// SQLite in separate processes. They run one at a time (the machine has two
/// cores, and timing-sensitive crash tests should not compete with each
/// other), and only as root with /dev/fuse.
@Suite(.serialized, .enabled(if: TestEnvironment.hasFUSE, "needs root and /dev/fuse"))
struct IntegrationTests {}
