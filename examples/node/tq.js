'use strict';
// A tq producer for Node.js: tq wire protocol 1 (docs/protocol.md) -- task ids, bodies, the
// enqueue script, and waiting for results -- on the `redis` npm package, for a standalone Redis
// or a Redis Cluster. No tq code runs here; what is taken from tq is the text of two of its
// scripts, as `tq protocol script enqueue` (and `... index`, a cluster's) print them.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const PROTOCOL = 1;
// 64 characters in ASCII order: ids sort as the times they encode
const ALPHABET = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
// type and queue names: letters, digits and . _ - / @ + (Python's \w: letters, numbers, _)
const NAME_RE = /^[\p{L}\p{N}_.\-/@+]{1,200}$/u;
const MAX_RETRIES = 1000;
const MAX_SECONDS = 10 * 365 * 86400;
const MAX_BODY_BYTES = 1024 * 1024;   // tq.Client's default max_payload_bytes

function sha1(text) {
  return crypto.createHash('sha1').update(text, 'utf8').digest('hex');
}

const ENQUEUE_LUA = fs.readFileSync(path.join(__dirname, 'enqueue.lua'), 'utf8');
const ENQUEUE_SHA = sha1(ENQUEUE_LUA);
// the cluster's second step (docs/protocol.md, "Redis Cluster"): `tq protocol script index`
const INDEX_LUA = fs.readFileSync(path.join(__dirname, 'index.lua'), 'utf8');
const INDEX_SHA = sha1(INDEX_LUA);

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 (the zlib / PNG one) of some bytes, as an unsigned number. */
function crc32(bytes) {
  let c = -1;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** The 4 characters naming a queue in its task ids: the low 24 bits of the CRC-32 of its
 *  UTF-8 name, 6 bits a character, high bits first. */
function hintOf(queue) {
  const n = crc32(Buffer.from(queue, 'utf8')) & 0xFFFFFF;
  return [18, 12, 6, 0].map((shift) => ALPHABET[(n >>> shift) & 63]).join('');
}

/** A task id of `queue`: 7 characters of Unix milliseconds, the queue's hint, 6 random. */
function newId(queue, nowMs = Date.now()) {
  let ms = BigInt(nowMs);
  let time = '';
  for (let i = 0; i < 7; i++) {
    time = ALPHABET[Number(ms & 63n)] + time;
    ms >>= 6n;
  }
  const tail = Array.from(crypto.randomBytes(6), (b) => ALPHABET[b & 63]).join('');
  return time + hintOf(queue) + tail;
}

/** A number as Python's repr(float) writes it (tq.Client writes timeouts as floats). */
function pyFloat(x) {
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-4 || a >= 1e16)) {
    const [mantissa, exp] = x.toExponential().split('e');
    return `${mantissa}e${exp[0]}${exp.slice(1).padStart(2, '0')}`;
  }
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

function checkName(kind, value) {
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    throw new Error(`${kind} ${JSON.stringify(value)} must be 1 to 200 letters, digits or . _ - / @ +`);
  }
  return value;
}

function checkInt(name, value, lo, hi) {
  if (!Number.isInteger(value) || value < lo || value > hi) {
    throw new Error(`${name} must be an integer from ${lo} to ${hi}, not ${value}`);
  }
  return value;
}

/** The stored body of a task: the header fields that differ from their defaults, in this
 *  order and without spaces (tq's scripts read them without a JSON decoder), then "p". */
function encodeBody({ type, queue = type, payload = {}, priority = 0, maxRetries = null,
  timeout = null }) {
  checkName('type', type);
  checkName('queue', queue);
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new Error('payload must be a JSON object');
  }
  const head = [];
  if (type !== queue) head.push(`"t":"${type}"`);
  checkInt('priority', priority, 0, 9);
  if (priority) head.push(`"r":${priority}`);
  if (maxRetries !== null) head.push(`"m":${checkInt('maxRetries', maxRetries, 0, MAX_RETRIES)}`);
  if (timeout !== null) {
    if (typeof timeout !== 'number' || !(timeout > 0 && timeout <= MAX_SECONDS)) {
      throw new Error(`timeout must be seconds above 0 and at most ${MAX_SECONDS}`);
    }
    head.push(`"o":${pyFloat(timeout)}`);
  }
  head.push(`"p":${JSON.stringify(payload)}`);
  return `{${head.join(',')}}`;
}

/** Key names of one namespace (docs/protocol.md, "Keys"): on a Redis Cluster the global
 *  ones carry the tag {#}, and the enqueue script gets a key of the queue's slot as groups. */
function keysOf(ns, cluster) {
  const g = cluster ? `${ns}:{#}:` : `${ns}:`;
  return {
    queues: `${g}queues`,
    groups: `${g}groups`,
    queue(name) {
      const p = `${ns}:{${name}}:`;
      return {
        tasks: `${p}tasks`, sched: `${p}sched`, wake: `${p}wake`, stats: `${p}stats`,
        soon: `${p}soon`, groups: cluster ? `${p}groups` : `${g}groups`, waiters: `${p}waiters`,
        events: `${p}events`, dead: `${p}dead`, errors: `${p}errors`,
        ready: (priority) => `${p}ready:${priority}`,
        result: (id) => `${p}res:${id}`,
      };
    },
  };
}

