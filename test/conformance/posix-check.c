/*
 * posix-check: a POSIX (Linux flavour) conformance checker for a mounted filesystem.
 *
 *   posix-check DIR
 *
 * Creates a scratch directory DIR/posix-check.XXXXXX, runs numbered checks in it and removes it.
 * Prints one line per check:
 *   ok N group/name
 *   ok N group/name # SKIP why          (a property of the filesystem was probed and is absent)
 *   not ok N group/name: <call> expected <ERRNO/value> got <ERRNO/value>
 * lines starting with `#` (the scratch path, each group's time), and last
 * `posix-check: P passed, F failed, S skipped`. Exit status 0 iff F == 0. POSIX_CHECK_KEEP=1 keeps the scratch.
 * Properties a filesystem may lack (SEEK_HOLE, fallocate, a second filesystem for EXDEV, subdirectory link
 * counts) are probed: their checks are skipped with the reason, never passed.
 *
 * Built static (`cc -O2 -static`): the e2e guest's initramfs has no libc. Must run as root; the
 * permission checks fork a child that drops to uid/gid 65534 (nobody) with no supplementary groups.
 * Errno expectations follow Linux where POSIX allows several (rmdir of a non-empty directory: ENOTEMPTY
 * or EEXIST; unlink of a directory: EISDIR on Linux).
 *
 * Our own code, in the spirit of pjdfstest: every check names the call and the exact errno it wants.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define NOBODY 65534
#define GiB (1024LL * 1024 * 1024)

/* ------------------------------------------------------------------------------------------------ */
/* Reporting */

static int n_check, n_pass, n_fail, n_skip;
static const char *cur_name;
static char cur_why[768];
static int cur_bad, cur_skipped;

static const char *ename(int e) {
  static char buf[32];
  switch (e) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(EIO) E(ENXIO) E(EBADF) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY)
    E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(EMFILE) E(ETXTBSY) E(EFBIG) E(ENOSPC)
    E(ESPIPE) E(EROFS) E(EMLINK) E(ERANGE) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENODATA)
    E(EOVERFLOW) E(EOPNOTSUPP) E(ESTALE) E(EPROTO) E(EINTR) E(EDEADLK)
#undef E
    case 0: return "0";
  }
  snprintf(buf, sizeof buf, "errno %d", e);
  return buf;
}

static int begin(const char *name) {
  cur_name = name;
  cur_bad = 0;
  cur_skipped = 0;
  cur_why[0] = 0;
  return 1;
}

static int end(void) {
  n_check++;
  if (cur_bad) {
    printf("not ok %d %s: %s\n", n_check, cur_name, cur_why);
    n_fail++;
  } else if (cur_skipped) {
    printf("ok %d %s # SKIP %s\n", n_check, cur_name, cur_why);
    n_skip++;
  } else {
    printf("ok %d %s\n", n_check, cur_name);
    n_pass++;
  }
  fflush(stdout);
  return 0;
}

/* Records the first problem of the current check. */
static void note(const char *fmt, ...) {
  if (cur_bad) return;
  cur_bad = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cur_why, sizeof cur_why, fmt, ap);
  va_end(ap);
}

static void skip(const char *fmt, ...) {
  if (cur_bad || cur_skipped) return;
  cur_skipped = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cur_why, sizeof cur_why, fmt, ap);
  va_end(ap);
}

/* One check: CHECK("group/name") { ...expectations... }  (no `break`/`return` inside). */
#define CHECK(name) for (int once_ = begin(name); once_; once_ = end())

/* A call that must succeed (setup or the operation under test). */
#define SYS(call) \
  do { \
    errno = 0; \
    if ((long)(call) == -1) note("%s expected success got %s", #call, ename(errno)); \
  } while (0)

#define WANT_ERR(call, e) \
  do { \
    errno = 0; \
    long r_ = (long)(call); \
    int e_ = errno; \
    if (r_ != -1) note("%s expected %s got success (%ld)", #call, #e, r_); \
    else if (e_ != (e)) note("%s expected %s got %s", #call, #e, ename(e_)); \
  } while (0)

#define WANT_ERR2(call, e1, e2) \
  do { \
    errno = 0; \
    long r_ = (long)(call); \
    int e_ = errno; \
    if (r_ != -1) note("%s expected %s/%s got success (%ld)", #call, #e1, #e2, r_); \
    else if (e_ != (e1) && e_ != (e2)) note("%s expected %s/%s got %s", #call, #e1, #e2, ename(e_)); \
  } while (0)

#define WANT_EQ(what, got, want) \
  do { \
    long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ != w_) note("%s expected %lld got %lld", what, w_, g_); \
  } while (0)

#define WANT_MODE(what, got, want) \
  do { \
    unsigned g_ = (unsigned)(got), w_ = (unsigned)(want); \
    if (g_ != w_) note("%s expected 0%o got 0%o", what, w_, g_); \
  } while (0)

#define WANT_TRUE(what, cond) \
  do { \
    if (!(cond)) note("%s expected true got false", what); \
  } while (0)

/* Single-call checks. */
#define ERR(name, call, e) CHECK(name) WANT_ERR(call, e)
#define ERR2(name, call, e1, e2) CHECK(name) WANT_ERR2(call, e1, e2)
#define OKC(name, call) CHECK(name) SYS(call)

/* ------------------------------------------------------------------------------------------------ */
/* Helpers (return -1 with errno set on failure, like the calls they wrap) */

static int put(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return -1;
  size_t n = strlen(text);
  if (write(fd, text, n) != (ssize_t)n) {
    int e = errno;
    close(fd);
    errno = e ? e : EIO;
    return -1;
  }
  return close(fd);
}

/* Reads up to cap-1 bytes into buf (NUL-terminated). */
static ssize_t get(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, cap - 1);
  int e = errno;
  close(fd);
  if (n < 0) {
    errno = e;
    return -1;
  }
  buf[n] = 0;
  return n;
}

static int content_is(const char *path, const char *want) {
  char buf[4096];
  return get(path, buf, sizeof buf) >= 0 && strcmp(buf, want) == 0;
}

static struct stat st_of(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) memset(&st, 0xff, sizeof st);
  return st;
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* A directory on another filesystem than the cwd (for EXDEV), or NULL. */
static const char *other_fs_dir(void) {
  static const char *candidates[] = { "/dev", "/tmp", "/run", "/" };
  struct stat here, st;
  if (stat(".", &here) < 0) return NULL;
  for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++)
    if (stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode) && st.st_dev != here.st_dev) return candidates[i];
  return NULL;
}

static long long ns(struct timespec t) { return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }

static void pause_ms(int ms) {
  struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&t, NULL);
}

/* The filesystem's timestamps must move between two operations: wait longer than a coarse clock tick. */
static void tick(void) { pause_ms(30); }

static int all_bytes(const char *buf, size_t n, char c) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != c) return 0;
  return 1;
}

static char *name_of_len(size_t n, char c) {
  static char buf[PATH_MAX + 64];
  memset(buf, c, n);
  buf[n] = 0;
  return buf;
}

/* ------------------------------------------------------------------------------------------------ */
/* open / creat */

