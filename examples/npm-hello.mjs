// The npm package on Node >= 20, Bun or Deno, as plain JavaScript (Node 20 has no `await using`, so the
// sandbox is destroyed in `finally`). In a project: `npm install @mvm/sdk`, then
//   node npm-hello.mjs  |  bun npm-hello.mjs  |  deno run --allow-run --allow-read --allow-write --allow-env npm-hello.mjs
import { Sandbox } from "@mvm/sdk";

const sb = await Sandbox.create({ ttl: "5m" });
try {
  await sb.files.write("/app/hello.txt", "hello from mvm\n");
  const r = await sb.commands.run(["cat", "/app/hello.txt"], { timeoutSeconds: 30 });
  console.log(JSON.stringify({ stdout: r.stdout, exitCode: r.exitCode, id: sb.id }));
} finally {
  await sb.destroy();
}
