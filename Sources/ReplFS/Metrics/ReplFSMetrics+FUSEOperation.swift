extension ReplFSMetrics {
    /// The FUSE operations counted and timed, one label value each. A closed
    /// set keeps `replfs_fuse_ops_total{op}` bounded and lets the handles be
    /// looked up by index on the hot path.
    public enum FUSEOperation: Int, CaseIterable, Sendable {
        case lookup, forget, getattr, setattr, readlink, mknod, mkdir, unlink, rmdir, symlink, rename, link
        case open, create, read, write, flush, release, fsync
        case opendir, readdir, releasedir, fsyncdir, statfs, fallocate, getlk, setlk
        /// Anything not listed above.
        case other

        /// The `op` label value.
        public var label: String { "\(self)" }
    }
}
