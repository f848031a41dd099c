/**
 * The ops models are written with. Without a tape (or when no input depends on a watched tensor) each is the plain
 * forward op; with one, the op also records a {@linkcode GradNode} whose backward calls the op's backward kernel
 * and saves exactly what that kernel reads. The derivative rules live here, one short method each.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, reshape, type Tensor } from "../gpu/tensor.ts";
import { attention, attentionBackward } from "../ops/attention.ts";
import { axpy } from "../ops/axpy.ts";
import { add as addOp, binaryBackward } from "../ops/binary.ts";
import { concat as concatOp, concatBackward } from "../ops/concat.ts";
import { conv2d as conv2dOp, type Conv2dOptions } from "../ops/conv2d.ts";
import { conv2dBackward } from "../ops/conv2d_bwd.ts";
import { embedding as embeddingOp, embeddingBackward, type HostIds } from "../ops/embedding.ts";
import { geglu as gegluOp, gegluBackward } from "../ops/geglu.ts";
import { groupNorm as groupNormOp, groupNormBackward } from "../ops/group_norm.ts";
import { layerNorm as layerNormOp, layerNormBackward } from "../ops/layer_norm.ts";
import { type Activation, matmul } from "../ops/matmul.ts";
import { permute as permuteOp, permuteBackward } from "../ops/permute.ts";
import { sum } from "../ops/reduce.ts";
import { scale as scaleOp, silu as siluOp, unary, unaryBackward } from "../ops/unary.ts";
import { upsampleNearest, upsampleNearestBackward } from "../ops/upsample.ts";
import type { Tape } from "./tape.ts";

/** Elementwise ops whose derivative needs only their input. */
type Pointwise = "silu" | "gelu" | "quickGelu";
/** The unary op of each fused matmul activation. */
const ACT_OPS: Record<Exclude<Activation, "none">, Pointwise> = { silu: "silu", gelu: "gelu", quick_gelu: "quickGelu" };

/** Forward ops that record their derivatives on an optional tape. */
export class DiffOps {
  constructor(readonly rec: Recorder, readonly tape?: Tape) {}

