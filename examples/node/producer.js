#!/usr/bin/env node
'use strict';
// Enqueue N tasks for tq's workers from Node.js and print each one's outcome as a JSON line:
//
//   node producer.js --type greet --count 3 --payload '{"name": "Ada"}'
//
// Task k's payload is --payload with "i": k added. Exit status: 0 once every task ended
// (succeeded, dead, cancelled, deleted or gone), 1 if some had not by --wait seconds or
// something failed, 2 for bad arguments.

const { parseArgs } = require('node:util');
const { createClient, createCluster } = require('redis');
const { Producer, clientFor } = require('./tq');

const HELP = `usage: node producer.js --type TYPE [options]
  --url URL          Redis: redis://, rediss://, or redis+cluster://h:p,h:p for a Redis
                     Cluster (default: TQ_REDIS_URL, else redis://127.0.0.1:6379/0)
  --namespace NS     tq's key prefix (default: tq)
  --type TYPE        the task type (a handler's name)
  --queue QUEUE      the queue (default: the type)
  --count N          how many tasks (default: 1)
  --payload JSON     each task's payload, an object; "i" (0..N-1) is added (default: {})
  --priority P       0..9 (default: 0)
  --max-retries N    (default: the handler's)
  --timeout S        seconds (default: the handler's)
  --delay S          run after S seconds, by Redis' clock
  --wait S           seconds to wait for the outcomes; 0: do not wait (default: 30)`;

function options() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: process.env.TQ_REDIS_URL || 'redis://127.0.0.1:6379/0' },
      namespace: { type: 'string', default: 'tq' },
      type: { type: 'string' },
      queue: { type: 'string' },
      count: { type: 'string', default: '1' },
      payload: { type: 'string', default: '{}' },
      priority: { type: 'string', default: '0' },
      'max-retries': { type: 'string' },
      timeout: { type: 'string' },
      delay: { type: 'string' },
      wait: { type: 'string', default: '30' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.type) {
    console.error(HELP);
    process.exit(values.help ? 0 : 2);
  }
  return values;
}

async function main() {
  const o = options();
  const queue = o.queue || o.type;
  const template = JSON.parse(o.payload);
  const specs = [];
  for (let i = 0; i < Number(o.count); i++) {
    specs.push({
      type: o.type,
      payload: { ...template, i },
      priority: Number(o.priority),
      maxRetries: o['max-retries'] === undefined ? null : Number(o['max-retries']),
      timeout: o.timeout === undefined ? null : Number(o.timeout),
      delayMs: o.delay === undefined ? null : Math.round(Number(o.delay) * 1000),
    });
  }
  const client = clientFor(o.url, createClient, createCluster);
  client.on('error', (err) => console.error(`redis: ${err.message}`));
  await client.connect();
  const producer = new Producer(client, { namespace: o.namespace });
  const waitMs = Number(o.wait) * 1000;
  let code = 0;
  try {
    const { ids, bodies, after } = await producer.enqueue(queue, specs, { watch: waitMs > 0 });
    const outcomes = waitMs > 0 ? await producer.wait(queue, ids, after, waitMs) : new Map();
    ids.forEach((id, i) => {
      const outcome = outcomes.get(id) || { state: waitMs > 0 ? 'unfinished' : 'enqueued' };
      if (outcome.state === 'unfinished') code = 1;
      console.log(JSON.stringify({ id, queue, type: o.type, body: bodies[i], ...outcome }));
    });
  } finally {
    await producer.close();
    await client.quit();
  }
  return code;
}

main().then((code) => process.exit(code), (err) => {
  console.error(`producer: ${err.message}`);
  process.exit(1);
});
