/**
 * Kernels: a WGSL module plus one entry point. The WGSL source is the single source of truth for the binding
 * layout and the uniform struct: both are parsed from it here, so nothing is copied by hand between TS and WGSL.
 *
 * Conventions every kernel file follows:
 * - all resources live in `@group(0)`;
 * - storage buffers are declared `var<storage, read>` or `var<storage, read_write>`;
 * - an optional `var<uniform> p: Params;` whose `struct Params` holds scalars, vectors and `array<vec4<T>, N>`.
 * @module
 */

/** A storage binding as the WGSL declares it. */
export interface StorageDecl {
  readonly binding: number;
  readonly name: string;
  readonly access: "read" | "read_write";
}

/** One field of the uniform struct with its byte offset. */
export interface UniformField {
  readonly name: string;
  readonly scalar: "f32" | "u32" | "i32";
  /** Scalar components per element (1, 2, 3 or 4). */
  readonly width: number;
  /** Array length, or 0 for a plain scalar/vector. */
  readonly count: number;
  readonly offset: number;
}

/** The uniform struct's layout and where it is bound. */
export interface UniformLayout {
  readonly binding: number;
  /** The uniform variable's name in WGSL (e.g. `p`). */
  readonly name: string;
  readonly fields: readonly UniformField[];
  /** Struct size rounded up to 16 bytes. */
  readonly size: number;
}

/** What the WGSL text says about its bindings. */
export interface ShaderInterface {
  readonly storage: readonly StorageDecl[];
  readonly uniform: UniformLayout | null;
}

/** A kernel: where it came from, its entry point and the layout parsed from its source. */
export interface KernelSpec {
  /** File name, used in every error message about this kernel. */
  readonly file: string;
  readonly source: string;
  readonly entry: string;
  /** The bindings this entry point uses (WGSL's "auto" layout would keep the same ones). */
  readonly iface: ShaderInterface;
  /** Every storage binding name the file declares (a call site may pass those this entry does not use). */
  readonly declared: ReadonlySet<string>;
}

/** Builds a kernel spec from a WGSL file's text. Parsing happens once per call, so define kernels at module scope. */
export function defineKernel(file: string, source: string, entry = "main"): KernelSpec {
  if (!new RegExp(`@compute[^]*?fn\\s+${entry}\\s*\\(`).test(source)) {
    throw new Error(`${file}: no @compute entry point named "${entry}"`);
  }
  const all = parseInterface(file, source);
  const used = identifiersReachedFrom(source.replace(STRIP_COMMENTS, ""), entry);
  return {
    file,
    source,
    entry,
    iface: {
      storage: all.storage.filter((s) => used.has(s.name)),
      uniform: all.uniform && used.has(all.uniform.name) ? all.uniform : null,
    },
    declared: new Set(all.storage.map((s) => s.name)),
  };
}

/**
 * WGSL has no includes: a line `//!include _name.wgsl` in `source` is replaced here by the text of snippet
 * `_name.wgsl` from `snippets` (snippets may include others). The expansion is wrapped in `//!begin _name.wgsl` …
 * `//!end _name.wgsl` marker lines, from which {@linkcode sourceLine} maps a line of the expanded text back to
 * its file and line, so WGSL errors name the snippet. Throws, naming `file`, on an unknown snippet or a cycle.
 * Include a snippet that declares overrides above every use of them: attention.wgsl sizing a workgroup array by an
 * override declared further down made Deno 2.9's naga panic (pipeline_constants.rs, "unreachable code").
 */
export function includeWgsl(file: string, source: string, snippets: Readonly<Record<string, string>>): string {
  const expand = (text: string, chain: string[]): string =>
    text.replace(INCLUDE, (_line, indent: string, name: string) => {
      const at = `${file}${chain.length ? ` (in ${chain.join(" in ")})` : ""}`;
      if (!Object.hasOwn(snippets, name)) {
        const known = Object.keys(snippets);
        throw new Error(
          `${at}: //!include of unknown snippet "${name}" (given: ${known.length ? known.join(", ") : "none"})`,
        );
      }
      if (chain.includes(name)) throw new Error(`${at}: //!include cycle through "${name}"`);
      const body = expand(snippets[name].replace(/\n$/, ""), [name, ...chain]);
      return `${indent}//!begin ${name}\n${body}\n${indent}//!end ${name}`;
    });
  return expand(source, []);
}

