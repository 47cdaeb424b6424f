/*
 * virtiofsd-ts-sandbox: the single-threaded launcher that runs before node. It narrows the capability bounding set
 * and, with --namespaces, runs the command as PID 1 of new mount, pid and network namespaces with a fresh /proc.
 *
 *   virtiofsd-ts-sandbox [--namespaces] [--keep-caps=HEX] [--] COMMAND [ARG...]
 *
 * Why a separate program: unshare(CLONE_NEWNS) fails with EINVAL in a multithreaded process, Node is always
 * multithreaded, and fork() in a threaded process is only safe up to exec. Capabilities are per thread too: a
 * capset() from JS would leave the V8 platform threads, the libuv pool and our poller with every capability. Here
 * there is one thread, so the bounding set is narrowed right before exec and every thread node ever creates starts
 * from it.
 *
 * --keep-caps=HEX: every capability whose bit is clear in HEX is dropped from the bounding set (PR_CAPBSET_DROP),
 * from the inheritable set and from the ambient set. At execve of a root process the file's permitted and
 * inheritable sets count as full, so the new permitted set is (inheritable | bounding) [| ambient]: all three must
 * be narrowed. Nothing can add a capability back (no CAP_SETPCAP is kept, and the bounding set only shrinks).
 *
 * --namespaces: unshare, fork the namespace's PID 1, make the inherited mounts slaves (host mounts still propagate
 * in, nothing propagates out), mount a /proc that shows only the new pid namespace, narrow the capabilities, exec.
 * The command (the CLI again) still has mount work to do once it has opened what it needs (bind the shared
 * directory onto itself, pivot_root into it), which needs CAP_SYS_ADMIN. So that the daemon does not have to keep
 * CAP_SYS_ADMIN, the helper, which shares its mount namespace and keeps its capabilities, does that work on the
 * daemon's request over a socket pair (fd number in VIRTIOFSD_TS_SANDBOX_FD). pivot_root(2) moves the root of
 * every process of the namespace whose root was the old one, so the daemon's root moves with the helper's. After
 * the pivot the helper closes the channel: a daemon taken over later by a guest has nobody to ask.
 *   request: one byte ('B' bind DIR onto itself, 'P' pivot_root into DIR and detach the old root) + DIR + NUL,
 *            or 'S' + NUL: the daemon handles the forwarded signals from now on (see below)
 *   reply:   an int, 0 or the errno
 *
 * The helper stays as the parent: it forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the child (the
 * util-linux `unshare --fork` ignores them, so a VMM's SIGTERM would never reach the daemon), and exits with the
 * child's status (re-raising a fatal signal). The child gets SIGKILL if the helper dies (PR_SET_PDEATHSIG). Without
 * --namespaces the helper execs the command in place (no parent stays).
 * The child is PID 1 of its namespace, and the kernel drops a signal sent to a PID 1 that has no handler for it
 * (even node's own SIGTERM handler re-raises, and that is dropped too): a SIGTERM in the child's first moments
 * would be lost and the daemon would serve on. So the helper holds the signals that arrive before the child's 'S'
 * (sent once its listeners are in place) and forwards them then, or when the channel closes without one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define CHANNEL_ENV "VIRTIOFSD_TS_SANDBOX_FD"

static volatile pid_t child_pid = -1;
/* Until the child has said 'S': the signals held back, as a bit set (see the file comment). */
static volatile sig_atomic_t child_handles_signals = 0;
static volatile sig_atomic_t held_signals = 0;

static void forward(int sig) {
  if (!child_handles_signals) {
    held_signals |= 1 << sig;
    return;
  }
  if (child_pid > 0) kill(child_pid, sig);
}

