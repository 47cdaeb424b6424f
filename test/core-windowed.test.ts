/**
 * test/core.test.ts again with guest RAM reached through a window of 2 slots (CORE_WINDOW_SLOTS): every test region
 * is a memfd the core maps chunk by chunk on demand, so eviction and ring pinning run under the whole suite.
 */
process.env.CORE_WINDOW_SLOTS ??= '2';
await import('./core.test.js');
