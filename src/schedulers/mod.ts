/**
 * Noise schedulers matching diffusers v0.25.0: DDIM, PNDM (PLMS, SD v1.4's default), Euler and DPM-Solver++ 2M,
 * built from a diffusers `scheduler/scheduler_config.json`. Every step is one or two `lincomb` dispatches on the GPU
 * with coefficients computed on the CPU; see docs/schedulers.md for each step's coefficients.
 *
 * ```ts ignore
 * const sched = createScheduler(parseSchedulerConfig(text, "scheduler/scheduler_config.json"));
 * const timesteps = sched.setTimesteps(50);
 * let x = scale(rec, noise, sched.initNoiseSigma); // latents ~ N(0, σ_init²)
 * for (let i = 0; i < timesteps.length; i++) {
 *   const eps = unet(rec, sched.scaleModelInput(rec, x, i), timesteps[i], text);
 *   x = sched.step(rec, eps, i, x);
 * }
 * ```
 * @module
 */
import type { NoiseScheduler } from "./base.ts";
import type { RawSchedulerConfig } from "./config.ts";
import { DDIMScheduler } from "./ddim.ts";
import { DPMSolverMultistepScheduler } from "./dpm_solver.ts";
import { EulerDiscreteScheduler } from "./euler.ts";
import { PNDMScheduler } from "./pndm.ts";

export * from "./base.ts";
export * from "./config.ts";
export * from "./ddim.ts";
export * from "./dpm_solver.ts";
export * from "./euler.ts";
export * from "./pndm.ts";

/** Scheduler classes by diffusers' `_class_name`. */
export const SCHEDULER_CLASSES: Readonly<
  Record<string, new (raw: RawSchedulerConfig, source?: string) => NoiseScheduler>
> = {
  DDIMScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  DPMSolverMultistepScheduler,
};

/**
 * The scheduler a diffusers config describes: `_class_name` picks the class, missing fields take that class's
 * diffusers defaults, and unknown fields are ignored (as diffusers does, so one config can build any class:
 * `createScheduler({ ...config, _class_name: "DDIMScheduler" })`). Throws naming `source` and the field for an
 * unknown class or a value diffscope does not implement.
 */
export function createScheduler(config: RawSchedulerConfig, source?: string): NoiseScheduler {
  const name = config._class_name;
  const Ctor = typeof name === "string" && Object.hasOwn(SCHEDULER_CLASSES, name) ? SCHEDULER_CLASSES[name] : null;
  if (!Ctor) {
    const where = source ? ` (${source})` : "";
    throw new RangeError(
      `Cannot create a scheduler${where}: _class_name ${JSON.stringify(name)} is not supported ` +
        `(supported: ${Object.keys(SCHEDULER_CLASSES).join(", ")})`,
    );
  }
  return new Ctor(config, source);
}
