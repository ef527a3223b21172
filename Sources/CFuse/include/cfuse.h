#ifndef CFUSE_H
#define CFUSE_H

// The libfuse API version ReplFS is written against (libfuse 3.14, Debian bookworm).
// It must be defined here, not in cSettings, so that Swift sees the same declarations.
#define FUSE_USE_VERSION 314

#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/file.h>
#include <fcntl.h>
#include <stdint.h>
#include <stddef.h>

/// fuse_session_loop_mt is a macro over versioned symbols; this calls it with a
/// loop configuration of at most `max_threads` workers, `max_idle` kept idle.
int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_idle, unsigned max_threads);

/// Sets the open flags the kernel reads back from fuse_file_info (bitfields).
void cfuse_fi_set_open_flags(struct fuse_file_info *fi, int keep_cache, int direct_io, int noflush);

/// The open(2) flags of a request's fuse_file_info.
int cfuse_fi_flags(const struct fuse_file_info *fi);

/// Whether a FUSE_RELEASE/FLUSH carries the flush bit.
int cfuse_fi_is_flush(const struct fuse_file_info *fi);

/// Builds a struct fuse_args (FUSE_ARGS_INIT is a macro).
struct fuse_args cfuse_args(int argc, char **argv);

/// Wants and unwants capability bits on the connection during init.
void cfuse_conn_configure(struct fuse_conn_info *conn, unsigned want, unsigned unwant,
                          unsigned max_readahead, unsigned time_gran);

/// Mode test macros.
int cfuse_s_isdir(mode_t m);
int cfuse_s_isreg(mode_t m);
int cfuse_s_islnk(mode_t m);

/// errno of the calling thread (a macro in glibc).
int cfuse_errno(void);

#endif
