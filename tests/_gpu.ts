/**
 * Shared test plumbing: one GPU context per test file, visible skips when there is no adapter (failures in CI),
 * and a one-line closeness assertion that names what was compared.
 */
import { createContext, type GpuContext, NoAdapterError } from "../src/gpu/mod.ts";
import { relL2 } from "../src/ref/compare.ts";

async function acquire(): Promise<GpuContext | null> {
  try {
    return await createContext();
  } catch (e) {
    if (e instanceof NoAdapterError && Deno.env.get("CI") !== "true") {
      console.warn(`%cSKIPPING GPU tests: ${e.message}`, "color: yellow");
      return null;
    }
    throw e;
  }
}

/** The context shared by every test of this process, or null when no adapter exists (outside CI). */
export const testCtx: GpuContext | null = await acquire();

/** A test that needs the GPU; reported as ignored (not passed) when there is no adapter outside CI. */
export function gpuTest(name: string, fn: (ctx: GpuContext) => Promise<void> | void): void {
  Deno.test({
    name,
    ignore: testCtx === null,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => fn(testCtx!),
  });
}

/** Asserts relative L2 error below `tol`, with the measured error and the subject in the message. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): number {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  const err = relL2(got, want);
  if (!(err < tol)) throw new Error(`${what}: relative L2 error ${err.toExponential(3)} ≥ ${tol}`);
  return err;
}
