#define _GNU_SOURCE
#include "csystem.h"
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

int csystem_fallocate(int fd, int mode, off_t offset, off_t length) { return fallocate(fd, mode, offset, length); }
int csystem_syncfs(int fd) { return syncfs(fd); }
int csystem_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}
int csystem_flock(int fd, int operation) { return flock(fd, operation); }
int csystem_write_out(int fd, off_t offset, off_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}
int csystem_start_write_out(int fd, off_t offset, off_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
