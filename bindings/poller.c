/*
 * poller.c: readiness notification for the JS thread, and raw epoll for worker threads.
 *
 * A poller is one thread blocked in epoll_wait on its own epoll fd. Ready registrations are forwarded to the
 * JS thread through a napi_threadsafe_function as callback(token, events). Registrations are EPOLLONESHOT,
 * so each fd has at most one event in flight until pollerRearm; the tsfn queue is therefore bounded by the
 * number of registrations. An internal eventfd (registered with VFS_POLLER_STOP) wakes the thread to stop.
 *
 * A registration asked for with EPOLLET is edge-triggered and persistent instead: every new readiness is one
 * event (for an eventfd: every write, whether or not the counter was read), and nothing needs re-arming or
 * draining. It saves a kick eventfd's read and epoll_ctl per wake-up; it is meant for the loop mode, where
 * events are handled as they are read (on the thread, each would be one more tsfn queue entry).
 *
 * Lifetime: the state is shared by the JS handle (an external) and the tsfn; whichever is finalized last
 * frees it (both finalizers run on the JS thread, so `refs` needs no atomics). The thread is stopped and
 * joined by pollerClose, or by the tsfn finalizer when the environment is torn down without pollerClose.
 *
 * On the loop (pollerCreateOnLoop): no thread. The epoll fd itself is watched by the JS thread's libuv loop
 * (one uv_poll_t; an epoll fd is readable while any of its registrations is ready), and the loop callback
 * drains it with epoll_wait(0) and calls JS directly: one wake-up per kick instead of two (poller thread, then
 * the loop's async handle), and no second thread's CPU. The uv functions are looked up with dlsym, so the addon
 * still loads in runtimes without libuv (Bun, Deno), where pollerCreateOnLoop answers -ENOSYS.
 */
#include "common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Tokens are int32, stored zero-extended in data.u64; this value cannot collide with one. */
#define VFS_POLLER_STOP (UINT64_C(1) << 32)
#define VFS_POLLER_BATCH 64
/* Most events one epollWait call reports (its epoll_event array is on the stack). */
#define VFS_EPOLL_WAIT_MAX 256

_Static_assert(sizeof(void *) == 8, "(token, events) are packed into the tsfn data pointer");

struct vfs_poller {
  int epfd;
  int stopfd;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  bool closed;  /* pollerClose was called: no more registrations, pending callbacks dropped */
  bool stopped; /* the thread was joined and the fds closed */
  int refs;     /* the external + the tsfn (thread mode) or the uv handle (loop mode) */
  /* loop mode */
  bool on_loop;
  uv_poll_t *poll; /* malloc'd apart from the state: libuv frees it itself (see vfs_poller_loop_stop) */
  napi_env env;
  napi_ref callback;
  napi_ref resource; /* the callback scope's resource object, made once (no allocation per wake-up) */
  napi_async_context async_context;
  bool napi_released; /* callback and async_context already freed (environment teardown) */
};

static const napi_type_tag vfs_poller_tag = {0x76697274696f6673ULL, 0x64706f6c6c657231ULL};

/* ---- the thread ----------------------------------------------------------------------------------------- */

static void *vfs_poller_main(void *arg) {
  struct vfs_poller *p = arg;
  struct epoll_event ev[VFS_POLLER_BATCH];
  for (;;) {
    int n = epoll_wait(p->epfd, ev, VFS_POLLER_BATCH, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "virtiofsd-ts native: poller epoll_wait: %s\n", strerror(errno));
      return NULL;
    }
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u64 == VFS_POLLER_STOP) return NULL;
      /* (events << 32 | token) travels as the data pointer itself: no allocation per event. */
      uint64_t packed = (uint64_t)ev[i].events << 32 | (uint32_t)ev[i].data.u64;
      napi_status s = napi_call_threadsafe_function(p->tsfn, (void *)(uintptr_t)packed, napi_tsfn_nonblocking);
      if (s == napi_closing) return NULL;
      if (s != napi_ok) fprintf(stderr, "virtiofsd-ts native: poller could not queue an event (%d)\n", (int)s);
    }
  }
}