const INCLUDE = /^([ \t]*)\/\/!include[ \t]+(\S+)[ \t]*$/gm;

/**
 * Where line `lineNum` (1-based; column `col` if given) of a kernel's text comes from: `file:line[:col]`, or, inside
 * an included snippet, `_snippet.wgsl:line[:col] (included by file:line)`. Text without include markers maps to
 * itself.
 */
export function sourceLine(file: string, source: string, lineNum: number, col?: number): string {
  const stack = [{ name: file, line: 0 }];
  const lines = source.split("\n");
  for (let i = 0; i < lineNum && i < lines.length; i++) {
    const top = stack[stack.length - 1];
    const marker = /^\s*\/\/!(begin|end) (\S+)\s*$/.exec(lines[i]);
    if (marker?.[1] === "begin") {
      top.line++; // the directive's own line in the including file
      if (i + 1 === lineNum) break;
      stack.push({ name: marker[2], line: 0 });
    } else if (marker?.[1] === "end" && stack.length > 1) {
      stack.pop();
    } else {
      top.line++;
    }
  }
  const [first, ...outer] = stack.slice().reverse();
  return `${first.name}:${first.line}${col === undefined ? "" : `:${col}`}${
    outer.map((s) => ` (included by ${s.name}:${s.line})`).join("")
  }`;
}

/** Identifiers used by function `entry` and every function it calls, transitively. */
function identifiersReachedFrom(src: string, entry: string): Set<string> {
  const bodies = new Map<string, string>();
  for (const m of src.matchAll(/\bfn\s+(\w+)\s*\(/g)) {
    const open = src.indexOf("{", m.index! + m[0].length);
    let depth = 0, end = open;
    for (; end < src.length; end++) {
      if (src[end] === "{") depth++;
      else if (src[end] === "}" && --depth === 0) break;
    }
    bodies.set(m[1], src.slice(m.index!, end + 1));
  }
  const used = new Set<string>();
  const todo = [entry];
  const seen = new Set<string>();
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    // not after a ".": `wid.x` names a member, not a binding called x
    for (const [id] of (bodies.get(f) ?? "").matchAll(/(?<!\.\s*)\b[A-Za-z_]\w*\b/g)) {
      used.add(id);
      if (bodies.has(id) && !seen.has(id)) todo.push(id);
    }
  }
  return used;
}

/** Defines every listed entry point of one WGSL file. */
export function defineKernels<const E extends readonly string[]>(
  file: string,
  source: string,
  entries: E,
): Record<E[number], KernelSpec> {
  const out = {} as Record<E[number], KernelSpec>;
  for (const e of entries) out[e as E[number]] = defineKernel(file, source, e);
  return out;
}

const STRIP_COMMENTS = /\/\/[^\n]*|\/\*[^]*?\*\//g;