static void t_open(void) {
  int fd = -1;
  char buf[256];
  umask(022);

  CHECK("open/creat-new") {
    SYS(fd = open("o_new", O_WRONLY | O_CREAT | O_EXCL, 0666));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_TRUE("S_ISREG(st_mode)", S_ISREG(st.st_mode));
    WANT_EQ("st_size", st.st_size, 0);
    WANT_EQ("st_nlink", st.st_nlink, 1);
    WANT_EQ("st_uid", st.st_uid, geteuid());
    close(fd);
  }
  CHECK("open/creat-mode-masked-by-umask-022") WANT_MODE("mode", st_of("o_new").st_mode & 07777, 0644);
  CHECK("open/creat-mode-masked-by-umask-077") {
    umask(077);
    SYS(fd = open("o_um", O_WRONLY | O_CREAT | O_EXCL, 0666));
    close(fd);
    umask(022);
    WANT_MODE("mode", st_of("o_um").st_mode & 07777, 0600);
  }
  CHECK("open/creat-function") {
    SYS(fd = creat("o_creat", 0640));
    WANT_EQ("write on creat() fd", write(fd, "x", 1), 1);
    WANT_ERR(read(fd, buf, 1), EBADF);
    close(fd);
    WANT_MODE("mode", st_of("o_creat").st_mode & 07777, 0640);
  }
  ERR("open/excl-eexist", open("o_new", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
  CHECK("open/excl-on-dangling-symlink-eexist") {
    SYS(symlink("o_nowhere", "o_dangle"));
    WANT_ERR(open("o_dangle", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
    WANT_TRUE("target not created", !exists("o_nowhere"));
  }
  CHECK("open/creat-through-dangling-symlink-creates-target") {
    SYS(fd = open("o_dangle", O_WRONLY | O_CREAT, 0644));
    close(fd);
    WANT_TRUE("target exists", exists("o_nowhere"));
    WANT_TRUE("link is still a symlink", S_ISLNK(st_of("o_dangle").st_mode));
  }
  CHECK("open/creat-existing-keeps-content") {
    SYS(put("o_keep", "keep", 0644));
    SYS(fd = open("o_keep", O_RDWR | O_CREAT, 0600));
    close(fd);
    WANT_TRUE("content still 'keep'", content_is("o_keep", "keep"));
    WANT_MODE("mode unchanged", st_of("o_keep").st_mode & 07777, 0644);
  }
  SYS(mkdir("o_dir", 0755));
  ERR("open/o_directory-on-file-enotdir", open("o_new", O_RDONLY | O_DIRECTORY), ENOTDIR);
  CHECK("open/o_directory-on-dir") {
    SYS(fd = open("o_dir", O_RDONLY | O_DIRECTORY));
    close(fd);
  }
  ERR("open/dir-o_wronly-eisdir", open("o_dir", O_WRONLY), EISDIR);
  ERR("open/dir-o_rdwr-eisdir", open("o_dir", O_RDWR), EISDIR);
  ERR("open/dir-o_creat-eisdir", open("o_dir", O_WRONLY | O_CREAT, 0644), EISDIR);
  ERR("open/missing-enoent", open("o_missing", O_RDONLY), ENOENT);
  ERR("open/empty-path-enoent", open("", O_RDONLY), ENOENT);
  ERR("open/creat-in-missing-dir-enoent", open("o_missing/f", O_WRONLY | O_CREAT, 0644), ENOENT);
  ERR("open/component-not-dir-enotdir", open("o_new/f", O_RDONLY), ENOTDIR);
  ERR("open/creat-component-not-dir-enotdir", open("o_new/f", O_WRONLY | O_CREAT, 0644), ENOTDIR);
  ERR("open/trailing-slash-on-file-enotdir", open("o_new/", O_RDONLY), ENOTDIR);
  ERR("open/name-max-plus-1-enametoolong", open(name_of_len(NAME_MAX + 1, 'n'), O_RDONLY), ENAMETOOLONG);
  ERR("open/creat-name-max-plus-1-enametoolong", open(name_of_len(NAME_MAX + 1, 'n'), O_WRONLY | O_CREAT, 0644),
      ENAMETOOLONG);
  CHECK("open/creat-name-max") {
    SYS(fd = open(name_of_len(NAME_MAX, 'm'), O_WRONLY | O_CREAT | O_EXCL, 0644));
    close(fd);
    WANT_TRUE("exists", exists(name_of_len(NAME_MAX, 'm')));
    SYS(unlink(name_of_len(NAME_MAX, 'm')));
  }
  CHECK("open/path-max-enametoolong") {
    char *p = name_of_len(PATH_MAX + 10, 'a');
    for (int i = 100; i < PATH_MAX + 10; i += 101) p[i] = '/';
    WANT_ERR(open(p, O_RDONLY), ENAMETOOLONG);
  }
  CHECK("open/symlink-loop-eloop") {
    SYS(symlink("o_loop2", "o_loop1"));
    SYS(symlink("o_loop1", "o_loop2"));
    WANT_ERR(open("o_loop1", O_RDONLY), ELOOP);
  }
  ERR("open/self-loop-eloop", (symlink("o_self", "o_self"), open("o_self", O_RDONLY)), ELOOP);
  CHECK("open/o_nofollow-on-symlink-eloop") {
    SYS(symlink("o_new", "o_lnk"));
    WANT_ERR(open("o_lnk", O_RDONLY | O_NOFOLLOW), ELOOP);
  }
  CHECK("open/o_nofollow-on-file") {
    SYS(fd = open("o_new", O_RDONLY | O_NOFOLLOW));
    close(fd);
  }
  CHECK("open/follows-symlink") {
    SYS(put("o_new", "via link", 0644));
    WANT_TRUE("read through link", content_is("o_lnk", "via link"));
  }
  CHECK("open/o_trunc") {
    SYS(put("o_tr", "0123456789", 0644));
    SYS(fd = open("o_tr", O_WRONLY | O_TRUNC));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_EQ("st_size after O_TRUNC", st.st_size, 0);
    close(fd);
    WANT_EQ("stat size", st_of("o_tr").st_size, 0);
  }
  CHECK("open/o_trunc-updates-mtime") {
    SYS(put("o_tr2", "0123456789", 0644));
    struct stat a = st_of("o_tr2");
    tick();
    SYS(fd = open("o_tr2", O_WRONLY | O_TRUNC));
    close(fd);
    struct stat b = st_of("o_tr2");
    WANT_TRUE("mtime moved", ns(b.st_mtim) > ns(a.st_mtim));
    WANT_TRUE("ctime moved", ns(b.st_ctim) > ns(a.st_ctim));
  }
  CHECK("open/o_append") {
    SYS(put("o_ap", "abc", 0644));
    SYS(fd = open("o_ap", O_WRONLY | O_APPEND));
    SYS(lseek(fd, 0, SEEK_SET));
    WANT_EQ("write", write(fd, "def", 3), 3);
    WANT_EQ("offset after append", lseek(fd, 0, SEEK_CUR), 6);
    close(fd);
    WANT_TRUE("content abcdef", content_is("o_ap", "abcdef"));
  }
  CHECK("open/o_append-two-fds") {
    int fd2 = -1;
    SYS(put("o_ap2", "", 0644));
    SYS(fd = open("o_ap2", O_WRONLY | O_APPEND));
    SYS(fd2 = open("o_ap2", O_WRONLY | O_APPEND));
    WANT_EQ("write 1", write(fd, "11", 2), 2);
    WANT_EQ("write 2", write(fd2, "22", 2), 2);
    WANT_EQ("write 3", write(fd, "33", 2), 2);
    close(fd);
    close(fd2);
    WANT_TRUE("content 112233", content_is("o_ap2", "112233"));
  }
  CHECK("open/o_rdonly-reads") {
    SYS(put("o_rd", "read me", 0444));
    SYS(fd = open("o_rd", O_RDONLY));
    memset(buf, 0, sizeof buf);
    WANT_EQ("read", read(fd, buf, sizeof buf), 7);
    WANT_TRUE("bytes", memcmp(buf, "read me", 7) == 0);
    close(fd);
  }
  CHECK("open/o_creat-mode-0-root-can-open") {
    SYS(fd = open("o_zero", O_WRONLY | O_CREAT | O_EXCL, 0));
    close(fd);
    WANT_MODE("mode", st_of("o_zero").st_mode & 07777, 0);
    SYS(fd = open("o_zero", O_RDWR));
    close(fd);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* mkdir / rmdir */

static void t_dirs(void) {
  umask(022);
  CHECK("mkdir/new") {
    SYS(mkdir("d_new", 0777));
    struct stat st = st_of("d_new");
    WANT_TRUE("S_ISDIR", S_ISDIR(st.st_mode));
    WANT_MODE("mode (umask 022)", st.st_mode & 07777, 0755);
    WANT_EQ("st_nlink", st.st_nlink, 2);
  }
  CHECK("mkdir/parent-nlink-counts-subdirs") {
    SYS(mkdir("d_cnt", 0755));
    struct stat a = st_of("d_cnt");
    SYS(mkdir("d_cnt/a", 0755));
    SYS(mkdir("d_cnt/b", 0755));
    struct stat b = st_of("d_cnt");
    if (a.st_nlink == 1) skip("the filesystem does not count subdirectories in st_nlink");
    else WANT_EQ("parent st_nlink", b.st_nlink, a.st_nlink + 2);
    SYS(rmdir("d_cnt/a"));
    if (a.st_nlink != 1) WANT_EQ("parent st_nlink after rmdir", st_of("d_cnt").st_nlink, a.st_nlink + 1);
  }
  CHECK("mkdir/mode-sticky-kept") {
    SYS(mkdir("d_sticky", 01777));
    WANT_MODE("mode", st_of("d_sticky").st_mode & 07777, 01755);
  }
  ERR("mkdir/existing-dir-eexist", mkdir("d_new", 0755), EEXIST);
  ERR("mkdir/existing-file-eexist", (put("d_file", "f", 0644), mkdir("d_file", 0755)), EEXIST);
  ERR("mkdir/existing-symlink-eexist", (symlink("d_nowhere", "d_dangle"), mkdir("d_dangle", 0755)), EEXIST);
  ERR("mkdir/missing-parent-enoent", mkdir("d_missing/x", 0755), ENOENT);
  ERR("mkdir/component-not-dir-enotdir", mkdir("d_file/x", 0755), ENOTDIR);
  ERR("mkdir/name-max-plus-1-enametoolong", mkdir(name_of_len(NAME_MAX + 1, 'd'), 0755), ENAMETOOLONG);
  CHECK("mkdir/dotdot-is-parent") {
    SYS(mkdir("d_new/sub", 0755));
    WANT_EQ("st_ino of d_new/sub/..", st_of("d_new/sub/..").st_ino, st_of("d_new").st_ino);
    WANT_EQ("st_ino of d_new/.", st_of("d_new/.").st_ino, st_of("d_new").st_ino);
  }
  CHECK("rmdir/empty") {
    SYS(mkdir("d_rm", 0755));
    SYS(rmdir("d_rm"));
    WANT_TRUE("gone", !exists("d_rm"));
  }
  ERR2("rmdir/not-empty-enotempty", rmdir("d_new"), ENOTEMPTY, EEXIST);
  CHECK("rmdir/not-empty-with-file-enotempty") {
    SYS(mkdir("d_ne", 0755));
    SYS(put("d_ne/f", "x", 0644));
    WANT_ERR2(rmdir("d_ne"), ENOTEMPTY, EEXIST);
    WANT_TRUE("still there", exists("d_ne/f"));
  }
  ERR("rmdir/file-enotdir", rmdir("d_file"), ENOTDIR);
  ERR("rmdir/symlink-to-dir-enotdir", (symlink("d_new", "d_ldir"), rmdir("d_ldir")), ENOTDIR);
  ERR("rmdir/missing-enoent", rmdir("d_missing"), ENOENT);
  ERR("rmdir/component-not-dir-enotdir", rmdir("d_file/x"), ENOTDIR);
  ERR("rmdir/dot-einval", rmdir("d_new/sub/."), EINVAL);
  ERR("rmdir/cwd-dot-einval", rmdir("."), EINVAL);
  ERR2("rmdir/dotdot-enotempty", rmdir("d_new/sub/.."), ENOTEMPTY, EEXIST);
  CHECK("rmdir/open-dir-then-readdir-empty") {
    DIR *d = NULL;
    SYS(mkdir("d_open", 0755));
    d = opendir("d_open");
    if (!d) note("opendir(d_open) expected success got %s", ename(errno));
    SYS(rmdir("d_open"));
    if (d) {
      int n = 0;
      while (readdir(d)) n++;
      WANT_TRUE("at most . and .. in a removed directory", n <= 2);
      closedir(d);
    }
    WANT_ERR(mkdir("d_open/x", 0755), ENOENT);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* unlink */

static void t_unlink(void) {
  char buf[64];
  CHECK("unlink/file") {
    SYS(put("u_f", "x", 0644));
    SYS(unlink("u_f"));
    WANT_ERR(lstat("u_f", &(struct stat){0}), ENOENT);
  }
  ERR("unlink/dir-eisdir", (mkdir("u_d", 0755), unlink("u_d")), EISDIR);
  ERR("unlink/missing-enoent", unlink("u_missing"), ENOENT);
  ERR("unlink/component-not-dir-enotdir", (put("u_f2", "x", 0644), unlink("u_f2/x")), ENOTDIR);
  ERR("unlink/unlinkat-removedir-on-file-enotdir", unlinkat(AT_FDCWD, "u_f2", AT_REMOVEDIR), ENOTDIR);
  OKC("unlink/unlinkat-removedir-on-dir", unlinkat(AT_FDCWD, "u_d", AT_REMOVEDIR));
  CHECK("unlink/symlink-removes-link-not-target") {
    SYS(put("u_t", "target", 0644));
    SYS(symlink("u_t", "u_l"));
    SYS(unlink("u_l"));
    WANT_TRUE("link gone", !exists("u_l"));
    WANT_TRUE("target kept", content_is("u_t", "target"));
  }
  CHECK("unlink/open-file-stays-readable") {
    int fd = -1;
    SYS(put("u_open", "still here", 0644));
    SYS(fd = open("u_open", O_RDWR));
    SYS(unlink("u_open"));
    WANT_TRUE("name gone", !exists("u_open"));
    memset(buf, 0, sizeof buf);
    WANT_EQ("pread", pread(fd, buf, sizeof buf, 0), 10);
    WANT_TRUE("bytes", memcmp(buf, "still here", 10) == 0);
    WANT_EQ("pwrite after unlink", pwrite(fd, "X", 1, 0), 1);
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_EQ("st_nlink", st.st_nlink, 0);
    close(fd);
  }
  CHECK("unlink/fchmod-ftruncate-after-unlink") {
    int fd = -1;
    SYS(put("u_gone", "0123456789", 0644));
    SYS(fd = open("u_gone", O_RDWR));
    SYS(unlink("u_gone"));
    SYS(fchmod(fd, 0600));
    SYS(ftruncate(fd, 3));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_MODE("mode", st.st_mode & 07777, 0600);
    WANT_EQ("st_size", st.st_size, 3);
    close(fd);
  }
  CHECK("unlink/updates-parent-mtime") {
    SYS(mkdir("u_p", 0755));
    SYS(put("u_p/f", "x", 0644));
    struct stat a = st_of("u_p");
    tick();
    SYS(unlink("u_p/f"));
    struct stat b = st_of("u_p");
    WANT_TRUE("parent mtime moved", ns(b.st_mtim) > ns(a.st_mtim));
    WANT_TRUE("parent ctime moved", ns(b.st_ctim) > ns(a.st_ctim));
  }
  CHECK("unlink/hardlink-decrements-nlink-and-ctime") {
    SYS(put("u_h1", "h", 0644));
    SYS(link("u_h1", "u_h2"));
    struct stat a = st_of("u_h1");
    tick();
    SYS(unlink("u_h2"));
    struct stat b = st_of("u_h1");
    WANT_EQ("st_nlink", b.st_nlink, 1);
    WANT_TRUE("ctime moved", ns(b.st_ctim) > ns(a.st_ctim));
  }
}

/* rename(2) or link(2) of `from` into another filesystem: EXDEV, and nothing created there (skipped without one). */
static void want_exdev(int (*op)(const char *, const char *), const char *from) {
  const char *other = other_fs_dir();
  char p[PATH_MAX];
  if (!other) {
    skip("no second filesystem to reach");
    return;
  }
  snprintf(p, sizeof p, "%s/posix-check-exdev", strcmp(other, "/") ? other : "");
  WANT_ERR(op(from, p), EXDEV);
  WANT_TRUE("nothing created there", !exists(p));
}

/* ------------------------------------------------------------------------------------------------ */
/* rename */

static void t_rename(void) {
  CHECK("rename/file-new-name") {
    SYS(put("r_a", "A", 0644));
    ino_t ino = st_of("r_a").st_ino;
    SYS(rename("r_a", "r_b"));
    WANT_TRUE("source gone", !exists("r_a"));
    WANT_TRUE("content", content_is("r_b", "A"));
    WANT_EQ("same inode", st_of("r_b").st_ino, ino);
  }
  CHECK("rename/file-over-file") {
    int fd = -1;
    SYS(put("r_src", "new", 0644));
    SYS(put("r_dst", "old", 0644));
    SYS(fd = open("r_dst", O_RDONLY));
    SYS(rename("r_src", "r_dst"));
    WANT_TRUE("source gone", !exists("r_src"));
    WANT_TRUE("content replaced", content_is("r_dst", "new"));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_EQ("replaced inode's st_nlink", st.st_nlink, 0);
    close(fd);
  }
  CHECK("rename/replaced-file-open-fd-reads-old-bytes") {
    int fd = -1;
    char buf[16] = { 0 };
    SYS(put("r_old", "old bytes", 0644));
    SYS(put("r_new", "new", 0644));
    SYS(fd = open("r_old", O_RDONLY));
    SYS(rename("r_new", "r_old"));
    WANT_EQ("pread", pread(fd, buf, sizeof buf, 0), 9);
    WANT_TRUE("old bytes", memcmp(buf, "old bytes", 9) == 0);
    close(fd);
    WANT_TRUE("name has the new bytes", content_is("r_old", "new"));
  }
  CHECK("rename/cwd-follows-renamed-dir") {
    int dfd = -1;
    SYS(mkdir("r_cwd1", 0755));
    SYS(dfd = open("r_cwd1", O_RDONLY | O_DIRECTORY));
    SYS(rename("r_cwd1", "r_cwd2"));
    int fd = -1;
    SYS(fd = openat(dfd, "made-after", O_WRONLY | O_CREAT | O_EXCL, 0644));
    close(fd);
    close(dfd);
    WANT_TRUE("file appears under the new name", exists("r_cwd2/made-after"));
    WANT_TRUE("old name gone", !exists("r_cwd1"));
  }
  CHECK("rename/dir-over-empty-dir") {
    SYS(mkdir("r_d1", 0755));
    SYS(put("r_d1/f", "in d1", 0644));
    SYS(mkdir("r_d2", 0755));
    SYS(rename("r_d1", "r_d2"));
    WANT_TRUE("source gone", !exists("r_d1"));
    WANT_TRUE("content moved", content_is("r_d2/f", "in d1"));
  }
  CHECK("rename/dir-over-nonempty-dir-enotempty") {
    SYS(mkdir("r_d3", 0755));
    SYS(mkdir("r_d4", 0755));
    SYS(put("r_d4/f", "x", 0644));
    WANT_ERR2(rename("r_d3", "r_d4"), ENOTEMPTY, EEXIST);
    WANT_TRUE("both remain", exists("r_d3") && exists("r_d4/f"));
  }
  ERR("rename/file-over-dir-eisdir", (put("r_f", "f", 0644), rename("r_f", "r_d3")), EISDIR);
  ERR("rename/dir-over-file-enotdir", rename("r_d3", "r_f"), ENOTDIR);
  ERR("rename/dir-into-own-subdir-einval", (mkdir("r_d3/sub", 0755), rename("r_d3", "r_d3/sub/x")), EINVAL);
  ERR("rename/dir-onto-own-child-einval", rename("r_d3", "r_d3/sub"), EINVAL);
  ERR("rename/missing-source-enoent", rename("r_missing", "r_x"), ENOENT);
  ERR("rename/target-dir-missing-enoent", rename("r_f", "r_missing/x"), ENOENT);
  ERR("rename/source-component-not-dir-enotdir", rename("r_f/x", "r_y"), ENOTDIR);
  ERR("rename/name-max-plus-1-enametoolong", rename("r_f", name_of_len(NAME_MAX + 1, 'r')), ENAMETOOLONG);
  ERR2("rename/dot-source", rename("r_d3/.", "r_dd"), EINVAL, EBUSY);
  CHECK("rename/same-name-noop") {
    SYS(rename("r_f", "r_f"));
    WANT_TRUE("still there", content_is("r_f", "f"));
  }
  CHECK("rename/hardlinks-same-inode-noop") {
    SYS(put("r_h1", "h", 0644));
    SYS(link("r_h1", "r_h2"));
    SYS(rename("r_h1", "r_h2"));
    WANT_TRUE("both names remain", exists("r_h1") && exists("r_h2"));
    WANT_EQ("st_nlink", st_of("r_h1").st_nlink, 2);
  }
  CHECK("rename/across-dirs-updates-dotdot") {
    SYS(mkdir("r_p1", 0755));
    SYS(mkdir("r_p2", 0755));
    SYS(mkdir("r_p1/c", 0755));
    SYS(rename("r_p1/c", "r_p2/c"));
    WANT_EQ("st_ino of r_p2/c/..", st_of("r_p2/c/..").st_ino, st_of("r_p2").st_ino);
    WANT_TRUE("old gone", !exists("r_p1/c"));
  }
  CHECK("rename/file-across-dirs") {
    SYS(put("r_p1/f", "moved", 0644));
    SYS(rename("r_p1/f", "r_p2/g"));
    WANT_TRUE("content", content_is("r_p2/g", "moved"));
    WANT_TRUE("old gone", !exists("r_p1/f"));
  }
  CHECK("rename/symlink-renames-link") {
    SYS(symlink("r_f", "r_sl"));
    SYS(rename("r_sl", "r_sl2"));
    WANT_TRUE("is symlink", S_ISLNK(st_of("r_sl2").st_mode));
    WANT_TRUE("target untouched", content_is("r_f", "f"));
  }
  CHECK("rename/updates-ctime") {
    SYS(put("r_ct", "c", 0644));
    struct stat a = st_of("r_ct");
    tick();
    SYS(rename("r_ct", "r_ct2"));
    WANT_TRUE("ctime moved", ns(st_of("r_ct2").st_ctim) > ns(a.st_ctim));
  }
  CHECK("rename/noreplace-existing-eexist") {
    SYS(put("r_n1", "1", 0644));
    SYS(put("r_n2", "2", 0644));
    WANT_ERR(renameat2(AT_FDCWD, "r_n1", AT_FDCWD, "r_n2", RENAME_NOREPLACE), EEXIST);
    WANT_TRUE("target untouched", content_is("r_n2", "2"));
  }
  CHECK("rename/noreplace-new-name") {
    SYS(renameat2(AT_FDCWD, "r_n1", AT_FDCWD, "r_n3", RENAME_NOREPLACE));
    WANT_TRUE("moved", content_is("r_n3", "1") && !exists("r_n1"));
  }
  CHECK("rename/exchange-files") {
    SYS(renameat2(AT_FDCWD, "r_n2", AT_FDCWD, "r_n3", RENAME_EXCHANGE));
    WANT_TRUE("r_n2 now 1", content_is("r_n2", "1"));
    WANT_TRUE("r_n3 now 2", content_is("r_n3", "2"));
  }
  CHECK("rename/exchange-file-and-dir") {
    SYS(mkdir("r_xd", 0755));
    SYS(put("r_xd/in", "in", 0644));
    SYS(renameat2(AT_FDCWD, "r_n2", AT_FDCWD, "r_xd", RENAME_EXCHANGE));
    WANT_TRUE("r_n2 is the dir", content_is("r_n2/in", "in"));
    WANT_TRUE("r_xd is the file", content_is("r_xd", "1"));
  }
  ERR("rename/exchange-missing-target-enoent", renameat2(AT_FDCWD, "r_n3", AT_FDCWD, "r_nx", RENAME_EXCHANGE), ENOENT);
  ERR("rename/noreplace-and-exchange-einval",
      renameat2(AT_FDCWD, "r_n3", AT_FDCWD, "r_xd", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
  CHECK("rename/exdev-across-mounts") want_exdev(rename, "r_f");

}

/* ------------------------------------------------------------------------------------------------ */
/* link */

static void t_link(void) {
  CHECK("link/across-dirs") {
    SYS(mkdir("l_a", 0755));
    SYS(mkdir("l_b", 0755));
    SYS(put("l_a/f", "shared", 0644));
    SYS(link("l_a/f", "l_b/g"));
    struct stat a = st_of("l_a/f"), b = st_of("l_b/g");
    WANT_EQ("same st_ino", b.st_ino, a.st_ino);
    WANT_EQ("st_nlink of source", a.st_nlink, 2);
    WANT_EQ("st_nlink of link", b.st_nlink, 2);
  }
  CHECK("link/write-through-one-name-seen-in-other") {
    SYS(put("l_b/g", "changed", 0644));
    WANT_TRUE("content via l_a/f", content_is("l_a/f", "changed"));
  }
  CHECK("link/three-names-nlink") {
    SYS(link("l_a/f", "l_third"));
    WANT_EQ("st_nlink", st_of("l_b/g").st_nlink, 3);
    SYS(unlink("l_a/f"));
    WANT_EQ("st_nlink after unlink", st_of("l_third").st_nlink, 2);
    WANT_TRUE("content kept", content_is("l_third", "changed"));
  }
  CHECK("link/updates-ctime") {
    struct stat a = st_of("l_third");
    tick();
    SYS(link("l_third", "l_fourth"));
    WANT_TRUE("ctime moved", ns(st_of("l_third").st_ctim) > ns(a.st_ctim));
  }
  ERR("link/to-dir-eperm", link("l_a", "l_dirlink"), EPERM);
  ERR("link/existing-target-eexist", link("l_third", "l_b/g"), EEXIST);
  ERR("link/missing-source-enoent", link("l_missing", "l_x"), ENOENT);
  ERR("link/into-missing-dir-enoent", link("l_third", "l_missing/x"), ENOENT);
  ERR("link/component-not-dir-enotdir", link("l_third/x", "l_y"), ENOTDIR);
  ERR("link/name-max-plus-1-enametoolong", link("l_third", name_of_len(NAME_MAX + 1, 'l')), ENAMETOOLONG);
  CHECK("link/of-symlink-links-the-symlink") {
    SYS(symlink("l_third", "l_sym"));
    SYS(linkat(AT_FDCWD, "l_sym", AT_FDCWD, "l_sym2", 0));
    struct stat st = st_of("l_sym2");
    WANT_TRUE("S_ISLNK", S_ISLNK(st.st_mode));
    WANT_EQ("st_nlink", st.st_nlink, 2);
  }
  CHECK("link/at-symlink-follow-links-target") {
    SYS(linkat(AT_FDCWD, "l_sym", AT_FDCWD, "l_fol", AT_SYMLINK_FOLLOW));
    WANT_EQ("same inode as target", st_of("l_fol").st_ino, st_of("l_third").st_ino);
  }
  CHECK("link/exdev-across-mounts") want_exdev(link, "l_third");

}

/* ------------------------------------------------------------------------------------------------ */
/* symlink / readlink */

static void t_symlink(void) {
  char buf[PATH_MAX];
  CHECK("symlink/readlink-round-trip") {
    SYS(symlink("some/where/../target", "s_l"));
    memset(buf, 0, sizeof buf);
    WANT_EQ("readlink length", readlink("s_l", buf, sizeof buf), 20);
    WANT_TRUE("readlink bytes", memcmp(buf, "some/where/../target", 20) == 0);
  }
  CHECK("symlink/lstat-type-and-size") {
    struct stat st = st_of("s_l");
    WANT_TRUE("S_ISLNK", S_ISLNK(st.st_mode));
    WANT_EQ("st_size", st.st_size, 20);
  }
  CHECK("symlink/long-target-round-trip") {
    char *t = name_of_len(3000, 'x');
    for (int i = 50; i < 3000; i += 51) t[i] = '/';
    SYS(symlink(t, "s_long"));
    char want[3001];
    memcpy(want, t, 3001);
    memset(buf, 0, sizeof buf);
    WANT_EQ("readlink length", readlink("s_long", buf, sizeof buf), 3000);
    WANT_TRUE("readlink bytes", memcmp(buf, want, 3000) == 0);
  }
  CHECK("symlink/readlink-short-buffer-truncates") {
    memset(buf, 0, sizeof buf);
    WANT_EQ("readlink with 4-byte buffer", readlink("s_l", buf, 4), 4);
    WANT_TRUE("first 4 bytes", memcmp(buf, "some", 4) == 0);
  }
  CHECK("symlink/stat-follows") {
    SYS(put("s_t", "tgt", 0600));
    SYS(symlink("s_t", "s_l2"));
    struct stat st;
    SYS(stat("s_l2", &st));
    WANT_TRUE("S_ISREG through link", S_ISREG(st.st_mode));
    WANT_EQ("st_ino is the target's", st.st_ino, st_of("s_t").st_ino);
  }
  CHECK("symlink/dangling") {
    SYS(symlink("s_nowhere", "s_dang"));
    WANT_ERR(stat("s_dang", &(struct stat){0}), ENOENT);
    WANT_TRUE("lstat works", S_ISLNK(st_of("s_dang").st_mode));
  }
  ERR("symlink/existing-eexist", symlink("x", "s_t"), EEXIST);
  ERR("symlink/existing-link-eexist", symlink("x", "s_l"), EEXIST);
  ERR("symlink/missing-dir-enoent", symlink("x", "s_missing/l"), ENOENT);
  ERR("symlink/name-max-plus-1-enametoolong", symlink("x", name_of_len(NAME_MAX + 1, 's')), ENAMETOOLONG);
  ERR("symlink/empty-target-enoent", symlink("", "s_empty"), ENOENT);
  ERR("readlink/on-file-einval", readlink("s_t", buf, sizeof buf), EINVAL);
  ERR("readlink/on-dir-einval", readlink(".", buf, sizeof buf), EINVAL);
  ERR("readlink/missing-enoent", readlink("s_missing", buf, sizeof buf), ENOENT);
  ERR("readlink/component-not-dir-enotdir", readlink("s_t/x", buf, sizeof buf), ENOTDIR);
  ERR("symlink/loop-through-dir-eloop",
      (symlink("s_dl2/x", "s_dl1"), symlink("s_dl1/x", "s_dl2"), stat("s_dl1", &(struct stat){0})), ELOOP);
  CHECK("symlink/through-dir-component") {
    SYS(mkdir("s_dir", 0755));
    SYS(put("s_dir/in", "inside", 0644));
    SYS(symlink("s_dir", "s_dirl"));
    WANT_TRUE("read via dir link", content_is("s_dirl/in", "inside"));
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* chmod / chown */

static void t_attr(void) {
  int fd = -1;
  CHECK("chmod/file") {
    SYS(put("c_f", "x", 0644));
    SYS(chmod("c_f", 0751));
    WANT_MODE("mode", st_of("c_f").st_mode & 07777, 0751);
  }
  CHECK("chmod/all-bits-as-root") {
    SYS(chmod("c_f", 07777));
    WANT_MODE("mode", st_of("c_f").st_mode & 07777, 07777);
    SYS(chmod("c_f", 0));
    WANT_MODE("mode", st_of("c_f").st_mode & 07777, 0);
  }
  CHECK("chmod/fchmod") {
    SYS(fd = open("c_f", O_RDONLY));
    SYS(fchmod(fd, 0604));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_MODE("fstat mode", st.st_mode & 07777, 0604);
    close(fd);
    WANT_MODE("stat mode", st_of("c_f").st_mode & 07777, 0604);
  }
  CHECK("chmod/dir-sticky-setgid") {
    SYS(mkdir("c_d", 0755));
    SYS(chmod("c_d", 03775));
    WANT_MODE("mode", st_of("c_d").st_mode & 07777, 03775);
  }
  CHECK("chmod/follows-symlink") {
    SYS(symlink("c_f", "c_l"));
    SYS(chmod("c_l", 0640));
    WANT_MODE("target mode", st_of("c_f").st_mode & 07777, 0640);
    WANT_TRUE("link still a symlink", S_ISLNK(st_of("c_l").st_mode));
  }
  CHECK("chmod/updates-ctime-not-mtime") {
    struct stat a = st_of("c_f");
    tick();
    SYS(chmod("c_f", 0644));
    struct stat b = st_of("c_f");
    WANT_TRUE("ctime moved", ns(b.st_ctim) > ns(a.st_ctim));
    WANT_EQ("mtime (ns) unchanged", ns(b.st_mtim), ns(a.st_mtim));
  }
  ERR("chmod/missing-enoent", chmod("c_missing", 0644), ENOENT);
  ERR("chmod/component-not-dir-enotdir", chmod("c_f/x", 0644), ENOTDIR);
  CHECK("chown/file") {
    SYS(chown("c_f", 1234, 5678));
    struct stat st = st_of("c_f");
    WANT_EQ("st_uid", st.st_uid, 1234);
    WANT_EQ("st_gid", st.st_gid, 5678);
  }
  CHECK("chown/minus-one-keeps") {
    SYS(chown("c_f", -1, 4321));
    struct stat st = st_of("c_f");
    WANT_EQ("st_uid kept", st.st_uid, 1234);
    WANT_EQ("st_gid", st.st_gid, 4321);
    SYS(chown("c_f", 999, -1));
    st = st_of("c_f");
    WANT_EQ("st_uid", st.st_uid, 999);
    WANT_EQ("st_gid kept", st.st_gid, 4321);
  }
  CHECK("chown/fchown") {
    SYS(fd = open("c_f", O_RDONLY));
    SYS(fchown(fd, 77, 88));
    close(fd);
    struct stat st = st_of("c_f");
    WANT_EQ("st_uid", st.st_uid, 77);
    WANT_EQ("st_gid", st.st_gid, 88);
  }
  CHECK("chown/lchown-changes-link-not-target") {
    struct stat t0 = st_of("c_f");
    SYS(lchown("c_l", 55, 66));
    struct stat l = st_of("c_l"), t = st_of("c_f");
    WANT_EQ("link st_uid", l.st_uid, 55);
    WANT_EQ("link st_gid", l.st_gid, 66);
    WANT_EQ("target st_uid", t.st_uid, t0.st_uid);
  }
  CHECK("chown/updates-ctime") {
    struct stat a = st_of("c_f");
    tick();
    SYS(chown("c_f", 0, 0));
    WANT_TRUE("ctime moved", ns(st_of("c_f").st_ctim) > ns(a.st_ctim));
  }
  CHECK("chown/clears-setuid-setgid") {
    SYS(put("c_s", "s", 0644));
    SYS(chmod("c_s", 06755));
    SYS(chown("c_s", 1, 1));
    WANT_MODE("mode after chown", st_of("c_s").st_mode & 07777, 0755);
  }
  ERR("chown/missing-enoent", chown("c_missing", 0, 0), ENOENT);
}

/* ------------------------------------------------------------------------------------------------ */
/* truncate */

static void t_truncate(void) {
  int fd = -1;
  char buf[8192];
  CHECK("truncate/grow-zero-fills") {
    SYS(put("t_f", "0123456789", 0644));
    SYS(truncate("t_f", 5000));
    WANT_EQ("st_size", st_of("t_f").st_size, 5000);
    memset(buf, 1, sizeof buf);
    WANT_EQ("read", get("t_f", buf, sizeof buf), 5000);
    WANT_TRUE("head", memcmp(buf, "0123456789", 10) == 0);
    WANT_TRUE("tail zeros", all_bytes(buf + 10, 4990, 0));
  }
  CHECK("truncate/shrink") {
    SYS(truncate("t_f", 4));
    WANT_EQ("st_size", st_of("t_f").st_size, 4);
    WANT_TRUE("content", content_is("t_f", "0123"));
  }
  CHECK("truncate/ftruncate-shrink-then-grow-zeroes") {
    SYS(fd = open("t_g", O_RDWR | O_CREAT | O_TRUNC, 0644));
    memset(buf, 'a', 4096);
    WANT_EQ("write", write(fd, buf, 4096), 4096);
    SYS(ftruncate(fd, 100));
    SYS(ftruncate(fd, 4096));
    memset(buf, 1, sizeof buf);
    WANT_EQ("pread", pread(fd, buf, 4096, 0), 4096);
    WANT_TRUE("kept head", all_bytes(buf, 100, 'a'));
    WANT_TRUE("cut-off bytes read as zeros", all_bytes(buf + 100, 3996, 0));
    close(fd);
  }
  CHECK("truncate/ftruncate-to-zero") {
    SYS(fd = open("t_g", O_RDWR));
    SYS(ftruncate(fd, 0));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_EQ("st_size", st.st_size, 0);
    WANT_EQ("read at 0", pread(fd, buf, 10, 0), 0);
    close(fd);
  }
  CHECK("truncate/updates-mtime-ctime") {
    struct stat a = st_of("t_f");
    tick();
    SYS(truncate("t_f", 2));
    struct stat b = st_of("t_f");
    WANT_TRUE("mtime moved", ns(b.st_mtim) > ns(a.st_mtim));
    WANT_TRUE("ctime moved", ns(b.st_ctim) > ns(a.st_ctim));
  }
  ERR("truncate/negative-einval", truncate("t_f", -1), EINVAL);
  ERR("truncate/ftruncate-negative-einval", (fd = open("t_f", O_RDWR), ftruncate(fd, -1)), EINVAL);
  close(fd);
  ERR("truncate/ftruncate-rdonly-einval", (fd = open("t_f", O_RDONLY), ftruncate(fd, 0)), EINVAL);
  close(fd);
  ERR("truncate/dir-eisdir", (mkdir("t_d", 0755), truncate("t_d", 0)), EISDIR);
  ERR("truncate/missing-enoent", truncate("t_missing", 0), ENOENT);
  ERR("truncate/component-not-dir-enotdir", truncate("t_f/x", 0), ENOTDIR);
  CHECK("truncate/follows-symlink") {
    SYS(symlink("t_f", "t_l"));
    SYS(truncate("t_l", 1));
    WANT_EQ("target st_size", st_of("t_f").st_size, 1);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* utimensat */

static void t_times(void) {
  int fd = -1;
  CHECK("utimes/nanoseconds-round-trip") {
    SYS(put("u_t", "t", 0644));
    struct timespec ts[2] = { { 1234567891, 123456789 }, { 987654321, 987654321 } };
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    struct stat st = st_of("u_t");
    WANT_EQ("atime (ns)", ns(st.st_atim), ns(ts[0]));
    WANT_EQ("mtime (ns)", ns(st.st_mtim), ns(ts[1]));
  }
  CHECK("utimes/nanoseconds-after-reopen") {
    int r;
    SYS(fd = open("u_t", O_RDONLY));
    struct stat st;
    SYS(r = fstat(fd, &st));
    close(fd);
    WANT_EQ("mtime (ns) via fstat", ns(st.st_mtim), 987654321LL * 1000000000LL + 987654321);
  }
  CHECK("utimes/before-1970") {
    struct timespec ts[2] = { { -1000, 5 }, { -86400 * 365, 999999999 } };
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    struct stat st = st_of("u_t");
    WANT_EQ("atime (ns)", ns(st.st_atim), ns(ts[0]));
    WANT_EQ("mtime (ns)", ns(st.st_mtim), ns(ts[1]));
  }
  CHECK("utimes/utime_omit-atime") {
    struct timespec set[2] = { { 1000000000, 1 }, { 1000000000, 2 } };
    SYS(utimensat(AT_FDCWD, "u_t", set, 0));
    struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1500000000, 500 } };
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    struct stat st = st_of("u_t");
    WANT_EQ("atime (ns) kept", ns(st.st_atim), ns(set[0]));
    WANT_EQ("mtime (ns)", ns(st.st_mtim), ns(ts[1]));
  }
  CHECK("utimes/utime_omit-both-changes-nothing") {
    struct stat a = st_of("u_t");
    struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } };
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    struct stat b = st_of("u_t");
    WANT_EQ("atime (ns)", ns(b.st_atim), ns(a.st_atim));
    WANT_EQ("mtime (ns)", ns(b.st_mtim), ns(a.st_mtim));
  }
  CHECK("utimes/utime_now-mtime") {
    struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
    time_t t0 = time(NULL);
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    time_t t1 = time(NULL);
    struct stat st = st_of("u_t");
    if (st.st_mtim.tv_sec < t0 - 15 || st.st_mtim.tv_sec > t1 + 15)
      note("mtime expected within 15 s of now (%lld) got %lld", (long long)t0, (long long)st.st_mtim.tv_sec);
    WANT_EQ("atime (ns) kept", ns(st.st_atim), 1000000000LL * 1000000000LL + 1);
  }
  CHECK("utimes/null-times-sets-now") {
    struct timespec set[2] = { { 1000, 0 }, { 1000, 0 } };
    SYS(utimensat(AT_FDCWD, "u_t", set, 0));
    time_t t0 = time(NULL);
    SYS(utimensat(AT_FDCWD, "u_t", NULL, 0));
    struct stat st = st_of("u_t");
    if (st.st_atim.tv_sec < t0 - 15 || st.st_atim.tv_sec > t0 + 15) note("atime not near now: %lld", (long long)st.st_atim.tv_sec);
    if (st.st_mtim.tv_sec < t0 - 15 || st.st_mtim.tv_sec > t0 + 15) note("mtime not near now: %lld", (long long)st.st_mtim.tv_sec);
  }
  CHECK("utimes/updates-ctime") {
    struct stat a = st_of("u_t");
    tick();
    struct timespec ts[2] = { { 5, 0 }, { 6, 0 } };
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    WANT_TRUE("ctime moved", ns(st_of("u_t").st_ctim) > ns(a.st_ctim));
  }
  CHECK("utimes/futimens") {
    SYS(fd = open("u_t", O_RDONLY));
    struct timespec ts[2] = { { 2000000000, 42 }, { 2100000000, 43 } };
    SYS(futimens(fd, ts));
    close(fd);
    struct stat st = st_of("u_t");
    WANT_EQ("atime (ns)", ns(st.st_atim), ns(ts[0]));
    WANT_EQ("mtime (ns)", ns(st.st_mtim), ns(ts[1]));
  }
  CHECK("utimes/symlink-nofollow") {
    SYS(symlink("u_t", "u_l"));
    struct stat t0 = st_of("u_t");
    struct timespec ts[2] = { { 300000000, 7 }, { 400000000, 8 } };
    SYS(utimensat(AT_FDCWD, "u_l", ts, AT_SYMLINK_NOFOLLOW));
    struct stat l = st_of("u_l"), t = st_of("u_t");
    WANT_EQ("link mtime (ns)", ns(l.st_mtim), ns(ts[1]));
    WANT_EQ("target mtime (ns) unchanged", ns(t.st_mtim), ns(t0.st_mtim));
  }
  CHECK("utimes/dir") {
    SYS(mkdir("u_d", 0755));
    struct timespec ts[2] = { { 1600000000, 111 }, { 1600000001, 222 } };
    SYS(utimensat(AT_FDCWD, "u_d", ts, 0));
    WANT_EQ("dir mtime (ns)", ns(st_of("u_d").st_mtim), ns(ts[1]));
  }
  CHECK("utimes/write-updates-mtime") {
    struct timespec ts[2] = { { 1000, 0 }, { 1000, 0 } };
    SYS(utimensat(AT_FDCWD, "u_t", ts, 0));
    SYS(fd = open("u_t", O_WRONLY));
    WANT_EQ("write", write(fd, "w", 1), 1);
    close(fd);
    WANT_TRUE("mtime moved from 1000", st_of("u_t").st_mtim.tv_sec > 1000);
  }
  ERR("utimes/missing-enoent", utimensat(AT_FDCWD, "u_missing", NULL, 0), ENOENT);
  ERR("utimes/bad-nsec-einval",
      utimensat(AT_FDCWD, "u_t", ((struct timespec[2]){ { 0, 1000000000 }, { 0, 0 } }), 0), EINVAL);
}

/* ------------------------------------------------------------------------------------------------ */
/* stat fields, sparse and large files, I/O at offsets */

static void t_io(void) {
  int fd = -1;
  char buf[65536], big[65536];
  CHECK("stat/fields-of-new-file") {
    SYS(put("i_f", "hello", 0644));
    struct stat st = st_of("i_f"), st2;
    SYS(stat("i_f", &st2));
    WANT_EQ("st_size", st.st_size, 5);
    WANT_EQ("stable st_ino", st2.st_ino, st.st_ino);
    WANT_EQ("same st_dev as dir", st.st_dev, st_of(".").st_dev);
    WANT_TRUE("st_blksize > 0", st.st_blksize > 0);
    WANT_TRUE("st_blocks > 0 for data", st.st_blocks > 0);
  }
  CHECK("stat/fstat-matches-stat") {
    struct stat a, b;
    SYS(fd = open("i_f", O_RDONLY));
    SYS(fstat(fd, &a));
    SYS(stat("i_f", &b));
    close(fd);
    WANT_EQ("st_ino", a.st_ino, b.st_ino);
    WANT_EQ("st_size", a.st_size, b.st_size);
    WANT_MODE("st_mode", a.st_mode, b.st_mode);
    WANT_EQ("mtime (ns)", ns(a.st_mtim), ns(b.st_mtim));
  }
  CHECK("stat/distinct-files-distinct-inodes") {
    SYS(put("i_g", "x", 0644));
    WANT_TRUE("st_ino differs", st_of("i_f").st_ino != st_of("i_g").st_ino);
  }
  CHECK("io/pwrite-pread-offsets-keep-file-offset") {
    SYS(fd = open("i_p", O_RDWR | O_CREAT | O_TRUNC, 0644));
    WANT_EQ("write", write(fd, "abc", 3), 3);
    WANT_EQ("pwrite at 100", pwrite(fd, "XYZ", 3, 100), 3);
    WANT_EQ("offset unchanged", lseek(fd, 0, SEEK_CUR), 3);
    memset(buf, 1, 200);
    WANT_EQ("pread 103 bytes", pread(fd, buf, 200, 0), 103);
    WANT_TRUE("head", memcmp(buf, "abc", 3) == 0);
    WANT_TRUE("gap zeros", all_bytes(buf + 3, 97, 0));
    WANT_TRUE("tail", memcmp(buf + 100, "XYZ", 3) == 0);
    WANT_EQ("offset still unchanged", lseek(fd, 0, SEEK_CUR), 3);
    WANT_EQ("pread at EOF", pread(fd, buf, 10, 103), 0);
    WANT_EQ("pread past EOF", pread(fd, buf, 10, 5000), 0);
    close(fd);
  }
  CHECK("io/lseek-whence") {
    SYS(fd = open("i_p", O_RDONLY));
    WANT_EQ("SEEK_END", lseek(fd, 0, SEEK_END), 103);
    WANT_EQ("SEEK_SET", lseek(fd, 10, SEEK_SET), 10);
    WANT_EQ("SEEK_CUR", lseek(fd, 5, SEEK_CUR), 15);
    WANT_EQ("SEEK_END -3", lseek(fd, -3, SEEK_END), 100);
    WANT_EQ("read", read(fd, buf, 10), 3);
    WANT_EQ("read at EOF", read(fd, buf, 10), 0);
    WANT_EQ("seek past EOF allowed", lseek(fd, 1000, SEEK_SET), 1000);
    close(fd);
  }
  ERR("io/lseek-bad-whence-einval", (fd = open("i_p", O_RDONLY), lseek(fd, 0, 12345)), EINVAL);
  ERR("io/lseek-negative-result-einval", lseek(fd, -1, SEEK_SET), EINVAL);
  close(fd);
  CHECK("io/big-write-read-back") {
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7 + (i >> 9));
    SYS(fd = open("i_big", O_RDWR | O_CREAT | O_TRUNC, 0644));
    for (int k = 0; k < 16; k++) WANT_EQ("write 64 KiB", write(fd, big, sizeof big), (long)sizeof big);
    WANT_EQ("st_size", lseek(fd, 0, SEEK_END), 16 * (long)sizeof big);
    int same = 1;
    for (int k = 0; k < 16; k++) {
      if (pread(fd, buf, sizeof buf, (off_t)k * sizeof big) != (ssize_t)sizeof buf || memcmp(buf, big, sizeof buf)) same = 0;
    }
    WANT_TRUE("1 MiB read back identical", same);
    WANT_EQ("unaligned pread", pread(fd, buf, 1000, 65536 + 4001), 1000);
    WANT_TRUE("unaligned bytes", memcmp(buf, big + 4001, 1000) == 0);
    close(fd);
  }
  CHECK("io/write-read-same-fd") {
    SYS(fd = open("i_rw", O_RDWR | O_CREAT | O_TRUNC, 0644));
    WANT_EQ("write", write(fd, "0123456789", 10), 10);
    SYS(lseek(fd, 2, SEEK_SET));
    WANT_EQ("overwrite", write(fd, "ab", 2), 2);
    SYS(lseek(fd, 0, SEEK_SET));
    memset(buf, 0, 20);
    WANT_EQ("read", read(fd, buf, 20), 10);
    WANT_TRUE("bytes", memcmp(buf, "01ab456789", 10) == 0);
    close(fd);
  }
  CHECK("io/copy_file_range") {
    int in = -1, out = -1;
    SYS(in = open("i_big", O_RDONLY));
    SYS(out = open("i_copy", O_RDWR | O_CREAT | O_TRUNC, 0644));
    loff_t ioff = 1000, ooff = 50;
    ssize_t done = 0, n;
    while (done < 100000 && (n = copy_file_range(in, &ioff, out, &ooff, 100000 - done, 0)) > 0) done += n;
    WANT_EQ("bytes copied", done, 100000);
    WANT_EQ("in offset advanced", ioff, 101000);
    static char a[100000], b[100000];
    WANT_EQ("pread source", pread(in, a, sizeof a, 1000), (long)sizeof a);
    WANT_EQ("pread copy", pread(out, b, sizeof b, 50), (long)sizeof b);
    WANT_TRUE("same bytes", memcmp(a, b, sizeof a) == 0);
    WANT_EQ("copy st_size", lseek(out, 0, SEEK_END), 100050);
    close(in);
    close(out);
  }
  CHECK("io/fallocate-and-punch-hole") {
    SYS(fd = open("i_fa", O_RDWR | O_CREAT | O_TRUNC, 0644));
    errno = 0;
    if (fallocate(fd, 0, 0, 1 << 20) == -1 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
      skip("fallocate unsupported (%s)", ename(errno));
    } else {
      struct stat st;
      SYS(fstat(fd, &st));
      WANT_EQ("st_size after fallocate", st.st_size, 1 << 20);
      WANT_TRUE("st_blocks cover 1 MiB", st.st_blocks * 512LL >= (1 << 20));
      memset(buf, 'p', sizeof buf);
      WANT_EQ("pwrite", pwrite(fd, buf, sizeof buf, 0), (long)sizeof buf);
      errno = 0;
      if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192) == -1) {
        if (errno == EOPNOTSUPP) skip("FALLOC_FL_PUNCH_HOLE unsupported");
        else note("fallocate(PUNCH_HOLE) expected success got %s", ename(errno));
      } else {
        memset(buf, 1, sizeof buf);
        WANT_EQ("pread", pread(fd, buf, sizeof buf, 0), (long)sizeof buf);
        WANT_TRUE("before the hole", all_bytes(buf, 4096, 'p'));
        WANT_TRUE("hole reads zeros", all_bytes(buf + 4096, 8192, 0));
        WANT_TRUE("after the hole", all_bytes(buf + 12288, sizeof buf - 12288, 'p'));
        SYS(fstat(fd, &st));
        WANT_EQ("st_size kept", st.st_size, 1 << 20);
      }
      WANT_ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), EOPNOTSUPP);
    }
    close(fd);
    SYS(unlink("i_fa"));
  }
  CHECK("sparse/write-past-1GiB-size-and-blocks") {
    off_t off = GiB + 12345;
    SYS(fd = open("i_sparse", O_RDWR | O_CREAT | O_TRUNC, 0644));
    WANT_EQ("pwrite at 1 GiB + 12345", pwrite(fd, "end", 3, off), 3);
    SYS(fsync(fd));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_EQ("st_size", st.st_size, off + 3);
    if ((long long)st.st_blocks * 512 > 1024 * 1024)
      note("st_blocks expected at most 2048 (1 MiB) for a sparse file got %lld", (long long)st.st_blocks);
    memset(buf, 1, 4096);
    WANT_EQ("pread in hole", pread(fd, buf, 4096, GiB / 2), 4096);
    WANT_TRUE("hole reads zeros", all_bytes(buf, 4096, 0));
    WANT_EQ("pread at data", pread(fd, buf, 10, off), 3);
    WANT_TRUE("data", memcmp(buf, "end", 3) == 0);
    close(fd);
  }
  CHECK("sparse/seek-data-seek-hole") {
    off_t off = GiB + 12345;
    SYS(fd = open("i_sparse", O_RDONLY));
    errno = 0;
    off_t hole = lseek(fd, 0, SEEK_HOLE);
    if (hole == -1 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      skip("SEEK_HOLE unsupported (%s)", ename(errno));
    } else if (hole == off + 3) {
      skip("the filesystem reports no holes (SEEK_HOLE at 0 is EOF)");
    } else {
      WANT_EQ("SEEK_HOLE from 0", hole, 0);
      off_t data = lseek(fd, 0, SEEK_DATA);
      if (data > off || data < off - 1024 * 1024) note("SEEK_DATA from 0 expected within 1 MiB below %lld got %lld", (long long)off, (long long)data);
      WANT_EQ("SEEK_HOLE from the data", lseek(fd, off, SEEK_HOLE), off + 3);
    }
    close(fd);
  }
  CHECK("sparse/seek-data-past-eof-enxio") {
    SYS(fd = open("i_sparse", O_RDONLY));
    WANT_ERR(lseek(fd, GiB * 2, SEEK_DATA), ENXIO);
    WANT_ERR(lseek(fd, GiB * 2, SEEK_HOLE), ENXIO);
    close(fd);
  }
  CHECK("large/write-read-past-4GiB") {
    off_t off = 5 * GiB + 3;
    SYS(fd = open("i_large", O_RDWR | O_CREAT | O_TRUNC, 0644));
    WANT_EQ("pwrite at 5 GiB + 3", pwrite(fd, "large", 5, off), 5);
    WANT_EQ("pwrite across 4 GiB", pwrite(fd, "ACROSS", 6, 4 * GiB - 3), 6);
    close(fd);
    SYS(fd = open("i_large", O_RDONLY));
    struct stat st;
    SYS(fstat(fd, &st));
    WANT_EQ("st_size", st.st_size, off + 5);
    memset(buf, 0, 16);
    WANT_EQ("pread at 5 GiB + 3", pread(fd, buf, 16, off), 5);
    WANT_TRUE("bytes at 5 GiB", memcmp(buf, "large", 5) == 0);
    WANT_EQ("pread across 4 GiB", pread(fd, buf, 6, 4 * GiB - 3), 6);
    WANT_TRUE("bytes across 4 GiB", memcmp(buf, "ACROSS", 6) == 0);
    WANT_EQ("lseek to 6 GiB", lseek(fd, 6 * GiB, SEEK_SET), 6 * GiB);
    WANT_EQ("SEEK_END", lseek(fd, 0, SEEK_END), off + 5);
    close(fd);
  }
  CHECK("large/truncate-past-4GiB") {
    SYS(truncate("i_large", 4 * GiB + 1));
    WANT_EQ("st_size", st_of("i_large").st_size, 4 * GiB + 1);
    SYS(fd = open("i_large", O_RDONLY));
    memset(buf, 0, 8);
    WANT_EQ("pread last 4 bytes", pread(fd, buf, 8, 4 * GiB - 3), 4);
    WANT_TRUE("bytes", memcmp(buf, "ACRO", 4) == 0);
    close(fd);
    SYS(unlink("i_large"));
  }
  SYS(unlink("i_sparse"));
}

/* ------------------------------------------------------------------------------------------------ */
/* names: any byte but '/' and NUL */

static int seen_in_dir(const char *dir, const char *name, unsigned char *type, ino_t *ino);

static void name_round_trip(const char *name) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "nm/%s", name);
  SYS(put(path, "named", 0644));
  WANT_TRUE("content through the name", content_is(path, "named"));
  WANT_EQ("readdir entries with exactly these bytes", seen_in_dir("nm", name, NULL, NULL), 1);
  char to[PATH_MAX];
  snprintf(to, sizeof to, "nm/%s.renamed", name);
  SYS(rename(path, to));
  SYS(unlink(to));
  WANT_EQ("entries after unlink", seen_in_dir("nm", name, NULL, NULL), 0);
}

static void t_names(void) {
  SYS(mkdir("nm", 0755));
  CHECK("names/utf8-spaces-newline-dash") {
    name_round_trip(" -lead dash\nnew line\ttab caf\xc3\xa9 \xe2\x98\x83 ");
  }
  CHECK("names/non-utf8-bytes") {
    name_round_trip("latin1-\xe9-\xff\xfe-\x80");
  }
  CHECK("names/symlink-target-any-bytes") {
    const char *t = "\x01\xff\n target \xe9";
    char buf[64] = { 0 };
    SYS(symlink(t, "nm/l"));
    WANT_EQ("readlink length", readlink("nm/l", buf, sizeof buf), (long)strlen(t));
    WANT_TRUE("readlink bytes", memcmp(buf, t, strlen(t)) == 0);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* EBADF */

static void t_ebadf(void) {
  int fd = -1;
  char buf[16];
  SYS(put("b_f", "bad", 0644));
  ERR("ebadf/read-on-wronly", (fd = open("b_f", O_WRONLY), read(fd, buf, 1)), EBADF);
  close(fd);
  ERR("ebadf/write-on-rdonly", (fd = open("b_f", O_RDONLY), write(fd, "x", 1)), EBADF);
  close(fd);
  ERR("ebadf/pwrite-on-rdonly", (fd = open("b_f", O_RDONLY), pwrite(fd, "x", 1, 0)), EBADF);
  close(fd);
  ERR("ebadf/fstat-on-closed", (fd = open("b_f", O_RDONLY), close(fd), fstat(fd, &(struct stat){0})), EBADF);
  ERR("ebadf/close-closed", close(fd), EBADF);
  ERR("ebadf/fchmod-on-closed", fchmod(fd, 0644), EBADF);
  ERR("ebadf/ftruncate-on-closed", ftruncate(fd, 0), EBADF);
  ERR("ebadf/read-on-closed", read(fd, buf, 1), EBADF);
  ERR("ebadf/openat-closed-dirfd", openat(fd, "b_f", O_RDONLY), EBADF);
  ERR("ebadf/fchdir-on-file-enotdir", (fd = open("b_f", O_RDONLY), fchdir(fd)), ENOTDIR);
  close(fd);
  ERR("ebadf/openat-file-dirfd-enotdir", (fd = open("b_f", O_RDONLY), openat(fd, "x", O_RDONLY)), ENOTDIR);
  close(fd);
  ERR("ebadf/read-dir-eisdir", (fd = open(".", O_RDONLY), read(fd, buf, 1)), EISDIR);
  close(fd);
}

/* ------------------------------------------------------------------------------------------------ */
/* readdir */

static int seen_in_dir(const char *dir, const char *name, unsigned char *type, ino_t *ino) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, name) == 0) {
      n++;
      if (type) *type = e->d_type;
      if (ino) *ino = e->d_ino;
    }
  }
  closedir(d);
  return n;
}

static void t_readdir(void) {
  enum { N = 120 }; /* long names: several FUSE readdir pages even so */
  char name[300];
  CHECK("readdir/empty-dir-dot-dotdot") {
    SYS(mkdir("rd_e", 0755));
    DIR *d = opendir("rd_e");
    int n = 0, dot = 0, dotdot = 0;
    if (!d) note("opendir expected success got %s", ename(errno));
    else {
      struct dirent *e;
      while ((e = readdir(d))) {
        n++;
        if (!strcmp(e->d_name, ".")) dot++;
        if (!strcmp(e->d_name, "..")) dotdot++;
      }
      closedir(d);
    }
    WANT_EQ("entries", n, 2);
    WANT_EQ("'.' entries", dot, 1);
    WANT_EQ("'..' entries", dotdot, 1);
  }
  CHECK("readdir/sees-all-created-once") {
    SYS(mkdir("rd", 0755));
    for (int i = 0; i < N; i++) {
      snprintf(name, sizeof name, "rd/%03d-%.200s", i, name_of_len(200, 'e'));
      SYS(put(name, "", 0644));
    }
    static unsigned char count[N];
    memset(count, 0, sizeof count);
    int other = 0;
    DIR *d = opendir("rd");
    if (!d) note("opendir expected success got %s", ename(errno));
    else {
      struct dirent *e;
      while ((e = readdir(d))) {
        int i;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (sscanf(e->d_name, "%3d-", &i) == 1 && i >= 0 && i < N) count[i]++;
        else other++;
      }
      closedir(d);
    }
    int missing = 0, dup = 0;
    for (int i = 0; i < N; i++) {
      if (count[i] == 0) missing++;
      if (count[i] > 1) dup++;
    }
    WANT_EQ("entries missing", missing, 0);
    WANT_EQ("entries seen twice", dup, 0);
    WANT_EQ("unexpected entries", other, 0);
  }
  CHECK("readdir/deleted-not-seen") {
    for (int i = 0; i < N; i += 3) {
      snprintf(name, sizeof name, "rd/%03d-%.200s", i, name_of_len(200, 'e'));
      SYS(unlink(name));
    }
    DIR *d = opendir("rd");
    int n = 0, deleted = 0;
    if (!d) note("opendir expected success got %s", ename(errno));
    else {
      struct dirent *e;
      while ((e = readdir(d))) {
        int i;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (sscanf(e->d_name, "%3d-", &i) == 1 && i % 3 == 0) deleted++;
      }
      closedir(d);
    }
    WANT_EQ("deleted entries seen", deleted, 0);
    WANT_EQ("entries", n, N - (N + 2) / 3);
  }
  CHECK("readdir/telldir-seekdir-resume") {
    DIR *d = opendir("rd");
    if (!d) note("opendir expected success got %s", ename(errno));
    else {
      struct dirent *e;
      for (int i = 0; i < 40 && readdir(d); i++) {
      }
      long pos = telldir(d);
      char after[5][256];
      int n = 0;
      while (n < 5 && (e = readdir(d))) snprintf(after[n++], sizeof after[0], "%s", e->d_name);
      for (int i = 0; i < 30 && readdir(d); i++) {
      }
      seekdir(d, pos);
      int same = 0;
      for (int i = 0; i < n && (e = readdir(d)); i++)
        if (!strcmp(after[i], e->d_name)) same++;
      closedir(d);
      WANT_EQ("entries read after seekdir(telldir()) that match", same, 5);
    }
  }
  CHECK("readdir/rewinddir-sees-new-entry") {
    DIR *d = opendir("rd");
    if (!d) note("opendir expected success got %s", ename(errno));
    else {
      while (readdir(d)) {
      }
      SYS(put("rd/late", "", 0644));
      rewinddir(d);
      int found = 0;
      struct dirent *e;
      while ((e = readdir(d)))
        if (!strcmp(e->d_name, "late")) found++;
      closedir(d);
      WANT_EQ("'late' seen after rewinddir", found, 1);
    }
  }
  CHECK("readdir/d_type-and-d_ino") {
    unsigned char t = 0;
    ino_t ino = 0;
    SYS(mkdir("rd_t", 0755));
    SYS(put("rd_t/f", "", 0644));
    SYS(mkdir("rd_t/d", 0755));
    SYS(symlink("f", "rd_t/l"));
    SYS(mkfifo("rd_t/p", 0644));
    struct { const char *name; unsigned char type; } want[] = { { "f", DT_REG }, { "d", DT_DIR }, { "l", DT_LNK }, { "p", DT_FIFO } };
    for (int i = 0; i < 4; i++) {
      char p[64];
      snprintf(p, sizeof p, "rd_t/%s", want[i].name);
      if (seen_in_dir("rd_t", want[i].name, &t, &ino) != 1) note("%s expected once in readdir", p);
      else if (t != DT_UNKNOWN && t != want[i].type) note("d_type of %s expected %d got %d", p, want[i].type, t);
      else WANT_EQ("d_ino equals st_ino", ino, st_of(p).st_ino);
    }
  }
  CHECK("readdir/renamed-entry") {
    SYS(rename("rd_t/f", "rd_t/f2"));
    WANT_EQ("old name entries", seen_in_dir("rd_t", "f", NULL, NULL), 0);
    WANT_EQ("new name entries", seen_in_dir("rd_t", "f2", NULL, NULL), 1);
  }
  ERR("readdir/opendir-file-enotdir", (long)(opendir("rd_t/f2") ? 0 : -1), ENOTDIR);
  ERR("readdir/opendir-missing-enoent", (long)(opendir("rd_missing") ? 0 : -1), ENOENT);
}

/* ------------------------------------------------------------------------------------------------ */
/* fifos and special files */

static void t_special(void) {
  umask(022);
  CHECK("fifo/mkfifo") {
    SYS(mkfifo("f_p", 0666));
    struct stat st = st_of("f_p");
    WANT_TRUE("S_ISFIFO", S_ISFIFO(st.st_mode));
    WANT_MODE("mode", st.st_mode & 07777, 0644);
  }
  ERR("fifo/mkfifo-existing-eexist", mkfifo("f_p", 0644), EEXIST);
  CHECK("fifo/mknod-s_ififo") {
    SYS(mknod("f_p2", S_IFIFO | 0600, 0));
    struct stat st = st_of("f_p2");
    WANT_TRUE("S_ISFIFO", S_ISFIFO(st.st_mode));
    WANT_MODE("mode", st.st_mode & 07777, 0600);
  }
  CHECK("fifo/data-through-fifo") {
    int fd = -1;
    char buf[16] = { 0 };
    SYS(fd = open("f_p", O_RDWR | O_NONBLOCK));
    WANT_EQ("write", write(fd, "pipe", 4), 4);
    WANT_EQ("read", read(fd, buf, sizeof buf), 4);
    WANT_TRUE("bytes", memcmp(buf, "pipe", 4) == 0);
    close(fd);
    WANT_EQ("st_size stays 0", st_of("f_p").st_size, 0);
  }
  CHECK("mknod/s_ifreg") {
    SYS(mknod("f_reg", S_IFREG | 0640, 0));
    struct stat st = st_of("f_reg");
    WANT_TRUE("S_ISREG", S_ISREG(st.st_mode));
    WANT_MODE("mode", st.st_mode & 07777, 0640);
  }
  CHECK("mknod/s_ifsock") {
    SYS(mknod("f_sock", S_IFSOCK | 0600, 0));
    WANT_TRUE("S_ISSOCK", S_ISSOCK(st_of("f_sock").st_mode));
  }
  CHECK("mknod/s_ifchr-as-root") {
    SYS(mknod("f_chr", S_IFCHR | 0600, makedev(1, 3)));
    struct stat st = st_of("f_chr");
    WANT_TRUE("S_ISCHR", S_ISCHR(st.st_mode));
    WANT_EQ("st_rdev", st.st_rdev, makedev(1, 3));
  }
  CHECK("perm/root-bypasses-mode-0-dir") {
    SYS(mkdir("f_zero", 0));
    SYS(put("f_zero/f", "root writes anyway", 0644));
    WANT_TRUE("content", content_is("f_zero/f", "root writes anyway"));
  }
  CHECK("access/root") {
    SYS(put("f_acc", "a", 0644));
    SYS(access("f_acc", F_OK | R_OK | W_OK));
    WANT_ERR(access("f_acc", X_OK), EACCES);
    SYS(chmod("f_acc", 0100));
    SYS(access("f_acc", X_OK | R_OK | W_OK));
    WANT_ERR(access("f_missing", F_OK), ENOENT);
  }
  ERR("mknod/existing-eexist", mknod("f_reg", S_IFIFO | 0600, 0), EEXIST);
  ERR("mknod/missing-dir-enoent", mknod("f_missing/p", S_IFIFO | 0600, 0), ENOENT);
}

/* Opens `path` for writing, writes one byte and closes it; then its permission bits must be `mode`. */
static void want_mode_after_write(const char *path, unsigned mode) {
  int fd;
  SYS(fd = open(path, O_WRONLY));
  WANT_EQ("write", write(fd, "w", 1), 1);
  close(fd);
  WANT_MODE("mode", st_of(path).st_mode & 07777, mode);
}

/* In the setgid directory `dir` (group 4242): a new file gets the directory's group. */
static void want_sgid_file(const char *dir) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/f", dir);
  SYS(put(p, "g", 0644));
  WANT_EQ("st_gid", st_of(p).st_gid, 4242);
}