static void vfs_poller_stop(struct vfs_poller *p) {
  if (p->stopped) return;
  p->stopped = true;
  uint64_t one = 1;
  while (write(p->stopfd, &one, sizeof one) < 0 && errno == EINTR) {
  }
  pthread_join(p->thread, NULL);
  close(p->epfd);
  close(p->stopfd);
  p->epfd = p->stopfd = -1;
}

static void vfs_poller_unref(struct vfs_poller *p) {
  if (--p->refs == 0) free(p);
}

/* ---- JS-thread side --------------------------------------------------------------------------------------- */

/* Reports an exception thrown by a poller callback through console.error, then carries on. */
static void vfs_poller_report(napi_env env, napi_value exception) {
  napi_value global, console, error, argv[2], ignored;
  bool ok = napi_get_global(env, &global) == napi_ok &&
            napi_get_named_property(env, global, "console", &console) == napi_ok &&
            napi_get_named_property(env, console, "error", &error) == napi_ok &&
            napi_create_string_utf8(env, "virtiofsd-ts: poller callback threw:", NAPI_AUTO_LENGTH, &argv[0]) ==
                napi_ok;
  argv[1] = exception;
  if (ok) ok = napi_call_function(env, console, error, 2, argv, &ignored) == napi_ok;
  if (!ok) {
    napi_value pending;
    napi_get_and_clear_last_exception(env, &pending); /* console.error itself failed: never rethrow */
    fprintf(stderr, "virtiofsd-ts: poller callback threw (and could not be logged)\n");
  }
}

static void vfs_poller_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  struct vfs_poller *p = context;
  if (env == NULL || js_cb == NULL || p->closed) return; /* torn down or closed: drop */
  uint64_t packed = (uint64_t)(uintptr_t)data;
  napi_value argv[2], undefined, exception;
  NAPI_CHECK_OR(env, napi_create_int32(env, (int32_t)(uint32_t)packed, &argv[0]));
  NAPI_CHECK_OR(env, napi_create_uint32(env, (uint32_t)(packed >> 32), &argv[1]));
  NAPI_CHECK_OR(env, napi_get_undefined(env, &undefined));
  napi_status s = napi_call_function(env, undefined, js_cb, 2, argv, NULL);
  if (s == napi_pending_exception) {
    /* A throwing callback must not take the daemon down (an uncaught exception would). */
    NAPI_CHECK_OR(env, napi_get_and_clear_last_exception(env, &exception));
    vfs_poller_report(env, exception);
  } else if (s != napi_ok) {
    vfs_throw_status(env, s, "napi_call_function(poller callback)");
  }
}

static void vfs_poller_tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct vfs_poller *p = data;
  p->closed = true;
  vfs_poller_stop(p); /* environment teardown without pollerClose: still join the thread */
  vfs_poller_unref(p);
}

static void vfs_poller_external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  /* Only the handle is gone; an unclosed poller keeps running (and keeps the loop alive) until pollerClose. */
  vfs_poller_unref(data);
}

/* Throws an Error with code = errno name for a failed setup syscall (control plane, not guest-driven). */
static napi_value vfs_throw_errno(napi_env env, const char *what, int e) {
  char msg[160];
  snprintf(msg, sizeof msg, "virtiofsd-ts native: %s: %s", what, strerror(e));
  const char *code = strerrorname_np(e);
  napi_throw_error(env, code, msg);
  return NULL;
}

/* The callback argument of a create function: false with a TypeError pending when it is not a function. */
static bool vfs_is_callback(napi_env env, napi_value v, const char *fn) {
  napi_valuetype type;
  NAPI_CHECK_OR(env, napi_typeof(env, v, &type), false);
  if (type == napi_function) return true;
  char msg[96];
  snprintf(msg, sizeof msg, "virtiofsd-ts native: %s needs a function", fn);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return false;
}

