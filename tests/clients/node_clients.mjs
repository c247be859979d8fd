// node-redis 6 and ioredis 6 and 5, with their default settings, against two leaves of one tree
// (argv: leaf-a, leaf-b as host:port): strings, keys, MULTI/EXEC, WATCH, pub/sub across the
// tree, counters and hashes that merge across the two leaves, and node-redis's client-side cache
// over RESP3, which must
// hear of a write made at the other leaf. Exits non-zero on the first failure.

import assert from 'node:assert/strict';
import { createClient } from 'redis';
import IORedis from 'ioredis';
import IORedis5 from 'ioredis5';

const [aAddr, bAddr] = process.argv.slice(2);
const checked = [];

async function eventually(what, check, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`not true after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function nodeRedis() {
  const a = createClient({ url: `redis://${aAddr}` });
  const b = createClient({ url: `redis://${bAddr}` });
  a.on('error', (e) => { throw e; });
  b.on('error', (e) => { throw e; });
  await a.connect();
  await b.connect();
  await a.del(['js:s', 'js:t', 'js:r1', 'js:r2']);
  assert.equal(await a.set('js:s', 'Hello'), 'OK');
  assert.equal(await a.append('js:s', ' World'), 11);
  assert.equal(await a.getRange('js:s', 0, 4), 'Hello');
  assert.equal(await a.strLen('js:s'), 11);
  assert.equal(await a.getEx('js:s', { type: 'EX', value: 50 }), 'Hello World');
  assert.equal(await a.ttl('js:s'), 50);
  await a.set('js:r1', 'v');
  assert.equal(await a.rename('js:r1', 'js:r2'), 'OK');
  assert.equal(await a.exists(['js:r1', 'js:r2']), 1);
  const exec = await a.multi().set('js:t', '1').get('js:t').exec();
  assert.deepEqual(exec, ['OK', '1']);
  await a.watch('js:t');
  await b.set('js:t', 'changed at leaf-b');
  await eventually('the write at leaf-b reaches leaf-a', async () => (await a.get('js:t')) === 'changed at leaf-b');
  await assert.rejects(a.multi().set('js:t', 'mine').exec(), /WatchError|watch/i);
  await a.del('js:counter');
  for (let i = 0; i < 50; i++) {
    await a.incr('js:counter');
    await b.incrBy('js:counter', 2);
  }
  await eventually('150 at both leaves', async () =>
    (await a.get('js:counter')) === '150' && (await b.get('js:counter')) === '150');
  await a.hSet('js:h', { x: '1' });
  await b.hSet('js:h', { y: '2' });
  await b.hIncrBy('js:h', 'n', 3);
  await eventually('the union of both leaves\' fields', async () => {
    const h = await a.hGetAll('js:h');
    return h.x === '1' && h.y === '2' && h.n === '3';
  });
  await assert.rejects(a.get('js:h'), /WRONGTYPE/);
  checked.push('node-redis 6: strings, keys, MULTI/EXEC, WATCH, counters and hashes across leaves');

  // Pub/sub across the tree.
  const sub = b.duplicate();
  await sub.connect();
  const got = [];
  await sub.subscribe('js:news', (message) => got.push(message));
  await eventually('a message published at leaf-a reaches leaf-b', async () => {
    await a.publish('js:news', 'hello');
    return got.length > 0;
  });
  assert.equal(got[0], 'hello');
  await sub.quit();
  checked.push('node-redis 6: pub/sub across the tree');

  // Client-side caching over RESP3.
  const cached = createClient({ url: `redis://${bAddr}`, RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } });
  await cached.connect();
  await a.set('js:cached', 'v1');
  await eventually('v1 reaches leaf-b', async () => (await b.get('js:cached')) === 'v1');
  assert.equal(await cached.get('js:cached'), 'v1');
  const hits = async () => Number(/keyspace_hits:(\d+)/.exec(await b.info('stats'))[1]);
  const before = await hits();
  for (let i = 0; i < 5; i++) assert.equal(await cached.get('js:cached'), 'v1');
  assert.equal(await hits(), before, 'repeated reads are served from the client-side cache');
  await a.set('js:cached', 'v2');
  await eventually('the cache is invalidated and re-reads v2', async () => (await cached.get('js:cached')) === 'v2');
  await cached.quit();
  checked.push('node-redis 6: client-side cache (RESP3) invalidated by a write at another leaf');
  await a.quit();
  await b.quit();
}

async function ioredis(Redis, name) {
  const [host, port] = aAddr.split(':');
  const [bHost, bPort] = bAddr.split(':');
  const a = new Redis(Number(port), host);
  const b = new Redis(Number(bPort), bHost);
  await a.del('io:s', 'io:t');
  assert.equal(await a.set('io:s', 'v', 'EX', 30), 'OK');
  assert.equal(await a.get('io:s'), 'v');
  assert.equal(await a.ttl('io:s'), 30);
  assert.equal(await a.setnx('io:s', 'x'), 0);
  assert.deepEqual(await a.mget('io:s', 'io:none'), ['v', null]);
  const res = await a.multi().set('io:t', '1').get('io:t').exec();
  assert.deepEqual(res, [[null, 'OK'], [null, '1']]);
  const piped = await a.pipeline().set('io:p', 'x').get('io:p').exec();
  assert.deepEqual(piped, [[null, 'OK'], [null, 'x']]);
  await a.del('io:counter', 'io:h');
  assert.equal(await a.incrby('io:counter', 5), 5);
  assert.equal(await a.incrbyfloat('io:counter', 0.5), '5.5');
  assert.equal(await a.hset('io:h', 'f', 'v', 'g', 'w'), 2);
  assert.deepEqual(await a.hgetall('io:h'), { f: 'v', g: 'w' });
  const sub = new Redis(Number(bPort), bHost);
  const got = [];
  sub.on('message', (_channel, message) => got.push(message));
  await sub.subscribe('io:news');
  await eventually('a message published at leaf-a reaches leaf-b', async () => {
    await a.publish('io:news', 'hello');
    return got.length > 0;
  });
  assert.equal(got[0], 'hello');
  sub.disconnect();
  a.disconnect();
  b.disconnect();
  checked.push(`${name}: strings, MULTI/EXEC, pipelines, pub/sub across the tree, counters and hashes`);
}

await nodeRedis();
await ioredis(IORedis, 'ioredis 6');
await ioredis(IORedis5, 'ioredis 5');
for (const line of checked) console.log(`ok - ${line}`);
process.exit(0);