/* In the setgid directory `dir` (group 4242): a new subdirectory gets the group and keeps S_ISGID. */
static void want_sgid_subdir(const char *dir) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/sub", dir);
  SYS(mkdir(p, 0755));
  struct stat st = st_of(p);
  WANT_EQ("st_gid", st.st_gid, 4242);
  WANT_TRUE("S_ISGID set", (st.st_mode & S_ISGID) != 0);
}

/* ------------------------------------------------------------------------------------------------ */
/* setgid directories and setuid/setgid clearing (as root; the non-root half is in t_nonroot) */

static void t_setgid(void) {
  CHECK("sgid/dir-setup") {
    SYS(mkdir("g_dir", 0755));
    SYS(chown("g_dir", 0, 4242));
    SYS(chmod("g_dir", 02777));
    WANT_MODE("mode", st_of("g_dir").st_mode & 07777, 02777);
  }
  CHECK("sgid/new-file-gets-dir-gid") want_sgid_file("g_dir");
  CHECK("sgid/new-subdir-gets-gid-and-keeps-setgid") want_sgid_subdir("g_dir");
  CHECK("sgid/inherited-two-levels") {
    SYS(put("g_dir/sub/f", "g", 0644));
    WANT_EQ("st_gid", st_of("g_dir/sub/f").st_gid, 4242);
  }
  CHECK("sgid/symlink-and-fifo-get-dir-gid") {
    SYS(symlink("f", "g_dir/l"));
    SYS(mkfifo("g_dir/p", 0644));
    WANT_EQ("symlink st_gid", st_of("g_dir/l").st_gid, 4242);
    WANT_EQ("fifo st_gid", st_of("g_dir/p").st_gid, 4242);
  }
  CHECK("sgid/plain-dir-uses-creator-gid") {
    SYS(mkdir("g_plain", 0777));
    SYS(chown("g_plain", 0, 4242));
    SYS(put("g_plain/f", "x", 0644));
    WANT_EQ("st_gid", st_of("g_plain/f").st_gid, getegid());
  }
  CHECK("suid/root-write-keeps-bits") {
    SYS(put("g_suid_root", "x", 0644));
    SYS(chmod("g_suid_root", 06755));
    /* Linux keeps the bits when a process with CAP_FSETID writes. */
    want_mode_after_write("g_suid_root", 06755);
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* locks: fcntl (POSIX) and flock between two processes, blocking waits and their interruption */

/*
 * A child that opens `path` itself, takes `how` (a fcntl F_WRLCK over [0, 100) or a flock LOCK_EX), says so on
 * the pipe, then keeps the lock until the parent writes to `hold`, or for `hold_ms` when `hold` is -1. Returns
 * its pid once the lock is taken, or -1.
 */
enum lock_kind { LOCK_FCNTL, LOCK_FLOCK };
static pid_t lock_holder(const char *path, enum lock_kind how, int hold, int hold_ms) {
  int ready[2];
  if (pipe(ready) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(ready[0]);
    int fd = open(path, O_RDWR);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };
    int r = fd < 0 ? -1 : how == LOCK_FCNTL ? fcntl(fd, F_SETLK, &fl) : flock(fd, LOCK_EX | LOCK_NB);
    char ok = r == 0 ? 'y' : 'n';
    if (write(ready[1], &ok, 1) != 1) _exit(2);
    if (r != 0) _exit(1);
    if (hold >= 0) {
      char c;
      if (read(hold, &c, 1) < 0) _exit(2);
    } else {
      usleep((useconds_t)hold_ms * 1000);
    }
    _exit(0); /* exit closes fd: the lock goes */
  }
  close(ready[1]);
  char ok = 'n';
  if (read(ready[0], &ok, 1) != 1) ok = 'n';
  close(ready[0]);
  if (ok != 'y') {
    waitpid(pid, NULL, 0);
    return -1;
  }
  return pid;
}

static void on_alarm(int sig) { (void)sig; }

/* SIGALRM after ms milliseconds (0: cancel). */
static void arm_alarm_ms(int ms) {
  struct itimerval it = { .it_value = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 } };
  setitimer(ITIMER_REAL, &it, NULL);
}