VFS_FN(vfs_poller_create) {
  VFS_ARGS(env, info, 1);
  if (!vfs_is_callback(env, argv[0], "pollerCreate")) return NULL;

  struct vfs_poller *p = calloc(1, sizeof *p);
  if (p == NULL) return vfs_throw_errno(env, "pollerCreate", ENOMEM);
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  p->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event stop = {.events = EPOLLIN, .data.u64 = VFS_POLLER_STOP};
  if (p->epfd < 0 || p->stopfd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->stopfd, &stop) < 0) {
    int e = errno;
    if (p->epfd >= 0) close(p->epfd);
    if (p->stopfd >= 0) close(p->stopfd);
    free(p);
    return vfs_throw_errno(env, "pollerCreate", e);
  }

  napi_value name;
  napi_status s = napi_create_string_utf8(env, "virtiofsd-ts poller", NAPI_AUTO_LENGTH, &name);
  if (s == napi_ok)
    s = napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, p, vfs_poller_tsfn_finalize, p,
                                        vfs_poller_call_js, &p->tsfn);
  if (s != napi_ok) {
    close(p->epfd);
    close(p->stopfd);
    free(p);
    NAPI_CALL(env, s);
  }
  /* From here the tsfn finalizer owns one reference; the handle gets the other. */
  p->refs = 2;

  int e = vfs_thread_start(&p->thread, vfs_poller_main, p);
  if (e != 0) {
    p->closed = p->stopped = true;
    close(p->epfd);
    close(p->stopfd);
    p->refs = 1; /* no handle will be made: the tsfn finalizer frees p */
    napi_release_threadsafe_function(p->tsfn, napi_tsfn_abort);
    return vfs_throw_errno(env, "pollerCreate: pthread_create", e);
  }

  bool owned;
  napi_value handle = vfs_new_tagged(env, p, vfs_poller_external_finalize, &vfs_poller_tag, &owned);
  if (handle == NULL) {
    /* A handle that could not be made: close the poller now; the handle's reference goes with the external,
     * or here when none was made. */
    p->closed = true;
    vfs_poller_stop(p);
    if (!owned) p->refs--; /* the tsfn's stays: its finalizer, after the release below, frees p */
    napi_release_threadsafe_function(p->tsfn, napi_tsfn_abort);
  }
  return handle;
}

/* ---- on the loop ------------------------------------------------------------------------------------------- */

/* libuv, found at run time in the hosting executable (node exports it; Bun and Deno do not). */
static struct {
  bool looked_up, ok;
  int (*poll_init)(uv_loop_t *, uv_poll_t *, int);
  int (*poll_start)(uv_poll_t *, int, uv_poll_cb);
  int (*poll_stop)(uv_poll_t *);
  void (*close)(uv_handle_t *, uv_close_cb);
} vfs_uv;

static bool vfs_uv_available(void) {
  if (!vfs_uv.looked_up) {
    vfs_uv.looked_up = true;
    vfs_uv.poll_init = (int (*)(uv_loop_t *, uv_poll_t *, int))dlsym(RTLD_DEFAULT, "uv_poll_init");
    vfs_uv.poll_start = (int (*)(uv_poll_t *, int, uv_poll_cb))dlsym(RTLD_DEFAULT, "uv_poll_start");
    vfs_uv.poll_stop = (int (*)(uv_poll_t *))dlsym(RTLD_DEFAULT, "uv_poll_stop");
    vfs_uv.close = (void (*)(uv_handle_t *, uv_close_cb))dlsym(RTLD_DEFAULT, "uv_close");
    vfs_uv.ok = vfs_uv.poll_init && vfs_uv.poll_start && vfs_uv.poll_stop && vfs_uv.close;
  }
  return vfs_uv.ok;
}

/* The loop says the epoll fd is readable: report every ready registration to JS, in one callback scope (so
 * promise jobs and nextTicks the handlers queue run once, after the batch, as after any I/O callback). */
