// The harness's progress lines, and the rounding of its figures.
const began = performance.now();

/** A progress line, stamped with the seconds since the harness started. */
export const log = (message: string) => process.stdout.write(`[bench ${((performance.now() - began) / 1000).toFixed(1).padStart(5)}s] ${message}\n`);

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;
