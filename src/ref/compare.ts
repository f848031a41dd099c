/**
 * Tensor comparisons used by tests, the CLI self-check and parity reports.
 * @module
 */

/** ‖a − b‖₂ / ‖b‖₂ over whole arrays (b is the reference). Returns ‖a − b‖₂ when ‖b‖₂ is 0. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`relL2: lengths differ (${a.length} vs ${b.length})`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (Number.isNaN(num)) return NaN;
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** ‖a − b‖₂ / `norm`: for references whose own norm is (near) zero. */
export function absL2(a: ArrayLike<number>, b: ArrayLike<number>, norm = 1): number {
  let num = 0;
  for (let i = 0; i < a.length; i++) num += (a[i] - b[i]) ** 2;
  return Math.sqrt(num) / norm;
}

/** ‖a‖₂. */
export function l2(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}
