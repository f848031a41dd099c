/**
 * CAD (Nguyen et al., "Unveiling Concept Attribution in Diffusion Models"): the gradients of a concept score
 * (`Attribution`), attribution scores S = W ⊙ ∂J/∂W, the ablation rule that zeroes the top (or bottom)
 * ⌊ratio · in⌋ scores of each row on the GPU, undo patches, and reports. Files (score sets, patches, report folders) are read and written by `src/io/cad_files.ts`.
 *
 * ```ts ignore
 * const s = attributionScores(rec, w, g);
 * const m = ablationMask(rec, s, { ratio: 0.001, mode: "positive" });
 * await rec.submit();
 * const undo = await ablationPatch(ctx, name, w, m); // before zeroing
 * const rec2 = ctx.recorder();
 * applyAblation(rec2, w, m);
 * await rec2.submit();
 * ```
 * @module
 */
export * from "./attribute.ts";
export * from "./scores.ts";
export * from "./ablate.ts";
export * from "./report.ts";