  /** True when recording (some input of the op depends on a watched tensor). */
  #on(...xs: (Tensor | undefined)[]): boolean {
    return !!this.tape && xs.some((x) => x && this.tape!.tracks(x));
  }

  /** True when the op's backward must keep intermediates: dead tensors may then not be recycled. */
  get recording(): boolean {
    return !!this.tape;
  }

  /** nn.Linear: `x [..., K] · Wᵀ + b` with W [N, K]. */
  linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
    const rec = this.rec;
    const y = matmul(rec, x, w, { transB: true, bias: b });
    if (this.#on(x, w, b)) {
      const K = w.shape[1], N = w.shape[0], rows = x.shape.slice(0, -1).reduce((a, c) => a * c, 1);
      this.tape!.record({
        op: "linear",
        inputs: b ? [x, w, b] : [x, w],
        outputs: [y],
        saved: [x, w],
        backward(rec, [dy], [dx, dw, db]) {
          const dy2 = reshape(dy!, [rows, N]);
          if (dx) { // dx += dy · W
            const t = matmul(rec, dy!, w);
            axpy(rec, dx, t);
            rec.recycle(t);
          }
          if (dw) { // dW += dyᵀ · x
            const t = matmul(rec, dy2, reshape(x, [rows, K]), { transA: true });
            axpy(rec, dw, t);
            rec.recycle(t);
          }
          if (db) { // db += Σ_rows dy
            const t = sum(rec, dy2, { axis: 0 });
            axpy(rec, db, t);
            rec.recycle(t);
          }
        },
      });
    }
    return y;
  }

  /** 2-D convolution (NCHW). */
  conv2d(x: Tensor, w: Tensor, opts: Pick<Conv2dOptions, "bias" | "stride" | "padding"> = {}): Tensor {
    const y = conv2dOp(this.rec, x, w, opts);
    if (this.#on(x, w, opts.bias)) {
      const { stride, padding } = opts;
      this.tape!.record({
        op: "conv2d",
        inputs: opts.bias ? [x, w, opts.bias] : [x, w],
        outputs: [y],
        saved: [x, w],
        backward(rec, [dy], [dx, dw, dbias]) {
          conv2dBackward(rec, { x, w, dout: dy! }, { stride, padding, dx, dw, dbias });
        },
      });
    }
    return y;
  }

  /** GroupNorm with an optional fused SiLU. */
  groupNorm(
    x: Tensor,
    o: { weight: Tensor; bias: Tensor; groups: number; eps: number; silu?: boolean },
  ): Tensor {
    if (!this.#on(x, o.weight, o.bias)) return groupNormOp(this.rec, x, o);
    const stats = this.rec.alloc([x.shape[0], o.groups, 2], "f32", "group_norm.stats");
    const y = groupNormOp(this.rec, x, { ...o, stats });
    this.tape!.record({
      op: "group_norm",
      inputs: [x, o.weight, o.bias],
      outputs: [y],
      saved: [x, stats, o.weight, o.bias],
      backward(rec, [dy], [dx, dweight, dbias]) {
        groupNormBackward(rec, { x, dout: dy!, stats, weight: o.weight }, {
          groups: o.groups,
          eps: o.eps,
          silu: o.silu,
          bias: o.bias,
          dx,
          dweight,
          dbias,
        });
      },
    });
    return y;
  }

  /** LayerNorm over the last dimension. */
  layerNorm(x: Tensor, o: { weight: Tensor; bias: Tensor; eps: number }): Tensor {
    if (!this.#on(x, o.weight, o.bias)) return layerNormOp(this.rec, x, o);
    const rows = x.shape.slice(0, -1);
    const stats = this.rec.alloc([...rows, 2], "f32", "layer_norm.stats");
    const y = layerNormOp(this.rec, x, { ...o, stats });
    this.tape!.record({
      op: "layer_norm",
      inputs: [x, o.weight, o.bias],
      outputs: [y],
      saved: [x, stats, o.weight],
      backward(rec, [dy], [dx, dweight, dbias]) {
        layerNormBackward(rec, { x, dout: dy!, stats, weight: o.weight }, { eps: o.eps, dx, dweight, dbias });
      },
    });
    return y;
  }

  /** Multi-head scaled dot-product attention on [B, tokens, heads·d]. */
  attention(q: Tensor, k: Tensor, v: Tensor, o: { heads: number; causal?: boolean; scale?: number }): Tensor {
    if (!this.#on(q, k, v)) return attention(this.rec, { q, k, v }, o);
    const { out, lse } = attention(this.rec, { q, k, v }, { ...o, saveLse: true });
    this.tape!.record({
      op: "attention",
      inputs: [q, k, v],
      outputs: [out],
      saved: [q, k, v, out, lse],
      backward(rec, [dy], [dq, dk, dv]) {
        attentionBackward(rec, { q, k, v, o: out, lse, dout: dy! }, { ...o, dq, dk, dv });
      },
    });
    return out;
  }

  /** GEGLU: h · gelu(g) over the two halves of the last dimension. */
  geglu(x: Tensor): Tensor {
    const y = gegluOp(this.rec, x);
    if (this.#on(x)) {
      this.tape!.record({
        op: "geglu",
        inputs: [x],
        outputs: [y],
        saved: [x],
        backward: (rec, [dy], [dx]) => void gegluBackward(rec, { x, dy: dy! }, { dx }),
      });
    }
    return y;
  }

  /** SiLU. */
  silu(x: Tensor): Tensor {
    const y = siluOp(this.rec, x);
    if (this.#on(x)) {
      this.tape!.record({
        op: "silu",
        inputs: [x],
        outputs: [y],
        saved: [x],
        backward: (rec, [dy], [dx]) => void unaryBackward(rec, "silu", { x, dy: dy! }, { dx }),
      });
    }
    return y;
  }

  /** alpha · x + beta. */
  scale(x: Tensor, alpha: number, beta = 0): Tensor {
    const y = scaleOp(this.rec, x, { alpha, beta });
    if (this.#on(x)) {
      this.tape!.record({
        op: "scale",
        inputs: [x],
        outputs: [y],
        saved: [],
        backward: (rec, [dy], [dx]) => void unaryBackward(rec, "scale", { dy: dy! }, { dx, alpha }),
      });
    }
    return y;
  }

  /** a + b with broadcasting. */
  add(a: Tensor, b: Tensor): Tensor {
    const y = addOp(this.rec, a, b);
    if (this.#on(a, b)) {
      this.tape!.record({
        op: "add",
        inputs: [a, b],
        outputs: [y],
        saved: [a, b], // bound (not read) by the backward kernel: keep them alive
        backward: (rec, [dy], [da, db]) => void binaryBackward(rec, "add", { dy: dy!, a, b }, { da, db }),
      });
    }
    return y;
  }

  /** Permutes dimensions. */
  permute(x: Tensor, perm: readonly number[]): Tensor {
    const y = permuteOp(this.rec, x, perm);
    if (this.#on(x)) {
      this.tape!.record({
        op: "permute",
        inputs: [x],
        outputs: [y],
        saved: [],
        backward: (rec, [dy], [dx]) => void permuteBackward(rec, dy!, perm, { dx }),
      });
    }
    return y;
  }

  /** Concatenation along `axis`. */
  concat(xs: Tensor[], axis: number): Tensor {
    const y = concatOp(this.rec, xs, { axis });
    if (this.#on(...xs)) {
      const sizes = xs.map((x) => x.shape[axis]);
      this.tape!.record({
        op: "concat",
        inputs: xs,
        outputs: [y],
        saved: [],
        backward: (rec, [dy], dxs) => void concatBackward(rec, dy!, { dxs: dxs.map((d) => d ?? null), sizes, axis }),
      });
    }
    return y;
  }

  /** Nearest-neighbour 2× upsampling (NCHW). */
  upsample2x(x: Tensor): Tensor {
    const y = upsampleNearest(this.rec, x);
    if (this.#on(x)) {
      this.tape!.record({
        op: "upsample",
        inputs: [x],
        outputs: [y],
        saved: [],
        backward: (rec, [dy], [dx]) => void upsampleNearestBackward(rec, dy!, { dx }),
      });
    }
    return y;
  }

  /**
   * nn.Linear followed by an activation: fused into the matmul's epilogue when not recording; when recording, the
   * linear and the activation are separate nodes (the activation's backward reads the pre-activation).
   */
  linearAct(x: Tensor, w: Tensor, b: Tensor | undefined, act: Activation): Tensor {
    if (act === "none") return this.linear(x, w, b);
    if (!this.#on(x, w, b)) return matmul(this.rec, x, w, { transB: true, bias: b, act });
    return this.activation(this.linear(x, w, b), act);
  }

  /** A matmul epilogue activation as its own op (`none` returns x). */
  activation(x: Tensor, act: Activation): Tensor {
    return act === "none" ? x : this.#unary(ACT_OPS[act], x);
  }

  /** Exact (erf) GELU. */
  gelu(x: Tensor): Tensor {
    return this.#unary("gelu", x);
  }

  /** QuickGELU, x·σ(1.702x) (CLIP). */
  quickGelu(x: Tensor): Tensor {
    return this.#unary("quickGelu", x);
  }

  /** An elementwise op whose derivative needs only x (its backward is `unaryBackward`). */
  #unary(op: Pointwise, x: Tensor): Tensor {
    const y = unary(this.rec, op, x);
    if (this.#on(x)) {
      this.tape!.record({
        op,
        inputs: [x],
        outputs: [y],
        saved: [x],
        backward: (rec, [dy], [dx]) => void unaryBackward(rec, op, { x, dy: dy! }, { dx }),
      });
    }
    return y;
  }

  /**
   * Embedding lookup `table[ids]` over a table or its row shards (each shard is its own leaf: watch them all to get
   * the whole table's gradient). The ids get no gradient. Only rows that occur receive gradient (a scatter-add);
   * shards that are not tracked get a scratch gradient that is thrown away.
   */
  embedding(table: Tensor | readonly Tensor[], ids: Tensor | HostIds): Tensor {
    const shards: readonly Tensor[] = Array.isArray(table) ? table : [table as Tensor];
    const y = embeddingOp(this.rec, { table: shards, ids });
    if (this.#on(...shards)) {
      // host ids are uploaded again by backward, which may run on another recorder; copy them against later edits
      const kept = "buffer" in ids ? ids : { data: Int32Array.from(ids.data), shape: [...ids.shape] };
      this.tape!.record({
        op: "embedding",
        inputs: shards,
        outputs: [y],
        saved: "buffer" in kept ? [kept] : [],
        backward(rec, [dy], dIn) {
          const scratch = shards.flatMap((s, i) => dIn[i] ? [] : [rec.alloc(s.shape, "f32", `unused grad:${s.label}`)]);
          let k = 0;
          const dtable = shards.map((_, i) => dIn[i] ?? scratch[k++]);
          embeddingBackward(rec, { dy: dy!, ids: kept }, { dtable });
          rec.recycle(...scratch);
        },
      });
    }
    return y;
  }

  /**
   * The first `n` rows of a 2-D tensor [R, D] (e.g. position embeddings for `n` tokens): a view unless recording
   * with `n < R`, where it is a copy whose backward adds into the first `n` rows of the gradient.
   */
  firstRows(x: Tensor, n: number): Tensor {
    const [rows, d] = x.shape;
    if (x.shape.length !== 2 || !(Number.isInteger(n) && n >= 0 && n <= rows)) {
      throw new RangeError(`firstRows: ${n} rows of a tensor ${fmtShape(x.shape)}`);
    }
    const view = { ...x, shape: [n, d] };
    if (n === rows || !this.#on(x)) return view;
    const y = this.rec.alloc([n, d], x.dtype, `${x.label}[:${n}]`);
    this.rec.copy(view, y, n * d * 4);
    this.tape!.record({
      op: "first_rows",
      inputs: [x],
      outputs: [y],
      saved: [],
      backward: (rec, [dy], [dx]) => void axpy(rec, { ...dx!, shape: [n, d] }, dy!),
    });
    return y;
  }
}