/* Lets a lock_holder that waits on `hold` go (it exits, dropping its lock), reaps it, closes the pipe. */
static void release_holder(pid_t h, int hold[2]) {
  if (write(hold[1], "x", 1) != 1) note("cannot release the holder");
  waitpid(h, NULL, 0);
  close(hold[0]);
  close(hold[1]);
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return ns(t) / 1000000;
}

static void t_lock(void) {
  SYS(put("k_f", "lock me", 0644));
  int fd = open("k_f", O_RDWR);
  struct flock wr = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };
  /* No SA_RESTART: a blocked F_SETLKW/flock returns EINTR when the alarm fires. */
  struct sigaction sa = { .sa_handler = on_alarm };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);

  CHECK("lock/fcntl-conflict-eagain") {
    int hold[2];
    SYS(pipe(hold));
    pid_t h = lock_holder("k_f", LOCK_FCNTL, hold[0], 0);
    if (h < 0) note("the holder could not lock");
    else {
      WANT_ERR2(fcntl(fd, F_SETLK, &wr), EAGAIN, EACCES);
      struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10 };
      SYS(fcntl(fd, F_GETLK, &q));
      WANT_EQ("F_GETLK l_type", q.l_type, F_WRLCK);
      WANT_EQ("F_GETLK l_start", q.l_start, 0);
      WANT_EQ("F_GETLK l_len", q.l_len, 100);
      release_holder(h, hold);
    }
  }
  CHECK("lock/fcntl-setlkw-waits-for-the-holder") {
    long long t0 = now_ms();
    pid_t h = lock_holder("k_f", LOCK_FCNTL, -1, 250);
    if (h < 0) note("the holder could not lock");
    else {
      SYS(fcntl(fd, F_SETLKW, &wr));
      WANT_TRUE("waited until the holder exited", now_ms() - t0 >= 250);
      struct flock un = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };
      SYS(fcntl(fd, F_SETLK, &un));
      waitpid(h, NULL, 0);
    }
  }
  /* The holders of the two interruption checks let go by themselves after 1.5 s: where a signal cannot end the
   * wait, the check fails (the lock arrives instead of EINTR) rather than hanging. */
  const char *no_eintr = getenv("POSIX_CHECK_SKIP_LOCK_EINTR");
  CHECK("lock/fcntl-setlkw-interrupted-eintr") {
    pid_t h = no_eintr ? 0 : lock_holder("k_f", LOCK_FCNTL, -1, 1500);
    if (no_eintr) skip("%s", no_eintr);
    else if (h < 0) note("the holder could not lock");
    else {
      arm_alarm_ms(200);
      WANT_ERR(fcntl(fd, F_SETLKW, &wr), EINTR);
      arm_alarm_ms(0);
      kill(h, SIGKILL); /* its lock goes with it */
      waitpid(h, NULL, 0);
      struct flock un = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100 };
      SYS(fcntl(fd, F_SETLK, &un));
    }
  }
  CHECK("lock/flock-conflict-ewouldblock") {
    int hold[2];
    SYS(pipe(hold));
    pid_t h = lock_holder("k_f", LOCK_FLOCK, hold[0], 0);
    if (h < 0) note("the holder could not flock");
    else {
      WANT_ERR(flock(fd, LOCK_EX | LOCK_NB), EWOULDBLOCK);
      release_holder(h, hold);
    }
  }
  CHECK("lock/flock-blocking-waits-for-the-holder") {
    long long t0 = now_ms();
    pid_t h = lock_holder("k_f", LOCK_FLOCK, -1, 250);
    if (h < 0) note("the holder could not flock");
    else {
      SYS(flock(fd, LOCK_EX));
      WANT_TRUE("waited until the holder exited", now_ms() - t0 >= 250);
      SYS(flock(fd, LOCK_UN));
      waitpid(h, NULL, 0);
    }
  }
  CHECK("lock/flock-blocking-interrupted-eintr") {
    pid_t h = no_eintr ? 0 : lock_holder("k_f", LOCK_FLOCK, -1, 1500);
    if (no_eintr) skip("%s", no_eintr);
    else if (h < 0) note("the holder could not flock");
    else {
      arm_alarm_ms(200);
      WANT_ERR(flock(fd, LOCK_EX), EINTR);
      arm_alarm_ms(0);
      kill(h, SIGKILL); /* its lock goes with it */
      waitpid(h, NULL, 0);
      SYS(flock(fd, LOCK_UN));
    }
  }
  close(fd);
}

