/**
 * What `diffscope info` reports: the adapter, the limits that matter for diffusion models, features, and the
 * kernel self-check. Runtime-agnostic.
 * @module
 */
import type { GpuContext } from "./gpu/context.ts";
import { type CheckResult, selfCheck } from "./selfcheck.ts";

/** Limits diffscope's kernels and loaders depend on. */
const LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupsPerDimension",
  "minUniformBufferOffsetAlignment",
] as const;

/** The device report. */
export interface DeviceInfo {
  adapter: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean };
  limits: Record<(typeof LIMITS)[number], number>;
  features: string[];
  f16: boolean;
  selfCheck: CheckResult[];
}

/** Gathers the device report and runs the kernel self-check. */
export async function deviceInfo(ctx: GpuContext): Promise<DeviceInfo> {
  const i = ctx.adapter.info;
  const limits = {} as DeviceInfo["limits"];
  for (const k of LIMITS) limits[k] = ctx.limits[k];
  return {
    adapter: {
      vendor: i.vendor,
      architecture: i.architecture,
      device: i.device,
      description: i.description,
      isFallbackAdapter: (i as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    },
    limits,
    features: [...ctx.device.features].sort(),
    f16: ctx.hasF16,
    selfCheck: await selfCheck(ctx),
  };
}
