/*
 * io-pool.c: a small pthread pool for blocking file I/O (preadv/pwritev into a memory, fsync, fdatasync, fallocate,
 * copy_file_range), completions reported through an eventfd. host/passthrough/blocking-io.ts drives it: the
 * request path tries `preadvNowait`/`pwritevNowait` (RWF_NOWAIT, in fsat.c) inline first and submits here only
 * when the call would block.
 *
 *   JS thread                                  pool thread (x N)
 *   ioPoolSubmit(op, fd, mem, iov.., tag) -->  job slot: a copy of the struct iovec table
 *        -EAGAIN when every slot is busy          preadv/pwritev
 *   eventfd readable  <------------------------   result into the done ring, eventfd write(1)
 *   ioPoolReap(out) -> (tag, result) pairs
 *
 * Slots, their iovec arrays and both rings are allocated once at create: nothing is allocated per job.
 * A job holds the process addresses of its iovecs (guest RAM or the core's linear memory, as for preadv): the
 * caller must not unmap or replace that memory while a job is in flight (ioPoolPending() == 0, or ioPoolClose,
 * first).
 * Lifetime: the JS handle (an external) owns the pool; ioPoolClose (or the handle's finalizer) stops and joins
 * the threads; queued jobs that had not started are dropped unreported.
 */
#include "common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define VFS_POOL_SLOTS 128

/* Jobs with iovecs (ioPoolSubmit) and calls on an fd (ioPoolSubmitCall; a0..a3 are the call's arguments); the
 * kinds (VFS_POOL_*) are in common.h. */

struct vfs_pool_job {
  int op, fd, count;
  int64_t position;
  int64_t a0, a1, a2, a3;
  double tag;
  ssize_t result;
  struct iovec iov[VFS_IOV_MAX];
};

struct vfs_pool {
  pthread_mutex_t lock;
  pthread_cond_t work;
  pthread_t threads[VFS_POOL_MAX_THREADS];
  int nthreads;
  int eventfd;
  bool stopping, closed;
  struct vfs_pool_job *slots; /* VFS_POOL_SLOTS */
  /* Rings of slot indices: free -> queued (submit) -> running -> done (thread) -> free (reap). */
  int queued[VFS_POOL_SLOTS], qhead, qcount;
  int done[VFS_POOL_SLOTS], dhead, dcount;
  int freelist[VFS_POOL_SLOTS], nfree;
};

static const napi_type_tag vfs_pool_tag = {0x76697274696f6673ULL, 0x696f706f6f6c3031ULL};

static ssize_t vfs_pool_run(struct vfs_pool_job *j) {
  switch (j->op) {
    case VFS_POOL_WRITE: return pwritev(j->fd, j->iov, j->count, (off_t)j->position);
    case VFS_POOL_FSYNC: return fsync(j->fd);
    case VFS_POOL_FDATASYNC: return fdatasync(j->fd);
    case VFS_POOL_FALLOCATE: return fallocate(j->fd, (int)j->a0, (off_t)j->a1, (off_t)j->a2);
    case VFS_POOL_COPY_FILE_RANGE: {
      /* a0 = offset in, a1 = fd out, a2 = offset out, a3 = length; position = flags. */
      off_t in = (off_t)j->a0, out = (off_t)j->a2;
      return copy_file_range(j->fd, &in, (int)j->a1, &out, (size_t)j->a3, (unsigned)j->position);
    }
    default: return preadv(j->fd, j->iov, j->count, (off_t)j->position);
  }
}