/** Parses the storage declarations and the `Params` uniform struct of a WGSL module. */
export function parseInterface(file: string, source: string): ShaderInterface {
  const src = source.replace(STRIP_COMMENTS, "");
  const storage: StorageDecl[] = [];
  let uniform: UniformLayout | null = null;
  const varRe =
    /@group\(\s*(\d+)\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*<\s*([a-z_]+)\s*(?:,\s*([a-z_]+)\s*)?>\s*(\w+)\s*:\s*([\w<>, ]+?)\s*;/g;
  for (const m of src.matchAll(varRe)) {
    const [, group, binding, space, access, name, type] = m;
    if (group !== "0") throw new Error(`${file}: binding "${name}" is in group ${group}; kernels use group 0 only`);
    if (space === "storage") {
      storage.push({ binding: +binding, name, access: access === "read_write" ? "read_write" : "read" });
    } else if (space === "uniform") {
      if (uniform) throw new Error(`${file}: more than one uniform binding`);
      uniform = { binding: +binding, name, ...parseStruct(file, src, type.trim()) };
    } else {
      throw new Error(`${file}: unsupported address space "${space}" for "${name}"`);
    }
  }
  storage.sort((a, b) => a.binding - b.binding);
  return { storage, uniform };
}

const SCALARS = new Set(["f32", "u32", "i32"]);

function parseStruct(file: string, src: string, name: string): { fields: UniformField[]; size: number } {
  const m = new RegExp(`struct\\s+${name}\\s*\\{([^}]*)\\}`).exec(src);
  if (!m) throw new Error(`${file}: uniform struct "${name}" not found`);
  const fields: UniformField[] = [];
  let offset = 0;
  let maxAlign = 4;
  for (const raw of splitTopLevel(m[1])) {
    const f = raw.trim();
    if (!f) continue;
    const fm = /^(\w+)\s*:\s*(.+)$/.exec(f);
    if (!fm) throw new Error(`${file}: cannot parse field "${f}" of struct ${name}`);
    const [, fname, ftype] = fm;
    const t = ftype.replace(/\s+/g, "");
    let scalar: string, width = 1, count = 0, align = 4, size = 4;
    let am: RegExpExecArray | null;
    if (SCALARS.has(t)) {
      scalar = t;
    } else if ((am = /^vec([234])<(\w+)>$/.exec(t))) {
      width = +am[1];
      scalar = am[2];
      align = width === 2 ? 8 : 16;
      size = width * 4;
    } else if ((am = /^array<vec4<(\w+)>,(\d+)u?>$/.exec(t))) {
      scalar = am[1];
      width = 4;
      count = +am[2];
      align = 16;
      size = 16 * count;
    } else {
      throw new Error(`${file}: unsupported uniform field type "${ftype}" (${name}.${fname})`);
    }
    if (!SCALARS.has(scalar)) throw new Error(`${file}: unsupported scalar "${scalar}" in ${name}.${fname}`);
    offset = Math.ceil(offset / align) * align;
    fields.push({ name: fname, scalar: scalar as UniformField["scalar"], width, count, offset });
    offset += size;
    maxAlign = Math.max(maxAlign, align);
  }
  return { fields, size: Math.max(16, Math.ceil(offset / 16) * 16) };
}

/** Splits struct members on commas outside `<...>`. */
function splitTopLevel(body: string): string[] {
  const parts: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "<") depth++;
    else if (c === ">") depth--;
    else if (c === "," && depth === 0) {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  return parts;
}

/** Values for a uniform struct: a number per scalar field, an array per vector or array field. */
export type ParamValues = Record<string, number | readonly number[]>;

/** Packs `values` into the struct layout; every field must be given, and no unknown field may be. */
export function packUniform(file: string, layout: UniformLayout, values: ParamValues, into?: DataView): DataView {
  const view = into ?? new DataView(new ArrayBuffer(layout.size));
  const known = new Set(layout.fields.map((f) => f.name));
  for (const k of Object.keys(values)) {
    if (!known.has(k)) throw new TypeError(`${file}: unknown uniform field "${k}" (fields: ${[...known].join(", ")})`);
  }
  for (const f of layout.fields) {
    const v = values[f.name];
    if (v === undefined) throw new TypeError(`${file}: uniform field "${f.name}" not given`);
    const n = f.count ? f.count * 4 : f.width;
    const arr = typeof v === "number" ? [v] : v;
    if ((f.width === 1 && f.count === 0 && typeof v !== "number") || (n > 1 && arr.length > n)) {
      throw new TypeError(`${file}: uniform field "${f.name}" expects ${n === 1 ? "a number" : `≤${n} numbers`}`);
    }
    for (let i = 0; i < n; i++) {
      const x = arr[i] ?? 0;
      const at = f.offset + 4 * i;
      if (f.scalar === "f32") view.setFloat32(at, x, true);
      else if (f.scalar === "u32") {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) {
          throw new RangeError(`${file}: uniform field "${f.name}" needs u32, got ${x}`);
        }
        view.setUint32(at, x, true);
      } else {
        if (!Number.isInteger(x) || x < -0x80000000 || x > 0x7fffffff) {
          throw new RangeError(`${file}: uniform field "${f.name}" needs i32, got ${x}`);
        }
        view.setInt32(at, x, true);
      }
    }
  }
  return view;
}
