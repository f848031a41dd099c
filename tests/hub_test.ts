/**
 * Model sources: repo ids resolved in a fake local Hugging Face cache (no network), and downloads into that cache
 * layout from a local server that speaks the hub's API (resume with Range, SHA-256 check).
 */
import assert from "assert";
import { ModelNotFoundError, resolveModel } from "../src/io/hub.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(...await listFiles(`${dir}/${e.name}`, `${prefix}${e.name}/`));
    else if (!e.name.startsWith("expected")) out.push(prefix + e.name);
  }
  return out.sort();
}

async function sha256(data: Uint8Array): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(h)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("repo id resolves from a local Hugging Face cache without network", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const repo = `${cache}/models--test-org--sd-tiny`;
    for (const f of await listFiles(PIPE)) {
      await Deno.mkdir(`${repo}/snapshots/${COMMIT}/${f.slice(0, f.lastIndexOf("/") + 1)}`, { recursive: true });
      await Deno.symlink(`${PIPE}${f}`, `${repo}/snapshots/${COMMIT}/${f}`);
    }
    await Deno.mkdir(`${repo}/refs`);
    await Deno.writeTextFile(`${repo}/refs/main`, COMMIT);
    const files = await resolveModel("test-org/sd-tiny", { cacheDir: cache, offline: true });
    assert.ok(await files.exists("unet/diffusion_pytorch_model.safetensors"));
    assert.match(await files.readText("model_index.json"), /StableDiffusionPipeline/);
    await assert.rejects(
      () => resolveModel("CompVis/stable-diffusion-v1-4", { cacheDir: cache, offline: true }),
      (e: Error) =>
        e instanceof ModelNotFoundError && /not in the Hugging Face cache.*huggingface-cli download/.test(e.message),
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("download into the cache layout: resume from a partial blob, verify SHA-256, reuse afterwards", async () => {
  const cache = await Deno.makeTempDir();
  const files = await listFiles(PIPE);
  const ranges: string[] = [];
  const ac = new AbortController();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} }, async (req) => {
    const u = new URL(req.url);
    if (u.pathname === "/api/models/test-org/sd-tiny/revision/main") {
      return Response.json({
        sha: COMMIT,
        siblings: [...files, "safety_checker/model.safetensors"].map((rfilename) => ({ rfilename })),
      });
    }
    const m = u.pathname.match(/^\/test-org\/sd-tiny\/resolve\/[0-9a-f]{40}\/(.+)$/);
    if (!m || !files.includes(m[1])) return new Response("no", { status: 404 });
    const data = await Deno.readFile(PIPE + m[1]);
    const lfs = m[1].endsWith(".safetensors");
    const etag = lfs ? await sha256(data) : `blob-${data.length}`;
    const h: Record<string, string> = lfs
      ? { "x-linked-etag": `"${etag}"`, "x-linked-size": String(data.length) }
      : { etag: `"${etag}"` };
    const range = req.headers.get("range");
    if (req.method === "HEAD") return new Response(null, { headers: { ...h, "content-length": String(data.length) } });
    if (range) {
      ranges.push(`${m[1]} ${range}`);
      const from = +range.match(/bytes=(\d+)-/)![1];
      return new Response(data.slice(from), { status: 206, headers: h });
    }
    return new Response(data, { headers: h });
  });
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  try {
    // a half-downloaded U-Net from an earlier, interrupted run
    const unet = await Deno.readFile(`${PIPE}unet/diffusion_pytorch_model.safetensors`);
    const repo = `${cache}/models--test-org--sd-tiny`;
    await Deno.mkdir(`${repo}/blobs`, { recursive: true });
    await Deno.writeFile(`${repo}/blobs/${await sha256(unet)}.incomplete`, unet.subarray(0, 5000));

    const got = await resolveModel("test-org/sd-tiny", { cacheDir: cache, endpoint, quiet: true });
    assert.deepEqual(ranges, ["unet/diffusion_pytorch_model.safetensors bytes=5000-"]);
    for (const f of files) {
      assert.deepEqual(await Deno.readFile(`${repo}/snapshots/${COMMIT}/${f}`), await Deno.readFile(PIPE + f), f);
    }
    assert.ok((await Deno.lstat(`${repo}/snapshots/${COMMIT}/unet/diffusion_pytorch_model.safetensors`)).isSymlink);
    assert.equal(await Deno.readTextFile(`${repo}/refs/main`), COMMIT);
    assert.equal(await got.exists("safety_checker/model.safetensors"), false); // not needed, not fetched
    // later runs use the cache even with the server gone
    ac.abort();
    await server.finished;
    const again = await resolveModel("test-org/sd-tiny", { cacheDir: cache, endpoint, offline: true });
    assert.ok(await again.exists("vae/diffusion_pytorch_model.safetensors"));
  } finally {
    if (!ac.signal.aborted) ac.abort();
    await server.finished;
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("a download whose bytes do not match the SHA-256 is removed with a clear error", async () => {
  const cache = await Deno.makeTempDir();
  const ac = new AbortController();
  const data = new Uint8Array(3000).fill(7);
  const good = await sha256(data);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} }, (req) => {
    const u = new URL(req.url);
    if (u.pathname.startsWith("/api/")) {
      return Response.json({
        sha: COMMIT,
        siblings: ["model_index.json", "unet/diffusion_pytorch_model.safetensors"].map((rfilename) => ({ rfilename })),
      });
    }
    const h = { "x-linked-etag": `"${good}"`, "x-linked-size": "3000", "content-length": "3000" };
    if (req.method === "HEAD") return new Response(null, { headers: h });
    return new Response(data.map((b, i) => (i === 5 ? 0 : b)), { headers: h });
  });
  try {
    await assert.rejects(
      () =>
        resolveModel("test-org/bad", {
          cacheDir: cache,
          endpoint: `http://127.0.0.1:${server.addr.port}`,
          quiet: true,
        }),
      /checksum mismatch/,
    );
    const blobs = [...Deno.readDirSync(`${cache}/models--test-org--bad/blobs`)];
    assert.deepEqual(blobs, []);
  } finally {
    ac.abort();
    await server.finished;
    await Deno.remove(cache, { recursive: true });
  }
});