static void vfs_poller_on_loop_ready(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  struct vfs_poller *p = handle->data;
  if (p == NULL || p->closed) return;
  struct epoll_event ev[VFS_POLLER_BATCH];
  int n = epoll_wait(p->epfd, ev, VFS_POLLER_BATCH, 0);
  if (n <= 0) return; /* EINTR, or nothing (a registration was removed meanwhile): the loop asks again */
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value resource, cb, undefined;
  napi_callback_scope cscope;
  bool ok = napi_get_reference_value(env, p->resource, &resource) == napi_ok &&
            napi_open_callback_scope(env, resource, p->async_context, &cscope) == napi_ok;
  if (ok) {
    ok = napi_get_reference_value(env, p->callback, &cb) == napi_ok && napi_get_undefined(env, &undefined) == napi_ok;
    for (int i = 0; ok && i < n && !p->closed; i++) {
      napi_value argv[2], exception;
      if (napi_create_int32(env, (int32_t)(uint32_t)ev[i].data.u64, &argv[0]) != napi_ok ||
          napi_create_uint32(env, ev[i].events, &argv[1]) != napi_ok)
        break;
      napi_status s = napi_call_function(env, undefined, cb, 2, argv, NULL);
      if (s == napi_pending_exception && napi_get_and_clear_last_exception(env, &exception) == napi_ok)
        vfs_poller_report(env, exception);
    }
    napi_close_callback_scope(env, cscope);
  }
  napi_close_handle_scope(env, scope);
}

/* The uv handle is closed (a loop iteration after uv_close): its reference on the state goes. */
static void vfs_poller_release_napi(struct vfs_poller *p) {
  if (p->napi_released) return;
  p->napi_released = true;
  napi_delete_reference(p->env, p->callback);
  napi_delete_reference(p->env, p->resource);
  napi_async_destroy(p->env, p->async_context);
}

/* Stops watching and closes the epoll fd now (uv_poll_stop takes it out of libuv's epoll set at once; callers
 * count fds). libuv finishes closing the handle a loop iteration later and then calls its close callback, which
 * is libc's free() on the handle's own allocation: not a function of this addon, because Node may unload the
 * addon (worker teardown) before that iteration runs. Then drops the loop's reference on the state. */
static void vfs_poller_loop_stop(struct vfs_poller *p) {
  if (p->stopped) return;
  p->stopped = true;
  vfs_uv.poll_stop(p->poll);
  close(p->epfd);
  p->epfd = -1;
  p->poll->data = NULL;
  vfs_uv.close((uv_handle_t *)p->poll, (uv_close_cb)(void (*)(void))free);
  p->poll = NULL;
  vfs_poller_release_napi(p);
  vfs_poller_unref(p);
}

/* Environment teardown without pollerClose: stop watching (the handle's finalizer drops the last ref). */
static void vfs_poller_env_cleanup(void *arg) {
  struct vfs_poller *p = arg;
  p->closed = true;
  vfs_poller_loop_stop(p);
}

VFS_FN(vfs_poller_create_on_loop) {
  VFS_ARGS(env, info, 1);
  if (!vfs_is_callback(env, argv[0], "pollerCreateOnLoop")) return NULL;
  uv_loop_t *loop = NULL;
  if (!vfs_uv_available() || napi_get_uv_event_loop(env, (struct uv_loop_s **)&loop) != napi_ok || loop == NULL)
    return vfs_int(env, -ENOSYS);

  struct vfs_poller *p = calloc(1, sizeof *p);
  if (p == NULL) return vfs_throw_errno(env, "pollerCreateOnLoop", ENOMEM);
  p->on_loop = true;
  p->env = env;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  p->stopfd = -1;
  if (p->epfd < 0) {
    int e = errno;
    free(p);
    return vfs_throw_errno(env, "pollerCreateOnLoop", e);
  }
  napi_value name, resource;
  p->poll = malloc(sizeof *p->poll);
  napi_status s = p->poll == NULL ? napi_generic_failure : napi_create_reference(env, argv[0], 1, &p->callback);
  if (s == napi_ok) s = napi_create_object(env, &resource);
  if (s == napi_ok) s = napi_create_reference(env, resource, 1, &p->resource);
  if (s == napi_ok) s = napi_create_string_utf8(env, "virtiofsd-ts poller", NAPI_AUTO_LENGTH, &name);
  if (s == napi_ok) s = napi_async_init(env, NULL, name, &p->async_context);
  int rc = s == napi_ok ? vfs_uv.poll_init(loop, p->poll, p->epfd) : 0;
  if (s != napi_ok || rc != 0) {
    if (p->async_context != NULL) napi_async_destroy(env, p->async_context);
    if (p->callback != NULL) napi_delete_reference(env, p->callback);
    if (p->resource != NULL) napi_delete_reference(env, p->resource);
    close(p->epfd);
    free(p->poll); /* never initialized as a handle (or init failed): plain memory */
    free(p);
    if (s != napi_ok) NAPI_CALL(env, s);
    return vfs_int(env, rc); /* a negative errno from libuv */
  }
  p->poll->data = p;
  p->refs = 2; /* the external + the loop's watch (dropped by vfs_poller_loop_stop) */
  rc = vfs_uv.poll_start(p->poll, UV_READABLE, vfs_poller_on_loop_ready);
  bool owned = false;
  napi_value handle = rc == 0 ? vfs_new_tagged(env, p, vfs_poller_external_finalize, &vfs_poller_tag, &owned) : NULL;
  napi_status hs = handle != NULL ? napi_add_env_cleanup_hook(env, vfs_poller_env_cleanup, p) : napi_ok;
  if (handle == NULL || hs != napi_ok) {
    p->closed = true;
    if (!owned) p->refs = 1; /* no external was made: only the loop's watch holds p */
    vfs_poller_loop_stop(p);
    if (hs != napi_ok) NAPI_CALL(env, hs);
    return rc != 0 ? vfs_int(env, rc) : NULL; /* rc == 0: vfs_new_tagged left an exception pending */
  }
  return handle;
}