/* From now on the child handles the forwarded signals: sends it those held back. Idempotent. */
static void release_signals(const sigset_t *forwarded) {
  sigset_t old;
  sigprocmask(SIG_BLOCK, forwarded, &old); /* no handler runs between the test and the sends */
  if (!child_handles_signals) {
    child_handles_signals = 1;
    for (int sig = 1; sig < 32; sig++) {
      if (held_signals & (1 << sig)) kill(child_pid, sig);
    }
    held_signals = 0;
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
}

static void die(const char *what) {
  fprintf(stderr, "virtiofsd-ts-sandbox: %s: %s\n", what, strerror(errno));
  _exit(125);
}

static void usage(void) {
  fprintf(stderr, "usage: virtiofsd-ts-sandbox [--namespaces] [--keep-caps=HEX] [--] COMMAND [ARG...]\n");
  exit(125);
}

/* The highest capability number this kernel knows. */
static int last_cap(void) {
  int last = CAP_LAST_CAP;
  FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
  if (f != NULL) {
    if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(f);
  }
  return last;
}

/* Narrows bounding, inheritable and ambient sets to `keep` (see the file comment). */
static void keep_only_caps(uint64_t keep) {
  int last = last_cap();
  for (int cap = 0; cap <= last && cap < 64; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("prctl(PR_CAPBSET_DROP)");
  }
  /* EINVAL: a kernel before 4.3 has no ambient set. */
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die("prctl(PR_CAP_AMBIENT)");
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  if (syscall(SYS_capget, &hdr, data) < 0) die("capget");
  data[0].inheritable &= (uint32_t)keep;
  data[1].inheritable &= (uint32_t)(keep >> 32);
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
}

/* One request of the daemon (see the file comment); returns 0 or an errno. */
static int serve_request(const char *msg, size_t len, int *pivoted, const sigset_t *forwarded) {
  if (len == 2 && msg[0] == 'S' && msg[1] == '\0') {
    release_signals(forwarded);
    return 0;
  }
  if (len < 3 || msg[len - 1] != '\0' || strlen(msg + 1) != len - 2 || msg[1] != '/') return EINVAL;
  const char *dir = msg + 1;
  switch (msg[0]) {
  case 'B':
    return mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) < 0 ? errno : 0;
  case 'P':
    *pivoted = 1;
    /* The old root is stacked on "." by pivot_root(".", "."), then detached. */
    if (chdir(dir) < 0) return errno;
    if (syscall(SYS_pivot_root, ".", ".") < 0) return errno;
    if (umount2(".", MNT_DETACH) < 0) return errno;
    return chdir("/") < 0 ? errno : 0;
  default:
    return EINVAL;
  }
}

/* Serves the daemon's requests until it pivots or closes its end (e.g. it died); then no signal is held back. */
static void serve_channel(int fd, const sigset_t *forwarded) {
  char msg[1 + 4096 + 1];
  int pivoted = 0;
  while (!pivoted) {
    ssize_t n = recv(fd, msg, sizeof msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    int err = serve_request(msg, (size_t)n, &pivoted, forwarded);
    while (send(fd, &err, sizeof err, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
  }
  close(fd);
  release_signals(forwarded);
}

int main(int argc, char **argv) {
  int namespaces = 0, narrow = 0, i = 1;
  uint64_t keep = 0;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "--namespaces") == 0) {
      namespaces = 1;
    } else if (strncmp(argv[i], "--keep-caps=", 12) == 0) {
      char *end;
      errno = 0;
      keep = strtoull(argv[i] + 12, &end, 16);
      if (errno != 0 || end == argv[i] + 12 || *end != '\0') usage();
      narrow = 1;
    } else {
      usage();
    }
  }
  if (i >= argc) usage();
  char **command = argv + i;

  if (!namespaces) {
    if (narrow) keep_only_caps(keep);
    execvp(command[0], command);
    die(command[0]);
  }

  /* Block the forwarded signals across the fork, so none is lost before the handlers are in place. */
  sigset_t fwd, old;
  sigemptyset(&fwd);
  sigaddset(&fwd, SIGINT);
  sigaddset(&fwd, SIGTERM);
  sigaddset(&fwd, SIGHUP);
  sigaddset(&fwd, SIGQUIT);
  sigaddset(&fwd, SIGUSR1); /* the daemon's operation stats (host/cli.ts): not the helper's default death */
  sigaddset(&fwd, SIGUSR2); /* the daemon's stats request (host/stats.ts) */
  sigprocmask(SIG_BLOCK, &fwd, &old);

  int channel[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) < 0) die("socketpair");
  if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET) < 0) die("unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET)");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    /* PID 1 of the new pid namespace. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PR_SET_PDEATHSIG)");
    /* (getppid() is 0 here: the helper lives outside this pid namespace, so a death before the prctl cannot be
     * detected that way; the window is the few instructions since fork.) */
    close(channel[0]);
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("mount(/, MS_REC|MS_SLAVE)");
    /* Our own /proc: /proc/self/fd keeps working, and it shows no process outside the namespace. */
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount(proc, /proc)");
    if (fcntl(channel[1], F_SETFD, 0) < 0) die("fcntl(F_SETFD)");
    char fdstr[16];
    snprintf(fdstr, sizeof fdstr, "%d", channel[1]);
    if (setenv(CHANNEL_ENV, fdstr, 1) < 0) die("setenv");
    if (narrow) keep_only_caps(keep);
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(command[0], command);
    die(command[0]);
  }
  child_pid = pid;
  close(channel[1]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);

  serve_channel(channel[0], &fwd);

  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) die("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &fwd, NULL);
    raise(sig);
    return 128 + sig;
  }
  return 125;
}