/* ------------------------------------------------------------------------------------------------ */
/* Non-root: a forked child with uid/gid 65534 and no supplementary groups */

static void nonroot_setup(void) {
  /* root-owned objects the child will try */
  SYS(put("n_secret", "secret", 0600));
  SYS(put("n_ro", "readonly", 0644));
  SYS(put("n_rw", "anyone", 0644));
  SYS(chmod("n_rw", 0666));
  SYS(mkdir("n_rootdir", 0755));
  SYS(put("n_rootdir/f", "root's", 0644));
  SYS(mkdir("n_rootdir/sub", 0755));
  SYS(mkdir("n_private", 0700));
  SYS(mkdir("n_nox", 0755));
  SYS(put("n_nox/f", "behind no-x", 0644));
  SYS(chmod("n_nox", 0666));
  SYS(mkdir("n_pub", 0755));
  SYS(chmod("n_pub", 0777));
  /* sticky dir owned by root: others' files are protected */
  SYS(mkdir("n_sticky", 0755));
  SYS(chmod("n_sticky", 01777));
  SYS(put("n_sticky/rootfile", "r", 0666));
  SYS(put("n_sticky/nobodyfile", "n", 0644));
  SYS(chown("n_sticky/nobodyfile", NOBODY, NOBODY));
  /* sticky dir owned by nobody: the directory's owner may delete root's file */
  SYS(mkdir("n_sticky_own", 0755));
  SYS(chmod("n_sticky_own", 01777));
  SYS(chown("n_sticky_own", NOBODY, NOBODY));
  SYS(put("n_sticky_own/rootfile", "r", 0644));
  /* setuid/setgid file anyone may write */
  SYS(put("n_suid", "s", 0644));
  SYS(chmod("n_suid", 06777));
  SYS(put("n_suid_tr", "s", 0644));
  SYS(chmod("n_suid_tr", 06777));
  SYS(put("n_suid_otrunc", "s", 0644));
  SYS(chmod("n_suid_otrunc", 06777));
  /* setgid without group-execute: a write by a member of the file's group keeps it, by anyone else clears it */
  SYS(put("n_sgid_nox", "s", 0644));
  SYS(chown("n_sgid_nox", 0, NOBODY));
  SYS(chmod("n_sgid_nox", 02666));
  SYS(put("n_sgid_nox_foreign", "s", 0644));
  SYS(chmod("n_sgid_nox_foreign", 02666));
  /* nobody's own setuid files */
  SYS(put("n_own_suid", "s", 0644));
  SYS(chown("n_own_suid", NOBODY, NOBODY));
  SYS(chmod("n_own_suid", 06755));
  SYS(put("n_own_suid2", "s", 0644));
  SYS(chown("n_own_suid2", NOBODY, NOBODY));
  SYS(chmod("n_own_suid2", 06755));
  /* a setgid directory of a group nobody is not in */
  SYS(mkdir("n_sgid", 0755));
  SYS(chown("n_sgid", 0, 4242));
  SYS(chmod("n_sgid", 02777));
}