/** Pairs of a flat [k1, v1, k2, v2...] reply as an object. */
function fieldsOf(flat) {
  const out = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

/** A node-redis client for a URL: redis://, rediss://, or redis+cluster://[user:pass@]h:p,h:p
 *  (tq's spelling of a Redis Cluster's seed nodes). Not yet connected. */
function clientFor(url, createClient, createCluster) {
  const m = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?]+)/.exec(url);
  if (!m) return createClient({ url });
  const [, scheme, auth, seeds] = m;
  const [username, password] = auth ? auth.split(':').map(decodeURIComponent) : [];
  return createCluster({
    rootNodes: seeds.split(',').map((hp) => ({ url: `${scheme}://${hp}` })),
    defaults: { username: username || undefined, password: password || undefined },
  });
}

class Producer {
  /** client: a connected node-redis client or cluster (clientFor); namespace: tq's. */
  constructor(client, { namespace = 'tq' } = {}) {
    this.client = client;
    this.cluster = typeof client.getSlotMaster === 'function';   // a RedisCluster
    this.ns = checkName('namespace', namespace);
    this.keys = keysOf(namespace, this.cluster);
    this.reader = null;   // a second connection for blocking reads (XREAD BLOCK)
  }

  async close() {
    if (this.reader) await this.reader.quit();
  }

  /** A command, routed by its first key on a cluster. */
  send(key, args) {
    return this.cluster ? this.client.sendCommand(key, false, args) : this.client.sendCommand(args);
  }

  /** A transaction of commands whose keys share `key`'s slot. */
  async transaction(key, commands, { atomic = true } = {}) {
    const tx = this.cluster ? this.client.multi(key) : this.client.multi();
    for (const args of commands) {
      if (this.cluster) tx.addCommand(key, args);
      else tx.addCommand(args);
    }
    return atomic ? tx.exec() : tx.execAsPipeline();
  }

  /** A script by its SHA1, loaded (on the node of `keys[0]`) when Redis does not have it. */
  async evalScript(sha, source, keys, argv) {
    const call = ['EVALSHA', sha, String(keys.length), ...keys, ...argv];
    try {
      return await this.send(keys[0], call);
    } catch (err) {
      if (!String(err.message).startsWith('NOSCRIPT')) throw err;
      // Redis restarted (or never saw the script): load it; the call did not run, so repeat it
      await this.send(keys[0], ['SCRIPT', 'LOAD', source]);
      return this.send(keys[0], call);
    }
  }

  /** Enqueue tasks of one queue: specs are {type, payload, priority, maxRetries, timeout,
   *  delayMs}. watch: register as a waiter first, so that wait() can block on the queue's
   *  events. Returns {ids, bodies, after} (after: the events stream id to read after). */
  async enqueue(queue, specs, { watch = true } = {}) {
    checkName('queue', queue);
    const k = this.keys.queue(queue);
    const tasks = specs.map((s) => {
      const body = encodeBody({ ...s, queue });
      if (Buffer.byteLength(body, 'utf8') > MAX_BODY_BYTES) throw new Error('task body too large');
      return { ...s, id: newId(queue), body, priority: s.priority || 0 };
    });
    await this.send(this.keys.queues, ['SADD', this.keys.queues, queue]);   // the queue set, first
    let after = null;
    let todo = tasks;
    for (let round = 0; todo.length > 0; round++) {
      if (round === 3) throw new Error('could not find free task ids');
      if (watch) {
        // Waiters before the tasks exist: none of them can finish unseen. One transaction (all
        // keys in the queue's slot): the stream's last id is read with the registration.
        const reply = await this.transaction(k.waiters, [
          ['HSET', k.waiters, ...todo.flatMap((t) => [t.id, '1'])],
          ['XREVRANGE', k.events, '+', '-', 'COUNT', '1']]);
        if (after === null) after = reply[1].length ? reply[1][0][0] : '0-0';
      }
      const keys = [k.tasks, k.sched, k.wake, k.stats, k.soon, k.groups];
      const argv = [String(todo.length)];
      const readyIndex = new Map();   // priority -> position of its ready list in KEYS (from 1)
      for (const t of todo) {
        if (!readyIndex.has(t.priority)) {
          keys.push(k.ready(t.priority));
          readyIndex.set(t.priority, keys.length);
        }
        const delay = t.delayMs === undefined || t.delayMs === null ? '' : String(t.delayMs);
        argv.push(t.id, t.body, String(readyIndex.get(t.priority)), delay, '', '', t.type);
      }
      let reply;
      try {
        reply = await this.evalScript(ENQUEUE_SHA, ENQUEUE_LUA, keys, argv);
      } catch (err) {
        if (watch) await this.send(k.waiters, ['HDEL', k.waiters, ...todo.map((t) => t.id)]);
        throw err;   // TQBROKEN <key>: a corrupt key of the queue refused the batch, nothing stored
      }
      const last = reply[reply.length - 1];
      if (Array.isArray(last) && last[0] === '~sig') {
        // a cluster: what the global indexes (in the {#} slot) must learn, applied by index.lua
        const [, ready, due] = reply.pop();
        if (Number(ready) === 1 || Number(due) >= 0) {
          await this.evalScript(INDEX_SHA, INDEX_LUA, [this.keys.groups],
            ['1', queue, String(ready), String(due), '0']);
        }
      }
      if (reply.length > todo.length && reply[todo.length] === '+') {
        // a counter started from zero: the queue is new or was forgotten, name it again
        await this.send(this.keys.queues, ['SADD', this.keys.queues, queue]);
      }
      const taken = todo.filter((t, i) => reply[i] === '');   // an id another task has
      if (watch && taken.length) {
        await this.send(k.waiters, ['HDEL', k.waiters, ...taken.map((t) => t.id)]);
      }
      for (const t of taken) t.id = newId(queue);
      todo = taken;
    }
    return { ids: tasks.map((t) => t.id), bodies: tasks.map((t) => t.body), after };
  }

