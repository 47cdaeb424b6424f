/*
 * virtiofsd-ts-sandbox: runs a command as PID 1 of new mount, pid and network namespaces, with a fresh /proc.
 *
 *   virtiofsd-ts-sandbox COMMAND [ARG...]
 *
 * Why a separate program: unshare(CLONE_NEWNS) fails with EINVAL in a multithreaded process, and Node is always
 * multithreaded; fork() in a threaded process is only safe up to exec. So the CLI execve()s this helper, which is
 * single-threaded: it unshares, forks the namespace's PID 1, makes the inherited mounts slaves (host mounts still
 * propagate in, nothing propagates out), mounts a /proc that shows only the new pid namespace, and execs the
 * command (the CLI again, which then bind-mounts the shared directory and pivot_roots into it itself, after it
 * has opened what it needs).
 *
 * The helper stays as the parent: it forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the child (the util-linux
 * `unshare --fork` ignores them, so a VMM's SIGTERM would never reach the daemon), and exits with the child's
 * status (re-raising a fatal signal). The child gets SIGKILL if the helper dies (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child_pid = -1;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static void die(const char *what) {
  fprintf(stderr, "virtiofsd-ts-sandbox: %s: %s\n", what, strerror(errno));
  _exit(125);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: virtiofsd-ts-sandbox COMMAND [ARG...]\n");
    return 125;
  }
  /* Block the forwarded signals across the fork, so none is lost before the handlers are in place. */
  sigset_t fwd, old;
  sigemptyset(&fwd);
  sigaddset(&fwd, SIGINT);
  sigaddset(&fwd, SIGTERM);
  sigaddset(&fwd, SIGHUP);
  sigaddset(&fwd, SIGQUIT);
  sigprocmask(SIG_BLOCK, &fwd, &old);

  if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET) < 0) die("unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET)");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    /* PID 1 of the new pid namespace. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl(PR_SET_PDEATHSIG)");
    /* (getppid() is 0 here: the helper lives outside this pid namespace, so a death before the prctl cannot be
     * detected that way; the window is the few instructions since fork.) */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("mount(/, MS_REC|MS_SLAVE)");
    /* Our own /proc: /proc/self/fd keeps working, and it shows no process outside the namespace. */
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount(proc, /proc)");
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[1], argv + 1);
    die(argv[1]);
  }
  child_pid = pid;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);

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
