/**
 * A local diffusers folder as {@linkcode ModelFiles} (Deno).
 * @module
 */
import type { ModelFiles } from "../models/files.ts";
import { fileSource } from "./safetensors_file.ts";

/** The folder at `dir`. */
export function localModelFiles(dir: string): ModelFiles {
  const at = (p: string) => `${dir.replace(/\/+$/, "")}/${p}`;
  return {
    name: dir,
    async exists(path) {
      try {
        return (await Deno.stat(at(path))).isFile;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return false;
        throw e;
      }
    },
    readText: (path) => Deno.readTextFile(at(path)),
    open: (path) => fileSource(at(path)),
  };
}
