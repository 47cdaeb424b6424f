/**
 * test/fuzz.test.ts again with guest RAM reached through a window (CORE_WINDOW_SLOTS): the ring/codec model's
 * whole-memory oracle then also covers windowed translation, segments by guest address and ring pinning. 4 slots:
 * the fuzzer may put desc, avail and used in three regions (three pinned slots), and the model knows nothing of
 * the window, so one slot must stay free (with 2, a case whose rings pin both slots ends as a bad chain where the
 * model expects a bad message: the documented no-slot path). Eviction under load is covered by core-windowed (2
 * slots), guest-memory-window (2 and 1) and the alloc test (2).
 */
process.env.CORE_WINDOW_SLOTS ??= '4';
await import('./fuzz.test.js');
