#ifndef CLINUX_H
#define CLINUX_H

#include <sys/types.h>

// Linux calls that glibc declares only under _GNU_SOURCE (which Swift's Glibc
// module does not define) or that Swift cannot name unambiguously.

/// fallocate(2).
int clinux_fallocate(int fd, int mode, off_t offset, off_t length);
/// syncfs(2).
int clinux_syncfs(int fd);
/// renameat2(2).
int clinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/// sync_file_range(2) with WAIT_BEFORE | WRITE | WAIT_AFTER: the range is on
/// the device (in its cache) on return; a later flush makes it durable.
int clinux_write_out(int fd, off_t offset, off_t length);
/// sync_file_range(2) with WRITE only: starts writing a range out, returns at once.
int clinux_start_write_out(int fd, off_t offset, off_t length);
/// gettid(2): the calling thread's ID (what FUSE reports as a request's pid).
int clinux_gettid(void);
/// flock(2) (Swift resolves `flock` to the struct of the same name).
int clinux_flock(int fd, int operation);

#endif