static void t_nonroot_child(void) {
  int fd = -1;
  CHECK("perm/setuid-nobody") {
    gid_t none[1];
    SYS(setgroups(0, none));
    SYS(setgid(NOBODY));
    SYS(setuid(NOBODY));
    WANT_EQ("geteuid", geteuid(), NOBODY);
    WANT_EQ("getegid", getegid(), NOBODY);
    WANT_EQ("supplementary groups", getgroups(0, NULL), 0);
  }
  if (geteuid() != NOBODY) return;
  ERR("perm/open-0600-root-file-eacces", open("n_secret", O_RDONLY), EACCES);
  CHECK("access/nobody") {
    WANT_ERR(access("n_secret", R_OK), EACCES);
    SYS(access("n_ro", R_OK));
    WANT_ERR(access("n_ro", W_OK), EACCES);
    SYS(access("n_rw", R_OK | W_OK));
    WANT_ERR(access("n_nox/f", F_OK), EACCES);
  }
  ERR("perm/open-0644-root-file-for-write-eacces", open("n_ro", O_WRONLY), EACCES);
  CHECK("perm/open-0644-root-file-for-read") {
    SYS(fd = open("n_ro", O_RDONLY));
    close(fd);
  }
  ERR("perm/create-in-0755-root-dir-eacces", open("n_rootdir/new", O_WRONLY | O_CREAT, 0644), EACCES);
  ERR("perm/mkdir-in-0755-root-dir-eacces", mkdir("n_rootdir/newd", 0755), EACCES);
  ERR("perm/unlink-in-0755-root-dir-eacces", unlink("n_rootdir/f"), EACCES);
  ERR("perm/rename-into-0755-root-dir-eacces", (put("n_pub/mv", "m", 0644), rename("n_pub/mv", "n_rootdir/mv")), EACCES);
  ERR("perm/symlink-in-0755-root-dir-eacces", symlink("x", "n_rootdir/l"), EACCES);
  ERR("perm/search-without-x-eacces", open("n_nox/f", O_RDONLY), EACCES);
  ERR("perm/stat-without-x-eacces", stat("n_nox/f", &(struct stat){0}), EACCES);
  ERR("perm/opendir-0700-root-dir-eacces", (long)(opendir("n_private") ? 0 : -1), EACCES);
  ERR("perm/truncate-0644-root-file-eacces", truncate("n_ro", 0), EACCES);
  ERR("perm/chmod-others-file-eperm", chmod("n_ro", 0666), EPERM);
  ERR("perm/chown-others-file-eperm", chown("n_ro", NOBODY, NOBODY), EPERM);
  ERR("perm/utimes-explicit-others-file-eperm",
      utimensat(AT_FDCWD, "n_rw", ((struct timespec[2]){ { 1, 0 }, { 1, 0 } }), 0), EPERM);
  ERR("perm/utimes-now-unwritable-file-eacces", utimensat(AT_FDCWD, "n_ro", NULL, 0), EACCES);
  OKC("perm/utimes-now-writable-others-file", utimensat(AT_FDCWD, "n_rw", NULL, 0));
  CHECK("perm/write-0666-root-file") {
    SYS(fd = open("n_rw", O_WRONLY | O_APPEND));
    WANT_EQ("write", write(fd, "+", 1), 1);
    close(fd);
  }
  CHECK("perm/new-file-owned-by-caller") {
    SYS(put("n_pub/mine", "mine", 0644));
    struct stat st = st_of("n_pub/mine");
    WANT_EQ("st_uid", st.st_uid, NOBODY);
    WANT_EQ("st_gid", st.st_gid, NOBODY);
  }
  CHECK("perm/new-dir-symlink-fifo-owned-by-caller") {
    SYS(mkdir("n_pub/d", 0755));
    SYS(symlink("mine", "n_pub/l"));
    SYS(mkfifo("n_pub/p", 0644));
    WANT_EQ("dir st_uid", st_of("n_pub/d").st_uid, NOBODY);
    WANT_EQ("symlink st_uid", st_of("n_pub/l").st_uid, NOBODY);
    WANT_EQ("fifo st_uid", st_of("n_pub/p").st_uid, NOBODY);
    WANT_EQ("fifo st_gid", st_of("n_pub/p").st_gid, NOBODY);
  }
  CHECK("perm/chmod-own-file") {
    SYS(chmod("n_pub/mine", 0600));
    WANT_MODE("mode", st_of("n_pub/mine").st_mode & 07777, 0600);
  }
  OKC("perm/utimes-explicit-own-file",
      utimensat(AT_FDCWD, "n_pub/mine", ((struct timespec[2]){ { 1, 0 }, { 1, 0 } }), 0));
  ERR("perm/chown-own-file-to-other-uid-eperm", chown("n_pub/mine", 0, -1), EPERM);
  ERR("perm/chgrp-own-file-to-foreign-group-eperm", chown("n_pub/mine", -1, 4242), EPERM);
  OKC("perm/chgrp-own-file-to-own-group", chown("n_pub/mine", -1, NOBODY));
  CHECK("perm/chmod-setgid-foreign-group-cleared") {
    /* POSIX chmod: a caller outside the file's group cannot set S_ISGID; the bit is cleared. */
    SYS(put("n_sgid/sg", "x", 0644));
    WANT_EQ("st_gid (inherited)", st_of("n_sgid/sg").st_gid, 4242);
    SYS(chmod("n_sgid/sg", 02755));
    WANT_MODE("mode", st_of("n_sgid/sg").st_mode & 07777, 0755);
  }
  CHECK("perm/sgid-dir-new-file-gets-dir-gid") want_sgid_file("n_sgid");
  CHECK("perm/sgid-dir-new-subdir-keeps-setgid") want_sgid_subdir("n_sgid");
  ERR("perm/sticky-unlink-others-file-eperm", unlink("n_sticky/rootfile"), EPERM);
  ERR("perm/sticky-rename-others-file-eperm", rename("n_sticky/rootfile", "n_sticky/moved"), EPERM);
  OKC("perm/sticky-unlink-own-file", unlink("n_sticky/nobodyfile"));
  OKC("perm/sticky-dir-owner-unlinks-others-file", unlink("n_sticky_own/rootfile"));
  CHECK("perm/sticky-create-and-delete-own") {
    SYS(put("n_sticky/new", "n", 0644));
    SYS(unlink("n_sticky/new"));
  }
  CHECK("suid/write-by-non-owner-clears-setuid-setgid") {
    want_mode_after_write("n_suid", 0777);
  }
  CHECK("suid/o_trunc-by-non-owner-clears-setuid-setgid") {
    SYS(fd = open("n_suid_otrunc", O_WRONLY | O_TRUNC));
    close(fd);
    WANT_MODE("mode", st_of("n_suid_otrunc").st_mode & 07777, 0777);
  }
  CHECK("suid/write-by-group-member-keeps-setgid-without-group-exec") {
    want_mode_after_write("n_sgid_nox", 02666);
  }
  CHECK("suid/write-by-non-member-clears-setgid-without-group-exec") {
    want_mode_after_write("n_sgid_nox_foreign", 0666);
  }
  CHECK("suid/write-by-owner-clears-setuid-setgid") {
    want_mode_after_write("n_own_suid", 0755);
  }
  CHECK("suid/chgrp-by-owner-clears-setuid-setgid") {
    SYS(chown("n_own_suid2", -1, NOBODY));
    WANT_MODE("mode", st_of("n_own_suid2").st_mode & 07777, 0755);
  }
  CHECK("perm/sgid-dir-create-strips-foreign-setgid") {
    /* Linux: a new file's S_ISGID survives only if the creator is in its group (or has CAP_FSETID). */
    SYS(fd = open("n_sgid/sgbit", O_WRONLY | O_CREAT | O_EXCL, 02755));
    close(fd);
    struct stat st = st_of("n_sgid/sgbit");
    WANT_EQ("st_gid", st.st_gid, 4242);
    WANT_MODE("mode", st.st_mode & 07777, 0755);
  }
  CHECK("suid/truncate-by-non-owner-clears-setuid-setgid") {
    SYS(truncate("n_suid_tr", 0));
    WANT_MODE("mode", st_of("n_suid_tr").st_mode & 07777, 0777);
  }
  ERR("perm/link-into-0755-root-dir-eacces", link("n_pub/mine", "n_rootdir/mine"), EACCES);
  ERR("perm/rmdir-in-0755-root-dir-eacces", rmdir("n_rootdir/sub"), EACCES);
}

