/*
 * closer.c: closes fds on a thread of its own, for fds nothing will use again (host/passthrough/inode-store.ts:
 * the O_PATH fd of a node the guest forgot).
 *
 * Why a thread: closing the last reference to an unlinked inode evicts it, and the eviction may wait for the disk
 * (an ext4 file truncated while its pages are under writeback, the journal). In a guest's `rm` of files it had
 * just written, that close took 0.3 ms at the median on the JS thread, with every request queue waiting behind it.
 * The C virtiofsd pays it on its high-priority queue's thread, where FORGET arrives.
 *
 *   JS thread                               closer thread
 *   closerAdd(fd) -> ring of fds            (asleep)
 *     (ring full: closes inline)
 *   closerWake()  -- signal, if idle -->    takes the whole ring, closes each without the lock
 *
 * Adding and waking are apart so that the caller wakes the thread once for all the fds of a batch, after the
 * batch's replies: waking a sleeping thread costs the waker an inter-processor interrupt, and in a VM that is a
 * trip through the hypervisor (about 6 µs here), more than a close that does not evict.
 *
 * Nothing is reported back. An fd stays open until the thread closes it, so its number is not reused before
 * then. Lifetime: the JS handle (an external) owns the closer; closerClose (or the finalizer) closes what is
 * queued and joins the thread.
 */
#include "common.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* Fds queued at most; beyond, closerAdd closes inline (a BATCH_FORGET of a big listing fills it in one go). */
#define VFS_CLOSER_SLOTS 4096

struct vfs_closer {
  pthread_mutex_t lock;
  pthread_cond_t work;   /* fds queued, or stopping */
  pthread_cond_t idle;   /* the ring emptied and the batch taken from it is closed */
  pthread_t thread;
  bool stopping, closed;
  bool closing;          /* the thread holds a batch outside the lock */
  bool woken;            /* closerWake since the thread last took the ring */
  int ring[VFS_CLOSER_SLOTS], head, count;
  int batch[VFS_CLOSER_SLOTS]; /* the thread's copy of the ring, closed outside the lock */
  double queued, done;   /* totals, for closerStats */
};

static const napi_type_tag vfs_closer_tag = {0x76697274696f6673ULL, 0x636c6f7365723031ULL};

static void *vfs_closer_main(void *arg) {
  struct vfs_closer *c = arg;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (!(c->woken && c->count > 0) && !c->stopping) pthread_cond_wait(&c->work, &c->lock);
    if (c->count == 0) break; /* stopping, and nothing left */
    c->woken = false;
    int n = c->count;
    for (int i = 0; i < n; i++) c->batch[i] = c->ring[(c->head + i) % VFS_CLOSER_SLOTS];
    c->head = (c->head + n) % VFS_CLOSER_SLOTS;
    c->count = 0;
    c->closing = true;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++) close(c->batch[i]); /* EINTR: Linux has released the fd anyway; never retried */
    pthread_mutex_lock(&c->lock);
    c->closing = false;
    c->done += n;
    pthread_cond_broadcast(&c->idle);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* Closes what is queued, then joins the thread. */
static void vfs_closer_stop(struct vfs_closer *c) {
  if (c->closed) return;
  c->closed = true;
  pthread_mutex_lock(&c->lock);
  c->stopping = true;
  pthread_cond_signal(&c->work);
  pthread_mutex_unlock(&c->lock);
  pthread_join(c->thread, NULL);
}

static void vfs_closer_free(struct vfs_closer *c) {
  pthread_cond_destroy(&c->idle);
  pthread_cond_destroy(&c->work);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static void vfs_closer_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  vfs_closer_stop(data);
  vfs_closer_free(data);
}

static struct vfs_closer *vfs_get_closer(napi_env env, napi_value v) {
  return vfs_get_tagged(env, v, &vfs_closer_tag, "a CloserHandle");
}

