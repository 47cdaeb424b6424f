/**
 * Waiting in tests: for an event or a condition, never for a guessed duration. A time budget here is only the
 * outer limit after which the wait gives up (and the test fails saying what it waited for).
 */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `everyMs` until it holds (true) or `timeoutMs` passed (false). */
export async function until(cond: () => boolean, timeoutMs = 5000, everyMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** Like until(), but throws `what` when the time budget runs out. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10000, everyMs = 10): Promise<void> {
  if (!(await until(cond, timeoutMs, everyMs))) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** `p`, or a rejection naming `what` when it has not settled within `timeoutMs`. */
export async function within<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