static void *vfs_pool_main(void *arg) {
  struct vfs_pool *p = arg;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (p->qcount == 0 && !p->stopping) pthread_cond_wait(&p->work, &p->lock);
    if (p->stopping) break;
    int slot = p->queued[p->qhead];
    p->qhead = (p->qhead + 1) % VFS_POOL_SLOTS;
    p->qcount--;
    pthread_mutex_unlock(&p->lock);

    struct vfs_pool_job *j = &p->slots[slot];
    ssize_t r;
    do {
      r = vfs_pool_run(j);
    } while (r < 0 && errno == EINTR);
    j->result = r < 0 ? -errno : r;

    pthread_mutex_lock(&p->lock);
    p->done[(p->dhead + p->dcount) % VFS_POOL_SLOTS] = slot;
    p->dcount++;
    uint64_t one = 1;
    /* Never blocks: the counter cannot reach its maximum with at most VFS_POOL_SLOTS writes between reads. */
    while (write(p->eventfd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

static void vfs_pool_stop(struct vfs_pool *p) {
  if (p->closed) return;
  p->closed = true;
  pthread_mutex_lock(&p->lock);
  p->stopping = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
  close(p->eventfd);
  p->eventfd = -1;
}

static void vfs_pool_free(struct vfs_pool *p) {
  pthread_cond_destroy(&p->work);
  pthread_mutex_destroy(&p->lock);
  free(p->slots);
  free(p);
}

static void vfs_pool_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct vfs_pool *p = data;
  vfs_pool_stop(p);
  vfs_pool_free(p);
}

static struct vfs_pool *vfs_get_pool(napi_env env, napi_value v) {
  return vfs_get_tagged(env, v, &vfs_pool_tag, "an IoPoolHandle");
}

/* ioPoolCreate(threads) -> handle, or -errno (EINVAL for a thread count outside 1..64). */
VFS_FN(vfs_io_pool_create) {
  VFS_ARGS(env, info, 1);
  int32_t n;
  if (!vfs_get_i32(env, argv[0], &n)) return NULL;
  if (n < 1 || n > VFS_POOL_MAX_THREADS) return vfs_int(env, -EINVAL);
  struct vfs_pool *p = calloc(1, sizeof *p);
  if (p != NULL) p->slots = calloc(VFS_POOL_SLOTS, sizeof *p->slots);
  if (p == NULL || p->slots == NULL) {
    free(p);
    return vfs_int(env, -ENOMEM);
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  for (int i = 0; i < VFS_POOL_SLOTS; i++) p->freelist[i] = i;
  p->nfree = VFS_POOL_SLOTS;
  p->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->eventfd < 0) {
    int e = errno;
    vfs_pool_free(p);
    return vfs_int(env, -e);
  }
  int e = 0;
  for (; p->nthreads < n; p->nthreads++) {
    e = vfs_thread_start(&p->threads[p->nthreads], vfs_pool_main, p);
    if (e != 0) break;
  }
  if (e != 0) {
    vfs_pool_stop(p);
    vfs_pool_free(p);
    return vfs_int(env, -e);
  }
  bool owned;
  napi_value handle = vfs_new_tagged(env, p, vfs_pool_finalize, &vfs_pool_tag, &owned);
  if (handle == NULL && !owned) {
    vfs_pool_stop(p);
    vfs_pool_free(p);
  }
  return handle;
}

/* ioPoolEventfd(pool) -> the completion eventfd (readable while completions wait to be reaped), -EBADF closed. */
VFS_FN(vfs_io_pool_eventfd) {
  VFS_ARGS(env, info, 1);
  struct vfs_pool *p = vfs_get_pool(env, argv[0]);
  if (p == NULL) return NULL;
  return vfs_int(env, p->closed ? -EBADF : p->eventfd);
}

/* A free slot, or -1 (every slot busy). */
static int vfs_pool_take_slot(struct vfs_pool *p) {
  pthread_mutex_lock(&p->lock);
  int slot = p->nfree == 0 ? -1 : p->freelist[--p->nfree];
  pthread_mutex_unlock(&p->lock);
  return slot;
}

/* ioPoolSubmit(pool, op, fd, mem, iovOffset, iovCount, position, tag) -> 0 or -errno (-EAGAIN: no free slot). */
VFS_FN(vfs_io_pool_submit) {
  VFS_ARGS(env, info, 8);
  struct vfs_pool *p = vfs_get_pool(env, argv[0]);
  int32_t op, fd, count;
  int64_t iov_offset, position;
  uint8_t *mem;
  size_t len;
  double tag;
  if (p == NULL || !vfs_get_i32(env, argv[1], &op) || !vfs_get_i32(env, argv[2], &fd)) return NULL;
  if (!vfs_get_memory(env, argv[3], &mem, &len) || !vfs_get_i64(env, argv[4], &iov_offset)) return NULL;
  if (!vfs_get_i32(env, argv[5], &count) || !vfs_get_i64(env, argv[6], &position)) return NULL;
  NAPI_CALL(env, napi_get_value_double(env, argv[7], &tag));
  if (p->closed) return vfs_int(env, -EBADF);
  if ((op != VFS_POOL_READ && op != VFS_POOL_WRITE) || position < 0) return vfs_int(env, -EINVAL);
  int slot = vfs_pool_take_slot(p);
  if (slot < 0) return vfs_int(env, -EAGAIN);
  /* The slot is ours alone until it is queued: the table is copied (its memory may be reused at once). */
  struct vfs_pool_job *j = &p->slots[slot];
  int rc;
  const struct iovec *iov = vfs_iov_table(mem, len, iov_offset, count, &rc);
  if (iov != NULL) memcpy(j->iov, iov, (size_t)count * sizeof *iov);
  pthread_mutex_lock(&p->lock);
  if (rc < 0) {
    p->freelist[p->nfree++] = slot;
  } else {
    j->op = op;
    j->fd = fd;
    j->count = count;
    j->position = position;
    j->tag = tag;
    p->queued[(p->qhead + p->qcount) % VFS_POOL_SLOTS] = slot;
    p->qcount++;
    pthread_cond_signal(&p->work);
  }
  pthread_mutex_unlock(&p->lock);
  return vfs_int(env, rc);
}

/*
 * ioPoolSubmitCall(pool, op, fd, a0, a1, a2, a3, tag) -> 0 or -errno (-EAGAIN: no free slot). A call that takes no
 * memory: fsync(fd) (op 2), fdatasync(fd) (3), fallocate(fd, a0 = mode, a1 = offset, a2 = length) (4),
 * copy_file_range(fd, a0 = offset in, a1 = fd out, a2 = offset out, a3 = length, flags 0) (5).
 */
VFS_FN(vfs_io_pool_submit_call) {
  VFS_ARGS(env, info, 8);
  struct vfs_pool *p = vfs_get_pool(env, argv[0]);
  int32_t op, fd;
  int64_t a[4];
  double tag;
  if (p == NULL || !vfs_get_i32(env, argv[1], &op) || !vfs_get_i32(env, argv[2], &fd)) return NULL;
  for (int i = 0; i < 4; i++) {
    if (!vfs_get_i64(env, argv[3 + i], &a[i])) return NULL;
  }
  NAPI_CALL(env, napi_get_value_double(env, argv[7], &tag));
  if (p->closed) return vfs_int(env, -EBADF);
  if (op < VFS_POOL_FSYNC || op > VFS_POOL_COPY_FILE_RANGE) return vfs_int(env, -EINVAL);
  int slot = vfs_pool_take_slot(p);
  if (slot < 0) return vfs_int(env, -EAGAIN);
  struct vfs_pool_job *j = &p->slots[slot];
  j->op = op;
  j->fd = fd;
  j->count = 0;
  j->position = 0;
  j->a0 = a[0];
  j->a1 = a[1];
  j->a2 = a[2];
  j->a3 = a[3];
  j->tag = tag;
  pthread_mutex_lock(&p->lock);
  p->queued[(p->qhead + p->qcount) % VFS_POOL_SLOTS] = slot;
  p->qcount++;
  pthread_cond_signal(&p->work);
  pthread_mutex_unlock(&p->lock);
  return vfs_int(env, 0);
}

/* ioPoolReap(pool, out: Float64Array) -> pairs (tag, bytes or -errno) written, at most out.length / 2. */
VFS_FN(vfs_io_pool_reap) {
  VFS_ARGS(env, info, 2);
  struct vfs_pool *p = vfs_get_pool(env, argv[0]);
  double *out;
  size_t n;
  if (p == NULL || !vfs_get_float64_array(env, argv[1], &out, &n)) return NULL;
  if (p->closed) return vfs_int(env, -EBADF);
  uint64_t ignored;
  (void)!read(p->eventfd, &ignored, sizeof ignored); /* reset the counter: what is done is in the ring */
  int got = 0;
  pthread_mutex_lock(&p->lock);
  while (p->dcount > 0 && (size_t)got * 2 + 2 <= n) {
    int slot = p->done[p->dhead];
    p->dhead = (p->dhead + 1) % VFS_POOL_SLOTS;
    p->dcount--;
    out[2 * got] = p->slots[slot].tag;
    out[2 * got + 1] = (double)p->slots[slot].result;
    p->freelist[p->nfree++] = slot;
    got++;
  }
  /* Completions left behind (out too small) keep the eventfd readable. */
  if (p->dcount > 0) {
    uint64_t one = 1;
    (void)!write(p->eventfd, &one, sizeof one);
  }
  pthread_mutex_unlock(&p->lock);
  return vfs_int(env, got);
}

/* ioPoolPending(pool) -> jobs submitted and not reaped yet. */
VFS_FN(vfs_io_pool_pending) {
  VFS_ARGS(env, info, 1);
  struct vfs_pool *p = vfs_get_pool(env, argv[0]);
  if (p == NULL) return NULL;
  pthread_mutex_lock(&p->lock);
  int pending = VFS_POOL_SLOTS - p->nfree;
  pthread_mutex_unlock(&p->lock);
  return vfs_int(env, pending);
}

/* ioPoolClose(pool): stops and joins the threads (a running job finishes first), closes the eventfd. Idempotent. */
VFS_FN(vfs_io_pool_close) {
  VFS_ARGS(env, info, 1);
  struct vfs_pool *p = vfs_get_pool(env, argv[0]);
  if (p == NULL) return NULL;
  vfs_pool_stop(p);
  napi_value undefined;
  NAPI_CALL(env, napi_get_undefined(env, &undefined));
  return undefined;
}
