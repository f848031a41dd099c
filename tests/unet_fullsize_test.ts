/** The full-size SD v1.4 U-Net built from its key/shape list with random weights, checked without running it. */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { parseUNetConfig } from "../src/models/unet/config.ts";
import { randomUNet } from "../src/models/unet/random.ts";
import { numel } from "../src/gpu/tensor.ts";

const sd14 = JSON.parse(await Deno.readTextFile(new URL("../../shared/fixtures/sd14/sd14-unet.json", import.meta.url)));

gpuTest(
  "SD v1.4 U-Net at full size: 686 tensors, 859,520,964 parameters, every one within a storage binding",
  async (ctx) => {
    const before = ctx.memory.current;
    const unet = await randomUNet(ctx, parseUNetConfig(sd14.config, "sd14-unet.json"), 1);
    try {
      const want = sd14.state_dict_shapes as Record<string, number[]>;
      assert.equal(unet.params.size, Object.keys(want).length);
      let n = 0, largest = 0;
      for (const [name, t] of unet.params) {
        assert.deepEqual(t.shape, want[name], name);
        n += numel(t.shape);
        largest = Math.max(largest, t.buffer.size);
      }
      assert.equal(n, 859_520_964);
      assert.ok(largest <= ctx.limits.maxStorageBufferBindingSize, `largest weight ${largest} B`);
      assert.ok(ctx.memory.current - before >= n * 4);
      // spot-check the random init: a conv weight has the N(0, 1/fan_in) scale, norms are 1
      const w = await ctx.readF32(unet.params.get("up_blocks.0.resnets.0.conv1.weight")!);
      const sd = Math.sqrt(w.reduce((a, b) => a + b * b, 0) / w.length);
      assert.ok(Math.abs(sd - 1 / Math.sqrt(2560 * 9)) < 1e-4, `std ${sd}`);
      assert.ok((await ctx.readF32(unet.params.get("mid_block.attentions.0.norm.weight")!)).every((v) => v === 1));
    } finally {
      unet.release();
    }
    assert.equal(ctx.memory.current, before);
  },
);
