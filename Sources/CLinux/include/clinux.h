#ifndef CLINUX_H
#define CLINUX_H

#include <sys/types.h>

// Linux calls that glibc declares only under _GNU_SOURCE (which Swift's Glibc
// module does not define) or that Swift cannot name unambiguously.

/// fallocate(2).
int clinux_fallocate(int fd, int mode, off_t offset, off_t length);
/// syncfs(2).
int clinux_syncfs(int fd);

/// malloc_trim(3): returns free heap memory to the system.
int clinux_malloc_trim(void);
/// renameat2(2).
int clinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
/// sync_file_range(2) with WAIT_BEFORE | WRITE | WAIT_AFTER: the range is on
/// the device (in its cache) on return; a later flush makes it durable.
int clinux_write_out(int fd, off_t offset, off_t length);
/// sync_file_range(2) with WRITE only: starts writing a range out, returns at once.
int clinux_start_write_out(int fd, off_t offset, off_t length);
/// gettid(2): the calling thread's ID (what FUSE reports as a request's pid).
int clinux_gettid(void);
/// pipe2(2) with O_CLOEXEC.
int clinux_pipe_cloexec(int ends[2]);
/// flock(2) (Swift resolves `flock` to the struct of the same name).
int clinux_flock(int fd, int operation);

/// Starts a supervised program; Swift cannot run code between fork and exec.
///
/// Forks (from the calling thread, which must outlive the child: the parent
/// death signal fires when the *thread* that forked exits), and in the child:
/// moves it into a new process group of its own (setpgid(0, 0)), asks for
/// SIGKILL when the parent dies (prctl(PR_SET_PDEATHSIG)) and exits at once
/// if the parent is already gone, resets every signal disposition to the
/// default and unblocks all signals (SIG_IGN and the mask survive exec), marks
/// every descriptor above 2 close-on-exec, then execve(2)s `file` with `argv`
/// and `envp`. A `file` without a slash is looked up in `search_path` (a
/// colon-separated PATH) the way execvp(3) does it, without allocating.
/// stdin, stdout and stderr are inherited; with `output_fd` >= 0, stdout and
/// stderr go to `output_fd` instead and stdin reads /dev/null.
///
/// Returns the child's pid once it has exec'd. If it could not (not found, not
/// executable, ...), the child reports the errno through a close-on-exec pipe,
/// is reaped, and this returns -1 with the errno in `*error`.
pid_t clinux_spawn(const char *file, char *const argv[], char *const envp[], const char *search_path, int output_fd, int *error);
/// Sends one link-layer frame out of interface `ifindex` (an AF_PACKET
/// SOCK_DGRAM socket: the kernel adds the Ethernet header) to the 6-byte
/// `destination`, with EtherType `protocol` (host order): a gratuitous ARP
/// or an unsolicited neighbour advertisement. 0, or -1 with errno.
int clinux_send_link_frame(int ifindex, unsigned short protocol, const unsigned char *destination, const void *frame, size_t length);
/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to
/// this process (instead of init, which may never reap them), so they can be
/// waited for.
int clinux_set_child_subreaper(void);
/// prctl(PR_SET_PDEATHSIG, signal): `signal` is sent to this process when the
/// thread that forked it exits.
int clinux_set_parent_death_signal(int signal);
/// sigtimedwait(2) for SIGTERM, SIGINT, SIGHUP and SIGCHLD, which the caller
/// blocked first with clinux_block_watchdog_signals: the signal, or 0 after
/// `milliseconds`.
int clinux_wait_watchdog_signal(int milliseconds);
/// Blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD in the calling thread, so they
/// are taken with clinux_wait_watchdog_signal instead of handlers.
int clinux_block_watchdog_signals(void);
/// waitid(P_PGID, pgid, WEXITED | WNOHANG | WNOWAIT): the pid of a child in
/// process group `pgid` that has exited, left unreaped (so its pid cannot be
/// reused yet); 0 if none has; -1 with errno on failure (ECHILD: no child in
/// that group).
pid_t clinux_exited_child_in_group(pid_t pgid);
/// waitid(P_PID, pid, WEXITED | WNOWAIT): blocks until child `pid` has exited
/// and returns its pid, leaving it unreaped; -1 with errno on failure.
pid_t clinux_wait_exited(pid_t pid);
/// pidfd_open(2): a descriptor that becomes readable when `pid` exits.
int clinux_pidfd_open(pid_t pid);

#endif