/*
 * Stops libuv's idle-time metric on this thread's loop. With it on (Node turns it on for
 * performance.eventLoopUtilization), every wait of the loop is two epoll_pwait calls: one with timeout 0, then
 * the real one, so that idle time is measured apart from the I/O it waits for. A daemon woken once per request
 * pays that syscall on every request; nothing in it reads the metric.
 *
 * libuv has no call to turn the metric off. Its flag is bit UV_METRICS_IDLE_TIME of the first field (`unsigned
 * int flags`) of the struct `loop->internal_fields` points to, the layout of every libuv since 1.39 (where the
 * metric came). The bit is cleared only when that field holds exactly that bit: another value means a layout we
 * do not know, and it is left alone. 0 (turned off), 1 (it was off), -ENOSYS (no libuv, or one before 1.39 or
 * after 1.x), -EPROTO (a flags value we do not know). Node only: Bun's uv_* are stubs that abort, so callers
 * check the runtime first (as for pollerCreateOnLoop).
 */
VFS_FN(vfs_loop_idle_metric_off) {
  unsigned int (*version)(void) = (unsigned int (*)(void))dlsym(RTLD_DEFAULT, "uv_version");
  uv_loop_t *loop = NULL;
  if (version == NULL || !vfs_uv_available() ||
      napi_get_uv_event_loop(env, (struct uv_loop_s **)&loop) != napi_ok || loop == NULL)
    return vfs_int(env, -ENOSYS);
  unsigned int v = version();
  if ((v >> 16) != 1 || ((v >> 8) & 0xff) < 39 || loop->internal_fields == NULL) return vfs_int(env, -ENOSYS);
  unsigned int *flags = loop->internal_fields;
  if (*flags == 0) return vfs_int(env, 1);
  if (*flags != UV_METRICS_IDLE_TIME) return vfs_int(env, -EPROTO);
  *flags = 0;
  return vfs_int(env, 0);
}

/* The poller behind a handle argument (TypeError for anything else). NULL = exception pending. */
static struct vfs_poller *vfs_get_poller(napi_env env, napi_value v) {
  return vfs_get_tagged(env, v, &vfs_poller_tag, "a PollerHandle");
}

static napi_value vfs_poller_ctl(napi_env env, napi_callback_info info, int op) {
  VFS_ARGS(env, info, op == EPOLL_CTL_DEL ? 2 : 4);
  struct vfs_poller *p = vfs_get_poller(env, argv[0]);
  int32_t fd, token = 0;
  uint32_t events = 0;
  if (p == NULL || !vfs_get_i32(env, argv[1], &fd)) return NULL;
  if (op != EPOLL_CTL_DEL && (!vfs_get_i32(env, argv[2], &token) || !vfs_get_u32(env, argv[3], &events)))
    return NULL;
  if (p->closed) return vfs_int(env, -EBADF);
  /* One-shot unless the caller asked for an edge-triggered (persistent) registration. */
  uint32_t mode = (events & EPOLLET) != 0 ? 0 : EPOLLONESHOT;
  struct epoll_event ev = {.events = events | mode, .data.u64 = (uint32_t)token};
  return vfs_result(env, epoll_ctl(p->epfd, op, fd, &ev));
}

