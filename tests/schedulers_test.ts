import { assertClose, gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import {
  createScheduler,
  DPMSolverMultistepScheduler,
  EulerDiscreteScheduler,
  type NoiseScheduler,
  parseSchedulerConfig,
  type RawSchedulerConfig,
} from "../src/schedulers/mod.ts";
import type { Tensor } from "../src/gpu/tensor.ts";
import { randn } from "../src/ref/random.ts";
import { relL2 } from "../src/ref/compare.ts";
import assert from "assert";

const FIXTURES = new URL("../../shared/fixtures/", import.meta.url);
const fixture = parseSchedulerConfig(
  await Deno.readTextFile(new URL("schedulers.json", FIXTURES)),
  "schedulers.json",
) as { schedulers: Record<string, { timesteps: number[]; init_noise_sigma: number; config: RawSchedulerConfig }> };
const CLASS_OF: Record<string, string> = {
  ddim: "DDIMScheduler",
  pndm: "PNDMScheduler",
  euler: "EulerDiscreteScheduler",
  dpmpp2m: "DPMSolverMultistepScheduler",
};
const TOL = 1e-5;

/** The σ schedule of an Euler or DPM-Solver scheduler. */
function sigmasOf(s: NoiseScheduler): Float64Array {
  if (s instanceof EulerDiscreteScheduler || s instanceof DPMSolverMultistepScheduler) return s.sigmas;
  throw new Error(`${s.className} has no sigmas`);
}

function fromFixture(name: string): NoiseScheduler {
  const { config } = fixture.schedulers[name];
  return createScheduler({ ...config, _class_name: CLASS_OF[name.split("_")[0]] }, `schedulers.json ${name}`);
}

for (const name of Object.keys(fixture.schedulers)) {
  const ref = fixture.schedulers[name];
  Deno.test(`scheduler ${name}: timesteps and init_noise_sigma`, () => {
    const sched = fromFixture(name);
    const ts = sched.setTimesteps(+name.split("_")[1]);
    assert.equal(ts.length, ref.timesteps.length, "number of timesteps");
    ts.forEach((t, i) => {
      const want = ref.timesteps[i];
      assert.ok(Math.abs(t - want) <= 1e-4 * Math.max(1, Math.abs(want)), `timestep ${i}: ${t} vs ${want}`);
    });
    assert.ok(
      Math.abs(sched.initNoiseSigma / ref.init_noise_sigma - 1) < 1e-6,
      `init_noise_sigma ${sched.initNoiseSigma}`,
    );
  });

  // The fixture's loop: model_input = scale_model_input(x, t_i); x = step(eps_i, t_i, x), from x_init, with our own
  // x fed forward. Everything is recorded once and submitted once (scheduler state lives on the GPU throughout).
  gpuTest(`scheduler ${name}: every step's model_input and prev match diffusers`, async (ctx) => {
    await using st = await openSafetensorsFile(new URL("schedulers.safetensors", FIXTURES));
    const sched = fromFixture(name);
    const n = sched.setTimesteps(+name.split("_")[1]).length;
    const shape = st.info(`${name}/x_init`).shape;
    const rec = ctx.recorder();
    const owned: Tensor[] = [];
    const track = (t: Tensor) => (owned.push(t), t);
    let x = track(ctx.upload(await st.readF32(`${name}/x_init`), shape, "f32", "x_init"));
    const outs: [Tensor, Tensor][] = [];
    for (let i = 0; i < n; i++) {
      const input = sched.scaleModelInput(rec, x, i);
      if (input !== x) track(input);
      const eps = track(ctx.upload(await st.readF32(`${name}/eps/${i}`), shape, "f32", `eps/${i}`));
      x = track(sched.step(rec, eps, i, x));
      outs.push([input, x]);
    }
    await rec.submit();
    const errs = { input: 0, prev: 0 };
    for (let i = 0; i < n; i++) {
      const [input, prev] = outs[i];
      for (const [kind, t] of [["model_input", input], ["prev", prev]] as const) {
        const e = assertClose(
          await ctx.readF32(t),
          await st.readF32(`${name}/${kind}/${i}`),
          TOL,
          `${name} ${kind}/${i}`,
        );
        const key = kind === "prev" ? "prev" : "input";
        errs[key] = Math.max(errs[key], e);
      }
    }
    const last = relL2(await ctx.readF32(x), await st.readF32(`${name}/prev/${n - 1}`));
    console.log(
      `  ${name}: max rel L2 model_input ${errs.input.toExponential(2)}, prev ${errs.prev.toExponential(2)}, ` +
        `final ${last.toExponential(2)}`,
    );
    sched.reset();
    ctx.release(...owned);
  });
}

gpuTest("scheduler state is freed by reset()", async (ctx) => {
  for (const name of ["pndm_20", "dpmpp2m_20"]) {
    const sched = fromFixture(name);
    sched.setTimesteps(20);
    const before = ctx.memory.current;
    const x = ctx.upload(randn(64, 1), [1, 4, 4, 4]), eps = ctx.upload(randn(64, 2), [1, 4, 4, 4]);
    let cur = x;
    for (let i = 0; i < 6; i++) {
      const rec = ctx.recorder();
      const next = sched.step(rec, eps, i, cur);
      await rec.submit();
      if (cur !== x) ctx.release(cur);
      cur = next;
    }
    ctx.release(cur, x, eps);
    assert.ok(ctx.memory.current > before, `${name} holds state between steps`);
    sched.reset();
    assert.equal(ctx.memory.current, before, `${name} frees its state on reset()`);
  }
});

// A prediction that is consistent with the sample (x_t = α·x₀ + σ·ε, the model giving exactly ε or v = α·ε − σ·x₀)
// must land exactly on α'·x₀ + σ'·ε for DDIM, Euler (in its scaled space) and DPM-Solver++: a check of the
// v-prediction coefficients, which the fixture does not cover.
for (const cls of ["DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]) {
  for (const prediction_type of ["epsilon", "v_prediction"]) {
    gpuTest(`${cls} ${prediction_type}: consistent predictions land on the forward process`, async (ctx) => {
      const base =
        fixture.schedulers[cls === "DDIMScheduler" ? "ddim_20" : cls.startsWith("Euler") ? "euler_20" : "dpmpp2m_20"];
      const sched = createScheduler({ ...base.config, _class_name: cls, prediction_type });
      const ts = sched.setTimesteps(10);
      const x0 = randn(96, 3), eps = randn(96, 4);
      const ac = sched.alphasCumprod;
      // Noise level (α, σ) of step i and the sample's scale in the scheduler's own space.
      const level = (i: number): [number, number, number] => {
        if (cls.startsWith("Euler")) {
          const s = sigmasOf(sched)[i];
          const a = 1 / Math.sqrt(s * s + 1);
          return [a, s * a, 1 / a];
        }
        if (cls.startsWith("DPM")) {
          const s = sigmasOf(sched)[i];
          const a = 1 / Math.sqrt(s * s + 1);
          return [a, s * a, 1];
        }
        const t = i < ts.length ? ts[i] : 0; // DDIM, leading: the next timestep is t − ⌊N/n⌋
        return [Math.sqrt(ac[t]), Math.sqrt(1 - ac[t]), 1];
      };
      const at = (i: number) => {
        const [a, s, k] = level(i);
        return Float32Array.from(x0, (v, j) => k * (a * v + s * eps[j]));
      };
      const x = ctx.upload(at(0), [96]);
      let cur = x;
      const owned = [x];
      for (let i = 0; i < 3; i++) {
        const [a, s] = level(i);
        const out = prediction_type === "epsilon" ? eps : Float32Array.from(eps, (e, j) => a * e - s * x0[j]);
        const rec = ctx.recorder();
        const m = ctx.upload(out, [96]);
        cur = sched.step(rec, m, i, cur);
        owned.push(m, cur);
        await rec.submit();
        assertClose(await ctx.readF32(cur), at(i + 1), 2e-6, `${cls} ${prediction_type} step ${i}`);
      }
      sched.reset();
      ctx.release(...owned);
    });
  }
}

gpuTest("addNoise matches √ᾱ·x + √(1−ᾱ)·ε (and x + σ·ε for Euler)", async (ctx) => {
  const x = randn(300, 5), e = randn(300, 6);
  const tx = ctx.upload(x, [3, 10, 10]), te = ctx.upload(e, [3, 10, 10]);
  for (const name of ["ddim_20", "pndm_20", "dpmpp2m_20", "euler_20"]) {
    const sched = fromFixture(name);
    const ts = sched.setTimesteps(20);
    for (const t of [ts[0], ts[7], ts[19]]) {
      const rec = ctx.recorder();
      const noisy = sched.addNoise(rec, tx, te, t);
      await rec.submit();
      let want: Float32Array;
      if (name.startsWith("euler")) {
        const s = sigmasOf(sched)[ts.indexOf(t)];
        want = Float32Array.from(x, (v, j) => v + s * e[j]);
      } else {
        const a = sched.alphasCumprod[t];
        want = Float32Array.from(x, (v, j) => Math.sqrt(a) * v + Math.sqrt(1 - a) * e[j]);
      }
      assertClose(await ctx.readF32(noisy), want, 1e-6, `${name} addNoise t=${t}`);
      ctx.release(noisy);
    }
  }
  ctx.release(tx, te);
});

Deno.test("alphasCumprod reproduces diffusers' float32 schedule (σ_max of SD v1 = 14.6146)", () => {
  const sched = fromFixture("euler_20");
  const a = sched.alphasCumprod;
  assert.equal(a.length, 1000);
  const sigmaMax = Math.sqrt((1 - a[999]) / a[999]);
  assert.ok(Math.abs(sigmaMax / 14.614645004272461 - 1) < 1e-6, `σ_max ${sigmaMax}`);
  assert.ok(Math.abs(a[0] - (1 - 0.00085)) < 1e-7, `ᾱ₀ ${a[0]}`);
});

Deno.test("createScheduler rejects unknown classes and unsupported values, naming the field", () => {
  const base = fixture.schedulers.ddim_20.config;
  const ddim = { ...base, _class_name: "DDIMScheduler" };
  assert.throws(
    () => createScheduler({ ...base, _class_name: "LMSDiscreteScheduler" }, "scheduler/scheduler_config.json"),
    /scheduler\/scheduler_config\.json.*_class_name "LMSDiscreteScheduler" is not supported/,
  );
  assert.throws(
    () => createScheduler({ ...ddim, prediction_type: "sample" }),
    /DDIMScheduler: prediction_type "sample"/,
  );
  assert.throws(() => createScheduler({ ...ddim, thresholding: true }), /thresholding true is not supported/);
  assert.throws(() => createScheduler({ ...ddim, timestep_spacing: "karras" }), /timestep_spacing "karras"/);
  assert.throws(() => createScheduler({ ...ddim, clip_sample: undefined }), /clip_sample true is not supported/);
  assert.throws(() => createScheduler({ ...ddim, steps_offset: "1" }), TypeError);
  assert.throws(
    () =>
      createScheduler({ ...fixture.schedulers.pndm_20.config, _class_name: "PNDMScheduler", skip_prk_steps: false }),
    /PNDMScheduler: skip_prk_steps false/,
  );
  const dpm = { ...fixture.schedulers.dpmpp2m_20.config, _class_name: "DPMSolverMultistepScheduler" };
  assert.throws(() => createScheduler({ ...dpm, algorithm_type: "sde-dpmsolver++" }), /algorithm_type/);
  assert.throws(() => createScheduler({ ...dpm, solver_order: 3 }), /solver_order 3 is not supported/);
  assert.throws(() => createScheduler({ ...dpm, use_karras_sigmas: true }), /use_karras_sigmas/);
  const euler = { ...fixture.schedulers.euler_20.config, _class_name: "EulerDiscreteScheduler" };
  assert.throws(() => createScheduler({ ...euler, interpolation_type: "log_linear" }), /interpolation_type/);
  // A PNDM config (SD v1.4's) builds a DDIM scheduler: unknown fields are ignored, as diffusers does.
  const sd14 = { ...fixture.schedulers.pndm_20.config, clip_sample: false, _class_name: "DDIMScheduler" };
  assert.deepEqual(Array.from(createScheduler(sd14).setTimesteps(5)), [801, 601, 401, 201, 1]);
});

Deno.test("parseSchedulerConfig reads Python's -Infinity/NaN and reports bad JSON with its source", () => {
  const c = parseSchedulerConfig('{"a": -Infinity, "b": [NaN, Infinity], "s": "NaN -Infinity \\" x"}');
  assert.equal(c.a, -Infinity);
  assert.ok(Number.isNaN((c.b as number[])[0]) && (c.b as number[])[1] === Infinity);
  assert.equal(c.s, 'NaN -Infinity " x');
  assert.throws(() => parseSchedulerConfig("{oops", "scheduler/scheduler_config.json"), /scheduler_config\.json/);
});

gpuTest("steps are checked: schedule set, index in range, multistep order kept, shapes equal", (ctx) => {
  const rec = ctx.recorder();
  const x = ctx.tensor([1, 4, 2, 2]), e = ctx.tensor([1, 4, 2, 2]), bad = ctx.tensor([1, 4, 2, 3]);
  const pndm = fromFixture("pndm_20");
  assert.throws(() => pndm.step(rec, e, 0, x), /call setTimesteps\(\) first/);
  pndm.setTimesteps(20);
  assert.throws(() => pndm.step(rec, e, 21, x), /stepIndex must be an integer in \[0, 21\), got 21/);
  assert.throws(() => pndm.step(rec, bad, 0, x), /\[1,4,2,3\] does not match expected \[1,4,2,2\]/);
  ctx.release(pndm.step(rec, e, 0, x));
  assert.throws(() => pndm.step(rec, e, 2, x), /step 2 after step 0/);
  assert.throws(() => pndm.setTimesteps(0), /numInferenceSteps must be an integer in \[1, 1000\]/);
  pndm.reset();
  ctx.release(x, e, bad);
});

Deno.test("timestep spacings match diffusers (NumPy's half-to-even rounding included)", () => {
  // Reference lists computed with diffusers' NumPy expressions for N = 1000, n = 16.
  const trailing = [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61];
  const cases: [string, string, number[]][] = [
    ["DDIMScheduler", "linspace", [999, 932, 866, 799, 733, 666, 599, 533, 466, 400, 333, 266, 200, 133, 67, 0]],
    ["DDIMScheduler", "trailing", trailing],
    ["PNDMScheduler", "trailing", [999, 937, ...trailing.slice(1)]],
    ["DPMSolverMultistepScheduler", "leading", [
      929,
      871,
      813,
      755,
      697,
      639,
      581,
      523,
      465,
      407,
      349,
      291,
      233,
      175,
      117,
      59,
    ]],
    ["DPMSolverMultistepScheduler", "trailing", trailing],
    ["DPMSolverMultistepScheduler", "linspace", [
      999,
      937,
      874,
      812,
      749,
      687,
      624,
      562,
      500,
      437,
      375,
      312,
      250,
      187,
      125,
      62,
    ]],
    ["EulerDiscreteScheduler", "trailing", trailing],
  ];
  const base = fixture.schedulers.pndm_20.config;
  for (const [cls, spacing, want] of cases) {
    const sched = createScheduler({ ...base, clip_sample: false, _class_name: cls, timestep_spacing: spacing });
    assert.deepEqual(Array.from(sched.setTimesteps(16)), want, `${cls} ${spacing}`);
  }
  const euler = createScheduler({ ...base, _class_name: "EulerDiscreteScheduler", timestep_spacing: "leading" });
  assert.deepEqual(Array.from(euler.setTimesteps(4)), [751, 501, 251, 1]);
  assert.ok(
    Math.abs(euler.initNoiseSigma - Math.sqrt(1 + (1 - euler.alphasCumprod[751]) / euler.alphasCumprod[751])) < 1e-5,
  );
});
