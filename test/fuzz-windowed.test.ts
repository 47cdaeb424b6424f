/**
 * test/fuzz.test.ts again with guest RAM reached through a window of 2 slots (CORE_WINDOW_SLOTS): the ring/codec
 * model's whole-memory oracle then also covers window eviction and ring pinning.
 */
process.env.CORE_WINDOW_SLOTS ??= '2';
await import('./fuzz.test.js');
