// node-redis createCluster and ioredis Cluster, with their default settings, against a sharded
// leafcache (argv: the RESP door of any node): keys of every shard written and read back, hash
// tags kept together. Exits non-zero on the first failure.
import { createCluster } from "redis";
import IORedis from "ioredis";

const [host, port] = process.argv[2].split(":");

const nr = createCluster({ rootNodes: [{ url: `redis://${host}:${port}` }] });
nr.on("error", (e) => { console.error("node-redis:", e); process.exit(1); });
await nr.connect();
for (let i = 0; i < 200; i++) await nr.set(`nr:${i}`, String(i));
for (let i = 0; i < 200; i++) {
  const v = await nr.get(`nr:${i}`);
  if (v !== String(i)) throw new Error(`node-redis nr:${i} = ${v}`);
}
await nr.mSet([["{t}:a", "1"], ["{t}:b", "2"]]);
const both = await nr.mGet(["{t}:a", "{t}:b"]);
if (both.join(",") !== "1,2") throw new Error(`node-redis hash tags: ${both}`);
if (nr.masters.length !== 3) throw new Error(`node-redis sees ${nr.masters.length} masters`);
await nr.quit();

const io = new IORedis.Cluster([{ host, port: Number(port) }]);
for (let i = 0; i < 200; i++) await io.set(`io:${i}`, String(i));
for (let i = 0; i < 200; i++) {
  const v = await io.get(`io:${i}`);
  if (v !== String(i)) throw new Error(`ioredis io:${i} = ${v}`);
}
if (io.nodes("master").length !== 3) throw new Error(`ioredis sees ${io.nodes("master").length} masters`);
io.disconnect();
console.log("node-redis createCluster and ioredis Cluster: 200 keys each over 3 shards, hash tags");
