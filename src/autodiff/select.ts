/**
 * Choosing parameters by module path: a glob in which `*` matches any run of characters, dots included
 * (`*.ff.net.*.weight` selects every feed-forward weight at any depth), `?` one character; or a predicate.
 * @module
 */

/** A glob pattern (or several, comma-separated) or a predicate over parameter names. */
export type ParamSelector = string | ((name: string) => boolean);

/** The glob as an anchored regular expression. */
export function globToRegExp(glob: string): RegExp {
  const body = glob.split("").map((c) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
    .join("");
  return new RegExp(`^${body}$`);
}

/** The names that `sel` selects, in the order given; throws naming the pattern when it selects nothing. */
export function selectNames(names: Iterable<string>, sel: ParamSelector): string[] {
  let test: (n: string) => boolean;
  if (typeof sel === "function") test = sel;
  else {
    const res = sel.split(",").map((g) => globToRegExp(g.trim()));
    test = (n) => res.some((r) => r.test(n));
  }
  const out = [...names].filter(test);
  if (out.length === 0) {
    throw new RangeError(`no parameter matches ${typeof sel === "string" ? `"${sel}"` : "the predicate"}`);
  }
  return out;
}