VFS_FN(vfs_poller_add) { return vfs_poller_ctl(env, info, EPOLL_CTL_ADD); }

VFS_FN(vfs_poller_rearm) { return vfs_poller_ctl(env, info, EPOLL_CTL_MOD); }

VFS_FN(vfs_poller_remove) { return vfs_poller_ctl(env, info, EPOLL_CTL_DEL); }

VFS_FN(vfs_poller_close) {
  VFS_ARGS(env, info, 1);
  struct vfs_poller *p = vfs_get_poller(env, argv[0]);
  if (p == NULL) return NULL;
  if (!p->closed && p->on_loop) {
    p->closed = true;
    napi_remove_env_cleanup_hook(env, vfs_poller_env_cleanup, p);
    vfs_poller_loop_stop(p); /* the epoll fd closes now, the uv handle a loop iteration later */
  } else if (!p->closed) {
    p->closed = true;
    vfs_poller_stop(p);
    /* abort: queued events are dropped and the loop is no longer kept alive by this poller */
    NAPI_CALL(env, napi_release_threadsafe_function(p->tsfn, napi_tsfn_abort));
  }
  napi_value undefined;
  NAPI_CALL(env, napi_get_undefined(env, &undefined));
  return undefined;
}

/* ---- raw epoll (blocking; for worker threads) ---------------------------------------------------------- */

VFS_FN(vfs_epoll_create) {
  (void)info;
  return vfs_result(env, epoll_create1(EPOLL_CLOEXEC));
}

VFS_FN(vfs_epoll_ctl) {
  VFS_ARGS(env, info, 5);
  int32_t epfd, op, fd, token;
  uint32_t events;
  if (!vfs_get_i32(env, argv[0], &epfd) || !vfs_get_i32(env, argv[1], &op)) return NULL;
  if (!vfs_get_i32(env, argv[2], &fd) || !vfs_get_u32(env, argv[3], &events)) return NULL;
  if (!vfs_get_i32(env, argv[4], &token)) return NULL;
  struct epoll_event ev = {.events = events, .data.u64 = 0};
  ev.data.u32 = (uint32_t)token;
  return vfs_result(env, epoll_ctl(epfd, op, fd, &ev));
}

VFS_FN(vfs_epoll_wait) {
  VFS_ARGS(env, info, 3);
  int32_t epfd, timeout, *out;
  size_t count;
  if (!vfs_get_i32(env, argv[0], &epfd) || !vfs_get_int32_array(env, argv[1], &out, &count)) return NULL;
  if (!vfs_get_i32(env, argv[2], &timeout)) return NULL;
  size_t max = count / 2;
  if (max == 0) return vfs_int(env, -EINVAL);
  if (max > VFS_EPOLL_WAIT_MAX) max = VFS_EPOLL_WAIT_MAX;
  struct epoll_event ev[VFS_EPOLL_WAIT_MAX];
  /* No EINTR retry: the caller decides (it may want to look at a stop flag). */
  int n = epoll_wait(epfd, ev, (int)max, timeout);
  if (n < 0) return vfs_errno(env);
  for (int i = 0; i < n; i++) {
    out[2 * i] = (int32_t)ev[i].data.u32;
    out[2 * i + 1] = (int32_t)ev[i].events;
  }
  return vfs_int(env, n);
}

/* ---- a clock for polling windows ------------------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in µs, modulo 2^30: always a small integer in V8 (no heap number is made per reading, unlike
 * performance.now()), so a spinning loop allocates nothing. Wraps every ~18 minutes: callers compare
 * differences modulo 2^30. */
VFS_FN(vfs_clock_us) {
  (void)info;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  return vfs_int(env, (int32_t)(us & 0x3fffffff));
}