/* Runs the non-root checks in a child; the child's counters come back through a pipe. */
static void t_nonroot(void) {
  if (geteuid() != 0) {
    CHECK("perm/as-root") skip("not running as root: cannot switch to uid %d", NOBODY);
    return;
  }
  nonroot_setup();
  int p[2];
  if (pipe(p) < 0) return;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    t_nonroot_child();
    int counts[4] = { n_check, n_pass, n_fail, n_skip };
    if (write(p[1], counts, sizeof counts) != sizeof counts) _exit(2);
    fflush(stdout);
    _exit(0);
  }
  close(p[1]);
  int counts[4];
  ssize_t n = pid > 0 ? read(p[0], counts, sizeof counts) : -1;
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  close(p[0]);
  if (n == sizeof counts) {
    n_check = counts[0];
    n_pass = counts[1];
    n_fail = counts[2];
    n_skip = counts[3];
  } else {
    CHECK("perm/child") note("the non-root child died (status 0x%x)", status);
  }
}

/* ------------------------------------------------------------------------------------------------ */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: posix-check DIR\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  char scratch[PATH_MAX];
  snprintf(scratch, sizeof scratch, "%s/posix-check.XXXXXX", argv[1]);
  if (!mkdtemp(scratch)) {
    fprintf(stderr, "posix-check: mkdtemp in %s: %s\n", argv[1], strerror(errno));
    return 2;
  }
  if (chmod(scratch, 0755) < 0 || chdir(scratch) < 0) {
    fprintf(stderr, "posix-check: %s: %s\n", scratch, strerror(errno));
    return 2;
  }
  printf("# posix-check in %s\n", scratch);
  static const struct { const char *name; void (*run)(void); } groups[] = {
    { "open", t_open }, { "dirs", t_dirs }, { "unlink", t_unlink }, { "rename", t_rename }, { "link", t_link },
    { "symlink", t_symlink }, { "attr", t_attr }, { "truncate", t_truncate }, { "times", t_times }, { "io", t_io },
    { "names", t_names }, { "ebadf", t_ebadf }, { "readdir", t_readdir }, { "special", t_special }, { "setgid", t_setgid },
    { "lock", t_lock }, { "nonroot", t_nonroot },
  };
  for (size_t i = 0; i < sizeof groups / sizeof *groups; i++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    groups[i].run();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("# %s: %lld ms\n", groups[i].name, (ns(t1) - ns(t0)) / 1000000);
  }
  if (chdir("/") == 0 && getenv("POSIX_CHECK_KEEP") == NULL) nftw(scratch, rm_one, 32, FTW_DEPTH | FTW_PHYS);
  printf("posix-check: %d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
  return n_fail == 0 ? 0 : 1;
}
