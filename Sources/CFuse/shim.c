#include "cfuse.h"
#include <errno.h>
#include <stddef.h>

int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_idle, unsigned max_threads) {
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    if (config == NULL) return -1;
    fuse_loop_cfg_set_idle_threads(config, max_idle);
    fuse_loop_cfg_set_max_threads(config, max_threads);
    fuse_loop_cfg_set_clone_fd(config, 0);
    int rc = fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
    return rc;
}

void cfuse_fi_set_open_flags(struct fuse_file_info *fi, int keep_cache, int direct_io, int noflush) {
    fi->keep_cache = keep_cache ? 1 : 0;
    fi->direct_io = direct_io ? 1 : 0;
    fi->noflush = noflush ? 1 : 0;
}

int cfuse_fi_flags(const struct fuse_file_info *fi) { return fi->flags; }

int cfuse_fi_is_flush(const struct fuse_file_info *fi) { return fi->flush; }

struct fuse_args cfuse_args(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return args;
}

void cfuse_conn_configure(struct fuse_conn_info *conn, unsigned want, unsigned unwant,
                          unsigned max_readahead, unsigned time_gran) {
    conn->want |= (want & conn->capable);
    conn->want &= ~unwant;
    if (max_readahead) conn->max_readahead = max_readahead;
    if (time_gran) conn->time_gran = time_gran;
}

int cfuse_s_isdir(mode_t m) { return S_ISDIR(m); }
int cfuse_s_isreg(mode_t m) { return S_ISREG(m); }
int cfuse_s_islnk(mode_t m) { return S_ISLNK(m); }
int cfuse_errno(void) { return errno; }
