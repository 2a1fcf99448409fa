/** The SDK's own stream helpers: `untilAborted` and `abortable` (what bounds a file read by a signal). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { abortable, collectBytes, untilAborted } from "../src/streams.ts";

const never = <T>() => new Promise<T>(() => {});

test("untilAborted: the promise's value without an abort; the signal's reason at once when it aborts, before or while waiting", async () => {
  assert.equal(await untilAborted(Promise.resolve(7)), 7);
  assert.equal(await untilAborted(Promise.resolve(7), new AbortController().signal), 7);
  const why = new Error("gave up");
  await assert.rejects(untilAborted(never(), AbortSignal.abort(why)), (e) => e === why);
  const ac = new AbortController();
  const waiting = untilAborted(never(), ac.signal);
  ac.abort(why);
  await assert.rejects(waiting, (e) => e === why);
});

test("abortable: passes every chunk through; an abort errors the stream with its reason and cancels the source, also one opened late", async () => {
  const chunks = [new Uint8Array([1]), new Uint8Array([2, 3])];
  const ok = await abortable(Promise.resolve(new Blob(chunks).stream()), new AbortController().signal);
  assert.deepEqual(await collectBytes(ok), new Uint8Array([1, 2, 3]));

  // a source that gives one chunk and then nothing: the abort ends the wait and cancels it
  let cancelled: unknown = "no";
  const stalled = () =>
    new ReadableStream<Uint8Array>({
      start: (c) => c.enqueue(new Uint8Array([9])),
      pull: () => never(),
      cancel: (r) => void (cancelled = r),
    });
  const ac = new AbortController();
  const why = new Error("gave up");
  const r = (await abortable(Promise.resolve(stalled()), ac.signal)).getReader();
  assert.deepEqual((await r.read()).value, new Uint8Array([9]));
  const next = r.read();
  ac.abort(why);
  await assert.rejects(next, (e) => e === why);
  assert.equal(cancelled, why);

  // aborted while opening: rejects at once; the stream that comes later is cancelled
  cancelled = "no";
  let open!: (s: ReadableStream<Uint8Array>) => void;
  const ac2 = new AbortController();
  const opening = abortable(new Promise((res) => (open = res)), ac2.signal);
  ac2.abort(why);
  await assert.rejects(opening, (e) => e === why);
  open(stalled());
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(cancelled, why);
});

test("abortable: an abort before the first read cancels the source at once, read or not", async () => {
  let cancelled: unknown = "no";
  const src = new ReadableStream<Uint8Array>({ pull: () => never(), cancel: (r) => void (cancelled = r) });
  const ac = new AbortController();
  const s = await abortable(Promise.resolve(src), ac.signal);
  const why = new Error("gave up");
  ac.abort(why);
  await new Promise((res) => setTimeout(res, 10));
  assert.equal(cancelled, why);
  await assert.rejects(s.getReader().read(), (e) => e === why);
});

test("collectBytes: past maxBytes it throws the given error and cancels the source", async () => {
  let cancelled = false;
  let n = 0;
  const src = new ReadableStream<Uint8Array>({
    pull: (c) => c.enqueue(new Uint8Array(++n < 100 ? 10 : 0)),
    cancel: () => void (cancelled = true),
  });
  const tooBig = new Error("too big");
  await assert.rejects(collectBytes(src, 25, () => tooBig), (e) => e === tooBig);
  assert.equal(cancelled, true);
  assert.deepEqual(await collectBytes(new Blob(["abc"]).stream(), 3), new TextEncoder().encode("abc"));
});
