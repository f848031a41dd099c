import assert from "assert";
import { globToRegExp, selectNames } from "../src/autodiff/select.ts";

Deno.test("parameter globs: * crosses dots, ? is one character, lists are comma-separated", () => {
  const names = [
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.bias",
    "mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    "conv_in.weight",
  ];
  assert.deepEqual(selectNames(names, "*.ff.net.*.weight"), [names[0], names[2]]);
  assert.deepEqual(selectNames(names, "*attn2.to_?.weight, conv_in.*"), [names[3], names[4]]);
  assert.deepEqual(selectNames(names, (n) => n.endsWith(".bias")), [names[1]]);
  assert.ok(!globToRegExp("conv_in.weight").test("conv_inXweight")); // dots are literal
  assert.throws(() => selectNames(names, "*.nothing"), /no parameter matches "\*\.nothing"/);
});