/* closerCreate() -> handle, or -errno. */
VFS_FN(vfs_closer_create) {
  struct vfs_closer *c = calloc(1, sizeof *c);
  if (c == NULL) return vfs_int(env, -ENOMEM);
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->work, NULL);
  pthread_cond_init(&c->idle, NULL);
  int e = vfs_thread_start(&c->thread, vfs_closer_main, c);
  if (e != 0) {
    vfs_closer_free(c);
    return vfs_int(env, -e);
  }
  bool owned;
  napi_value handle = vfs_new_tagged(env, c, vfs_closer_finalize, &vfs_closer_tag, &owned);
  if (handle == NULL && !owned) {
    vfs_closer_stop(c);
    vfs_closer_free(c);
  }
  return handle;
}

/* closerAdd(closer, fd) -> 0 queued; or, with the ring full or the closer closed, close(fd)'s 0 or -errno. */
VFS_FN(vfs_closer_add) {
  VFS_ARGS(env, info, 2);
  struct vfs_closer *c = vfs_get_closer(env, argv[0]);
  if (c == NULL) return NULL;
  int32_t fd;
  if (!vfs_get_i32(env, argv[1], &fd)) return NULL;
  if (fd < 0) return vfs_int(env, -EBADF);
  pthread_mutex_lock(&c->lock);
  bool queued = !c->stopping && c->count < VFS_CLOSER_SLOTS;
  if (queued) {
    c->ring[(c->head + c->count) % VFS_CLOSER_SLOTS] = fd;
    c->count++;
    c->queued++;
  }
  pthread_mutex_unlock(&c->lock);
  if (queued) return vfs_int(env, 0);
  return vfs_int(env, close(fd) < 0 ? -errno : 0);
}

/* Signals the thread when fds wait and it is idle (a thread busy with a batch looks at the ring again before it
 * waits). Called with the lock held. */
static void vfs_closer_wake_locked(struct vfs_closer *c) {
  if (c->count == 0) return;
  c->woken = true;
  if (!c->closing) pthread_cond_signal(&c->work);
}

/* closerWake(closer): the thread closes what is queued (a no-op when nothing is, or it is at work already). */
VFS_FN(vfs_closer_wake) {
  VFS_ARGS(env, info, 1);
  struct vfs_closer *c = vfs_get_closer(env, argv[0]);
  if (c == NULL) return NULL;
  pthread_mutex_lock(&c->lock);
  vfs_closer_wake_locked(c);
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* closerFlush(closer): wakes the thread and returns once every fd queued before the call is closed. */
VFS_FN(vfs_closer_flush) {
  VFS_ARGS(env, info, 1);
  struct vfs_closer *c = vfs_get_closer(env, argv[0]);
  if (c == NULL) return NULL;
  pthread_mutex_lock(&c->lock);
  while (!c->closed && (c->count > 0 || c->closing)) {
    vfs_closer_wake_locked(c);
    pthread_cond_wait(&c->idle, &c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* closerStats(closer) -> [fds queued so far, fds the thread has closed so far]. */
VFS_FN(vfs_closer_stats) {
  VFS_ARGS(env, info, 1);
  struct vfs_closer *c = vfs_get_closer(env, argv[0]);
  if (c == NULL) return NULL;
  pthread_mutex_lock(&c->lock);
  double queued = c->queued, done = c->done;
  pthread_mutex_unlock(&c->lock);
  napi_value out, v;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &out));
  NAPI_CALL(env, napi_create_double(env, queued, &v));
  NAPI_CALL(env, napi_set_element(env, out, 0, v));
  NAPI_CALL(env, napi_create_double(env, done, &v));
  NAPI_CALL(env, napi_set_element(env, out, 1, v));
  return out;
}

/* closerClose(closer): closes what is queued and joins the thread; later closerAdd calls close inline. */
VFS_FN(vfs_closer_close) {
  VFS_ARGS(env, info, 1);
  struct vfs_closer *c = vfs_get_closer(env, argv[0]);
  if (c == NULL) return NULL;
  vfs_closer_stop(c);
  return NULL;
}
