#define _GNU_SOURCE
#include "clinux.h"
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>

int clinux_fallocate(int fd, int mode, off_t offset, off_t length) { return fallocate(fd, mode, offset, length); }
int clinux_syncfs(int fd) { return syncfs(fd); }

int clinux_malloc_trim(void) { return malloc_trim(0); }
int clinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}
int clinux_flock(int fd, int operation) { return flock(fd, operation); }
int clinux_write_out(int fd, off_t offset, off_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
}
int clinux_start_write_out(int fd, off_t offset, off_t length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
int clinux_gettid(void) { return (int)syscall(SYS_gettid); }

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/// execve(2) `file`, searching `search_path` if it has no slash (as execvp(3)
/// does, but with `envp` and on the stack: the child of a multithreaded
/// process may only make async-signal-safe calls). Returns the errno to report.
static int clinux_exec(const char *file, char *const argv[], char *const envp[], const char *search_path) {
    if (file[0] == '\0') return ENOENT;
    if (strchr(file, '/') != NULL) {
        execve(file, argv, envp);
        return errno;
    }
    size_t file_length = strlen(file);
    int result = ENOENT;
    int saw_denied = 0;
    const char *entry = search_path;
    while (1) {
        const char *end = strchr(entry, ':');
        size_t length = end != NULL ? (size_t)(end - entry) : strlen(entry);
        char candidate[4096];
        if (length + 1 + file_length + 1 <= sizeof candidate) {
            // An empty entry means the current directory.
            size_t at = 0;
            if (length == 0) candidate[at++] = '.';
            memcpy(candidate + at, entry, length);
            at += length;
            candidate[at++] = '/';
            memcpy(candidate + at, file, file_length + 1);
            execve(candidate, argv, envp);
            switch (errno) {
            case EACCES: saw_denied = 1; break;
            case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT: break;
            default: return errno;
            }
        }
        if (end == NULL) break;
        entry = end + 1;
    }
    return saw_denied ? EACCES : result;
}

/// The child's side of clinux_spawn: returns an errno only if it cannot exec.
static int clinux_spawn_child(pid_t parent, const char *file, char *const argv[], char *const envp[], const char *search_path, int output_fd) {
    if (setpgid(0, 0) != 0) return errno;
    if (output_fd >= 0) {
        // Above 2 first: dup2 onto itself would keep close-on-exec.
        if (output_fd <= 2 && (output_fd = fcntl(output_fd, F_DUPFD_CLOEXEC, 3)) < 0) return errno;
        if (dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0) return errno;
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0 && devnull != 0) {
            dup2(devnull, 0);
            close(devnull);
        }
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return errno;
    // The parent may have died before prctl: then nobody would kill us later.
    if (getppid() != parent) _exit(1);
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    for (int signal_number = 1; signal_number < NSIG; signal_number++) {
        if (signal_number == SIGKILL || signal_number == SIGSTOP) continue;
        (void)sigaction(signal_number, &default_action, NULL); // glibc's reserved signals fail: fine
    }
#ifdef SYS_close_range
    (void)syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC); // best effort (Linux >= 5.11)
#endif
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return clinux_exec(file, argv, envp, search_path);
}

pid_t clinux_spawn(const char *file, char *const argv[], char *const envp[], const char *search_path, int output_fd, int *error) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        *error = errno;
        return -1;
    }
    pid_t parent = getpid();
    // Block every signal around fork so no handler of the parent runs in the
    // child before the child has reset the dispositions (as posix_spawn does).
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        int child_error = clinux_spawn_child(parent, file, argv, envp, search_path, output_fd);
        ssize_t ignored = write(report[1], &child_error, sizeof child_error);
        (void)ignored;
        _exit(127);
    }
    int fork_error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        *error = fork_error;
        return -1;
    }
    // Also from the parent, so the group exists even before the child runs
    // (fails harmlessly with EACCES once the child has exec'd).
    (void)setpgid(pid, pid);
    int child_error = 0;
    ssize_t count;
    do {
        count = read(report[0], &child_error, sizeof child_error);
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof child_error) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *error = child_error;
        return -1;
    }
    return pid;
}

int clinux_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int clinux_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

static void clinux_watchdog_set(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGCHLD);
}

int clinux_block_watchdog_signals(void) {
    sigset_t set;
    clinux_watchdog_set(&set);
    return sigprocmask(SIG_BLOCK, &set, NULL);
}

int clinux_wait_watchdog_signal(int milliseconds) {
    sigset_t set;
    clinux_watchdog_set(&set);
    struct timespec timeout = {milliseconds / 1000, (long)(milliseconds % 1000) * 1000000L};
    int signal_number = sigtimedwait(&set, NULL, &timeout);
    return signal_number < 0 ? 0 : signal_number;
}

pid_t clinux_exited_child_in_group(pid_t pgid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int result;
    do {
        result = waitid(P_PGID, (id_t)pgid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (result < 0 && errno == EINTR);
    if (result < 0) return -1;
    return info.si_pid;
}

pid_t clinux_wait_exited(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int result;
    do {
        result = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT);
    } while (result < 0 && errno == EINTR);
    return result < 0 ? -1 : info.si_pid;
}

int clinux_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int clinux_send_link_frame(int ifindex, unsigned short protocol, const unsigned char *destination, const void *frame, size_t length) {
    // Protocol 0: the socket only sends (it receives nothing).
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_ll address;
    memset(&address, 0, sizeof address);
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(protocol);
    address.sll_ifindex = ifindex;
    address.sll_halen = 6;
    memcpy(address.sll_addr, destination, 6);
    ssize_t sent = sendto(fd, frame, length, 0, (struct sockaddr *)&address, sizeof address);
    int saved = errno;
    close(fd);
    if (sent < 0) {
        errno = saved;
        return -1;
    }
    return 0;
}

int clinux_pipe_cloexec(int ends[2]) { return pipe2(ends, O_CLOEXEC); }