  /** What Redis says of finished tasks: id -> {state, result, attempts, record} (succeeded,
   *  cancelled), {state: 'dead', error}, or {state: 'unknown'} (its body is gone and nothing
   *  else is left: deleted, purged, or its record expired); unfinished ones are left out.
   *  said: id -> the state an event gave (a success with result_ttl 0 leaves no record). */
  async outcomes(queue, ids, said = new Map()) {
    const k = this.keys.queue(queue);
    // one transaction, one moment: a task that finishes meanwhile is seen whole
    const replies = await this.transaction(k.tasks, ids.flatMap((id) => [
      ['HEXISTS', k.tasks, id], ['GET', k.result(id)], ['ZSCORE', k.dead, id],
      ['HGET', k.errors, id]]));
    const out = new Map();
    ids.forEach((id, i) => {
      const [body, record, dead, error] = replies.slice(4 * i, 4 * i + 4);
      if (record !== null) {
        const rec = JSON.parse(record);
        out.set(id, { state: rec.s, result: rec.r === undefined ? null : rec.r,
          attempts: rec.a, record: rec });
      } else if (dead !== null) {
        out.set(id, { state: 'dead', error: error === null ? null : JSON.parse(error) });
      } else if (!body) {
        const state = said.get(id);
        out.set(id, state === 'succeeded' ? { state, result: null }
          : { state: state === 'deleted' ? state : 'unknown' });
      }
    });
    return out;
  }

  /** Block until every task of `ids` (of one queue, enqueued with watch) has finished, or
   *  timeoutMs passed; returns id -> outcome (see outcomes) for those that finished. */
  async wait(queue, ids, after, timeoutMs = 30000) {
    const k = this.keys.queue(queue);
    if (!this.reader) {
      this.reader = this.client.duplicate();
      await this.reader.connect();
    }
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(ids);
    const done = new Map();
    const said = new Map();   // id -> state its event gave (a result may be kept for 0 s)
    let look = [];            // ids whose keys to look at now
    let lookedAll = 0;        // when every pending task's keys were last looked at
    let quiet = false;        // the stream was read up to now: no event is on its way
    const gone = new Set();   // seen gone with no event read yet (one may be on its way)
    while (pending.size) {
      if (Date.now() - lookedAll >= 5000) look = [...pending];   // (see the quiet slice)
      if (look.length) {
        if (look.length === pending.size) lookedAll = Date.now();
        for (const [id, outcome] of await this.outcomes(queue, look, said)) {
          if (outcome.state === 'unknown' && !quiet && !gone.has(id)) {
            gone.add(id);   // gone for sure once the events up to now are read: look again
            continue;
          }
          done.set(id, outcome);
          pending.delete(id);
        }
        look = [];
        quiet = false;
      }
      const left = deadline - Date.now();
      if (!pending.size || left <= 0) break;
      const read = ['XREAD', 'COUNT', '100', 'BLOCK', String(Math.max(1, Math.min(left, 5000))),
        'STREAMS', k.events, after];
      const got = this.cluster ? await this.reader.sendCommand(k.events, true, read)
        : await this.reader.sendCommand(read);
      if (!got) {
        // A quiet slice. The stream is capped and a purge sends no event: every few seconds
        // (and after such a slice) the keys are looked at, whatever the events said.
        look = [...pending];
        quiet = true;
        continue;
      }
      const entries = got[0][1];
      after = entries[entries.length - 1][0];
      for (const [, flat] of entries) {
        const f = fieldsOf(flat);
        if (pending.has(f.id)) {
          said.set(f.id, f.s);
          look.push(f.id);
        }
      }
    }
    return done;
  }
}

module.exports = {
  PROTOCOL, ALPHABET, ENQUEUE_LUA, ENQUEUE_SHA, INDEX_LUA, INDEX_SHA, Producer, clientFor, crc32,
  encodeBody, hintOf, keysOf, newId, pyFloat,
};
