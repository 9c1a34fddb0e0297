#!/usr/bin/env node
// Validates docs/asyncapi/{websocket,events}.yaml:
//   1. with @asyncapi/parser (AsyncAPI 3.0): every diagnostic is printed; an
//      error, or any diagnostic about an unresolved $ref, fails the run;
//   2. every message example against its payload (and headers) schema;
//   3. against the code they describe, read as text (no build needed):
//      - broker/src/events/{mod,chat,auth}.rs: every event type (TYPE) is a
//        message of events.yaml and vice versa, with its VERSION, EXCHANGE
//        and the fields of its struct (camelCase, required, nullable);
//      - broker/src/envelope.rs: the envelope's fields;
//      - broker/src/topology.rs: exchanges, queues, their bindings, and the
//        messages each queue's bindings route to it; the fan-out queue's
//        static bindings (FANOUT_BINDINGS) and its per-user ones
//        (FANOUT_RECIPIENT_EXCHANGES x recipient_key), through which every
//        chat.events and chat.realtime event reaches it by its recipients'
//        keys (the BCC header), and that no durable binding matches such a key;
//      - broker/src/publisher.rs, broker/src/outbox.rs, chat-svc/src: the
//        BCC header; `mandatory` = has_durable_consumer (topology.rs: a
//        binding of DURABLE_QUEUES on that exchange topic-matches the key),
//        so each send operation is mandatory exactly when a durable queue
//        binds its routing key; chat-svc publishing every event with its
//        recipients; chat-svc/src/realtime/routes.rs and
//        socket.rs: the per-user bindings (bound before `ready`, the linger);
//        the examples' BCC = the recipients of the event's frame (frames.rs);
//      - chat-svc/src/realtime/socket.rs: every `ClientFrame` serde rename
//        (and its fields), error codes, close codes and close reasons;
//      - chat-svc/src/events/frames.rs and socket.rs: every server frame
//        type and its members, and which frames carry a cursor.
//
// Usage: npm ci --prefix docs/asyncapi && node docs/asyncapi/validate.mjs
//        (CODE_ROOT=<dir> reads the code from a copy of the repository instead)
// Exits 0 when everything holds, 1 otherwise.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, fromFile } from '@asyncapi/parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const HERE = dirname(fileURLToPath(import.meta.url));
// The code read: this checkout, or CODE_ROOT (a copy, to try a change of the code).
const ROOT = process.env.CODE_ROOT || join(HERE, '..', '..');
const SEVERITY = ['error', 'warning', 'info', 'hint'];

let passed = 0;
let failed = 0;

function report(name, problems) {
  if (problems.length === 0) {
    passed += 1;
    console.log(`  ok    ${name}`);
  } else {
    failed += 1;
    console.log(`  FAIL  ${name}`);
    for (const p of problems) console.log(`          - ${p}`);
  }
}

// ------------------------------------------------------------------ helpers

function rust(rel) {
  const text = readFileSync(join(ROOT, rel), 'utf8');
  // Full-line comments (including /// and //! docs) out; code stays.
  return text
    .split('\n')
    .filter((l) => !/^\s*\/\//.test(l))
    .join('\n');
}

/** The text between the `{` at or after `from` and its matching `}`. */
function block(src, from) {
  const open = src.indexOf('{', from);
  if (open < 0) return '';
  let depth = 0;
  for (let i = open; i < src.length; i += 1) {
    if (src[i] === '{') depth += 1;
    else if (src[i] === '}') {
      depth -= 1;
      if (depth === 0) return src.slice(open + 1, i);
    }
  }
  return src.slice(open + 1);
}

/** The body of `fn name`. */
function fnBody(src, name) {
  const at = src.search(new RegExp(`fn ${name}\\b`));
  return at < 0 ? '' : block(src, at);
}

/** The expression of `name: <expr>,` in a struct literal (to its top-level comma), whitespace collapsed. */
function fieldExpr(src, name) {
  const m = new RegExp(`\\b${name}\\s*:\\s*`).exec(src);
  if (!m) return undefined;
  let depth = 0;
  let i = m.index + m[0].length;
  const start = i;
  for (; i < src.length; i += 1) {
    const c = src[i];
    if ('([{'.includes(c)) depth += 1;
    else if (')]}'.includes(c)) {
      if (depth === 0) break;
      depth -= 1;
    } else if (c === ',' && depth === 0) break;
  }
  return src.slice(start, i).replace(/\s+/g, ' ').replace(/\(\s+/g, '(').replace(/\s+\)/g, ')').trim();
}

const camel = (s) => s.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

const setDiff = (a, b) => [...a].filter((x) => !b.has(x));

function compareSets(problems, what, fromCode, fromDoc, codeName, docName) {
  for (const x of setDiff(fromCode, fromDoc)) problems.push(`${what} ${JSON.stringify(x)} is in ${codeName} but not in ${docName}`);
  for (const x of setDiff(fromDoc, fromCode)) problems.push(`${what} ${JSON.stringify(x)} is in ${docName} but not in ${codeName}`);
}

/** Struct definitions with serde attributes: name -> {renameAll, fields}. */
function structs(src) {
  const out = new Map();
  const re = /((?:#\[[^\]]*\]\s*)*)pub struct (\w+)(?:<[^>{]*>)?\s*\{/g;
  let m;
  while ((m = re.exec(src))) {
    const attrs = m[1];
    const body = block(src, m.index + m[0].length - 1);
    out.set(m[2], {
      renameAll: /rename_all\s*=\s*"camelCase"/.test(attrs),
      denyUnknown: /deny_unknown_fields/.test(attrs),
      fields: fields(body, /rename_all\s*=\s*"camelCase"/.test(attrs)),
    });
  }
  return out;
}

/** `pub name: Type,` lines (or `name: Type` in an enum variant) with their serde attributes. */
function fields(body, camelCase) {
  const out = [];
  let pending = '';
  // One item per line, or per top-level comma on a line (`{ a: String, b: Option<String> }`);
  // attributes stay whole.
  const items = [];
  for (const l of body.split('\n')) {
    const t = l.trim();
    if (t.startsWith('#[')) {
      items.push(t);
      continue;
    }
    let depth = 0;
    let cur = '';
    for (const c of t) {
      if ('<([{'.includes(c)) depth += 1;
      else if ('>)]}'.includes(c)) depth -= 1;
      if (c === ',' && depth === 0) {
        items.push(cur);
        cur = '';
      } else cur += c;
    }
    items.push(cur);
  }
  for (const raw of items) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#[')) {
      pending += line;
      continue;
    }
    const f = /^(?:pub\s+)?(\w+)\s*:\s*(.+?)\s*$/.exec(line);
    if (!f) continue;
    const rename = /rename\s*=\s*"([^"]+)"/.exec(pending);
    const type = f[2].replace(/,$/, '');
    out.push({
      rust: f[1],
      wire: rename ? rename[1] : camelCase ? camel(f[1]) : f[1],
      type,
      optional: /^Option</.test(type),
      defaulted: /\bdefault\b/.test(pending),
      // None is left out rather than sent as null.
      skipped: /skip_serializing_if/.test(pending),
    });
    pending = '';
  }
  return out;
}

/** JSON types a (resolved) schema admits, coarsely. */
function jsonTypes(s) {
  if (!s || typeof s !== 'object') return new Set(['any']);
  const out = new Set();
  if (Array.isArray(s.type)) s.type.forEach((t) => out.add(t));
  else if (typeof s.type === 'string') out.add(s.type);
  if ('const' in s) out.add(s.const === null ? 'null' : typeof s.const === 'number' ? 'integer' : typeof s.const);
  if (Array.isArray(s.enum)) s.enum.forEach((v) => out.add(v === null ? 'null' : typeof v));
  for (const k of ['oneOf', 'anyOf', 'allOf']) for (const sub of s[k] || []) jsonTypes(sub).forEach((t) => out.add(t));
  if (out.size === 0) out.add('any');
  return out;
}

function rustJsonType(type) {
  const t = type.replace(/^Option<(.*)>$/, '$1');
  if (/^(String|&str|Uuid|DateTime<.*>)$/.test(t)) return 'string';
  if (t === 'bool') return 'boolean';
  if (/^[iu](8|16|32|64|128|size)$/.test(t)) return 'integer';
  if (/^Vec</.test(t)) return 'array';
  if (/^[A-Z]$/.test(t)) return 'any'; // a generic parameter
  return 'object'; // another struct, a map (Cursors)
}

/** A Rust struct against a resolved object schema; recurses into nested structs. */
function compareStruct(problems, where, struct, schema, allStructs) {
  if (!schema || typeof schema !== 'object' || !schema.properties) {
    problems.push(`${where}: no object schema with properties`);
    return;
  }
  const props = schema.properties;
  const wire = new Set(struct.fields.map((f) => f.wire));
  compareSets(problems, `${where}: field`, wire, new Set(Object.keys(props)), 'the struct', 'the schema');
  const mustBeRequired = new Set(struct.fields.filter((f) => !f.optional && !f.defaulted).map((f) => f.wire));
  compareSets(problems, `${where}: required field`, mustBeRequired, new Set(schema.required || []), 'the struct (neither Option nor #[serde(default)])', 'the schema\'s required');
  if (schema.additionalProperties === false && struct.denyUnknown === false && where.startsWith('client')) {
    problems.push(`${where}: the server ignores unknown members, so additionalProperties must not be false`);
  }
  for (const f of struct.fields) {
    const p = props[f.wire];
    if (!p) continue;
    const types = jsonTypes(p);
    const want = rustJsonType(f.type);
    if (f.optional && !f.skipped && !types.has('null') && !types.has('any')) problems.push(`${where}.${f.wire}: Option<...> but the schema does not allow null`);
    if (!f.optional && types.has('null')) problems.push(`${where}.${f.wire}: not an Option but the schema allows null`);
    if (want !== 'any' && !types.has('any') && !types.has(want)) problems.push(`${where}.${f.wire}: ${f.type} is ${want} on the wire, the schema says ${[...types].join('|')}`);
    const inner = f.type.replace(/^Option<(.*)>$/, '$1');
    if (allStructs.has(inner)) compareStruct(problems, `${where}.${f.wire}`, allStructs.get(inner), p, allStructs);
  }
}

/** A topic-exchange binding key against a routing key. */
function topicMatches(pattern, key) {
  const p = pattern.split('.');
  const k = key.split('.');
  const go = (i, j) => {
    if (i === p.length) return j === k.length;
    if (p[i] === '#') return go(i + 1, j) || (j < k.length && go(i, j + 1));
    if (j === k.length) return false;
    return (p[i] === '*' || p[i] === k[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

/** The `type` const of a message payload (directly or inside allOf). */
function payloadConst(payload, prop) {
  if (!payload) return undefined;
  const own = payload.properties?.[prop];
  if (own && 'const' in own) return own.const;
  for (const sub of payload.allOf || []) {
    const c = payloadConst(sub, prop);
    if (c !== undefined) return c;
  }
  return undefined;
}

/** The schema of `prop` in a payload: the most specific one (with a shape) among its allOf parts. */
function payloadProp(payload, prop) {
  if (!payload) return undefined;
  const shaped = (p) => p && (p.properties || p.type || p.allOf || p.oneOf || p.anyOf);
  const parts = [payload, ...(payload.allOf || [])].map((s) => s.properties?.[prop]).filter(Boolean);
  return parts.reverse().find(shaped) || parts[0];
}

// ---------------------------------------------------------------- the parser

async function parse(file) {
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, join(HERE, file)).parse();
  const counts = [0, 0, 0, 0];
  const problems = [];
  for (const d of diagnostics) {
    counts[d.severity] = (counts[d.severity] || 0) + 1;
    const where = d.path && d.path.length ? ` (at ${d.path.join('.')})` : '';
    const sev = SEVERITY[d.severity] || String(d.severity);
    console.log(`  ${sev.padEnd(7)} ${d.code}: ${d.message}${where}`);
    const unresolved = d.code === 'invalid-ref' || /\$ref|could not be resolved|cannot resolve|unresolved reference|missing reference/i.test(d.message);
    if (d.severity === 0) problems.push(`${d.code}: ${d.message}${where}`);
    else if (unresolved) problems.push(`(${sev} treated as an error) ${d.code}: ${d.message}${where}`);
  }
  if (!document && problems.length === 0) problems.push('the parser returned no document');
  report(
    `parser: ${counts[0]} errors, ${counts[1]} warnings, ${counts[2]} infos, ${counts[3]} hints`,
    problems,
  );
  return document;
}

function checkExamples(doc, { envelopeHeaders }) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const problems = [];
  let n = 0;
  for (const message of doc.allMessages()) {
    const json = message.json();
    const id = message.id();
    const payload = message.payload()?.json();
    const headers = message.headers()?.json();
    const validPayload = payload ? ajv.compile(payload) : null;
    const validHeaders = headers ? ajv.compile(headers) : null;
    const examples = json.examples || [];
    if (examples.length === 0) problems.push(`${id}: no example`);
    for (const ex of examples) {
      n += 1;
      const name = `${id}/${ex.name || '?'}`;
      if (validPayload && !validPayload(ex.payload)) {
        problems.push(`${name}: payload ${ajv.errorsText(validPayload.errors)}`);
      }
      if (ex.headers && validHeaders && !validHeaders(ex.headers)) {
        problems.push(`${name}: headers ${ajv.errorsText(validHeaders.errors)}`);
      }
      if (ex.payload?.type !== json.name) problems.push(`${name}: example type ${ex.payload?.type} is not the message name ${json.name}`);
      if (envelopeHeaders) {
        const cid = ex.payload?.correlationId;
        const hdr = ex.headers?.['correlation-id'];
        if (cid !== hdr) problems.push(`${name}: header correlation-id (${hdr}) must be the envelope's correlationId (${cid})`);
      }
    }
  }
  report(`examples: ${n} validated against their schemas`, problems);
}

// -------------------------------------------------------------- events.yaml

function checkEvents(doc) {
  const J = doc.json();
  const mod = rust('broker/src/events/mod.rs');
  const files = { chat: rust('broker/src/events/chat.rs'), auth: rust('broker/src/events/auth.rs') };
  const topology = rust('broker/src/topology.rs');
  const envelopeSrc = rust('broker/src/envelope.rs');

  // Exchanges: Exchange variant -> name.
  const exchanges = new Map();
  for (const m of fnBody(topology, 'base_name').matchAll(/Self::(\w+)\s*=>\s*"([^"]+)"/g)) exchanges.set(m[1], m[2]);

  // Events: TYPE, VERSION, EXCHANGE of every EventPayload, by macro or impl.
  const events = new Map(); // type -> {struct, version, exchange, file}
  const allStructs = new Map();
  const problems = [];
  for (const [file, src] of Object.entries(files)) {
    for (const [k, v] of structs(src)) allStructs.set(k, v);
    const macros = new Map();
    for (const m of src.matchAll(/macro_rules!\s*(\w+)/g)) {
      const body = block(src, m.index);
      const version = /const VERSION: u32 = (\d+);/.exec(body);
      const exchange = /const EXCHANGE: Exchange = (?:Exchange::(\w+)|\$(\w+));/.exec(body);
      macros.set(m[1], { version: version && Number(version[1]), exchange: exchange && exchange[1], exchangeParam: exchange && exchange[2] });
    }
    for (const [name, mac] of macros) {
      const re = new RegExp(`${name}!\\(\\s*(\\w+)\\s*,\\s*"([^"]+)"\\s*(?:,\\s*Exchange::(\\w+)\\s*)?,?\\s*\\)`, 'g');
      for (const m of src.matchAll(re)) {
        if (m[1].startsWith('$')) continue;
        events.set(m[2], { struct: m[1], version: mac.version, exchange: m[3] || mac.exchange, file });
      }
    }
    for (const m of src.matchAll(/impl EventPayload for (\w+)\s*\{/g)) {
      const body = block(src, m.index);
      const type = /const TYPE: &'static str = "([^"]+)";/.exec(body);
      if (!type) continue;
      const version = /const VERSION: u32 = (\d+);/.exec(body);
      const exchange = /Exchange::(\w+)/.exec(body);
      events.set(type[1], { struct: m[1], version: version && Number(version[1]), exchange: exchange && exchange[1], file });
    }
  }
  const closedSet = new Set([...block(mod, mod.indexOf('closed_event_set! {')).matchAll(/=>\s*(?:\w+::)*(\w+)/g)].map((m) => m[1]));
  const withType = new Set([...events.values()].map((e) => e.struct));
  compareSets(problems, 'event struct', closedSet, withType, 'closed_event_set! (events/mod.rs)', 'the structs with a TYPE in chat.rs/auth.rs');
  report(`code: ${events.size} event types read from broker/src/events/{chat,auth}.rs`, problems);

  // Messages of the document.
  const messages = new Map(); // type -> message json
  const p1 = [];
  for (const [key, m] of Object.entries(J.components?.messages || {})) {
    const type = payloadConst(m.payload, 'type');
    if (type !== m.name) p1.push(`components.messages.${key}: name ${m.name} but payload type const ${type}`);
    messages.set(m.name, m);
  }
  compareSets(p1, 'event type', new Set(events.keys()), new Set(messages.keys()), 'broker/src/events', 'events.yaml components.messages');
  report('every event type of the code is a message of events.yaml, and vice versa', p1);

  // Version, producer channel, exchange, data shape.
  const sendChannels = new Map(); // type -> [channel]
  for (const ch of Object.values(J.channels || {})) {
    const amqp = ch.bindings?.amqp;
    if (amqp?.is !== 'routingKey') continue;
    for (const m of Object.values(ch.messages || {})) {
      if (!sendChannels.has(m.name)) sendChannels.set(m.name, []);
      sendChannels.get(m.name).push(ch);
    }
  }
  const sendOps = new Map();
  for (const op of Object.values(J.operations || {})) {
    if (op.action !== 'send') continue;
    for (const m of op.messages || []) sendOps.set(m.name, (sendOps.get(m.name) || 0) + 1);
  }
  const p2 = [];
  const p3 = [];
  for (const [type, ev] of events) {
    const m = messages.get(type);
    if (!m) continue;
    const version = payloadConst(m.payload, 'version');
    if (version !== ev.version) p2.push(`${type}: VERSION ${ev.version} in code, version const ${version} in the doc`);
    const chans = sendChannels.get(type) || [];
    const exchange = exchanges.get(ev.exchange);
    if (chans.length !== 1) p2.push(`${type}: ${chans.length} routing-key channels carry it (want 1)`);
    for (const ch of chans) {
      if (ch.address !== type) p2.push(`${type}: channel address ${ch.address} is not the routing key ${type}`);
      if (ch.bindings.amqp.exchange?.name !== exchange) p2.push(`${type}: exchange ${ch.bindings.amqp.exchange?.name} in the doc, ${exchange} (Exchange::${ev.exchange}) in code`);
      if (ch.bindings.amqp.exchange?.type !== 'topic' || ch.bindings.amqp.exchange?.durable !== true) p2.push(`${type}: exchange ${exchange} must be a durable topic exchange`);
    }
    if (sendOps.get(type) !== 1) p2.push(`${type}: ${sendOps.get(type) || 0} send operations publish it (want 1)`);
    if (m['x-parser-message-name'] === undefined && !m.name) p2.push(`${type}: message has no name`);
    const struct = allStructs.get(ev.struct);
    if (!struct) p3.push(`${type}: struct ${ev.struct} not found`);
    else compareStruct(p3, `${type}.data (${ev.struct})`, struct, payloadProp(m.payload, 'data'), allStructs);
  }
  report('each event: version, one publisher, routing key = type, its exchange', p2);
  report('each event: data fields = its struct\'s serde fields (names, required, nullable, types)', p3);

  // The envelope.
  const p4 = [];
  const env = structs(envelopeSrc).get('Envelope');
  const envSchema = J.components?.schemas?.Envelope;
  if (!env) p4.push('struct Envelope not found in broker/src/envelope.rs');
  else compareStruct(p4, 'Envelope', env, envSchema, new Map());
  report('envelope fields = broker::Envelope', p4);

  // Recipient keys: which exchanges a fan-out queue binds them on, their form.
  const p6 = [];
  const recipientExchanges = (/pub const FANOUT_RECIPIENT_EXCHANGES[^=]*=\s*\[([\s\S]*?)\];/.exec(topology)?.[1] || '')
    .match(/Exchange::\w+/g)?.map((e) => e.slice('Exchange::'.length)) || [];
  const keyFormat = /format!\("([^"{}]*)\{user_id\}"\)/.exec(fnBody(topology, 'recipient_key'));
  const prefix = keyFormat?.[1];
  if (recipientExchanges.length === 0) p6.push('could not read FANOUT_RECIPIENT_EXCHANGES from topology.rs');
  if (!prefix) p6.push('could not read recipient_key\'s format!("<prefix>{user_id}") from topology.rs');
  for (const e of recipientExchanges) if (!exchanges.has(e)) p6.push(`FANOUT_RECIPIENT_EXCHANGES: Exchange::${e} has no base_name`);
  const recipientKey = prefix ? `${prefix}{userId}` : undefined;
  const onRecipientExchange = (ev) => recipientExchanges.includes(ev.exchange);

  // Who adds the keys: the publisher's BCC header, the outbox record, chat-svc.
  const publisher = rust('broker/src/publisher.rs');
  const outbox = rust('broker/src/outbox.rs');
  const bccHeader = /ShortString::from\("([^"]+)"\)/.exec(fnBody(publisher, 'with_bcc'))?.[1];
  if (!bccHeader) p6.push('could not read the header with_bcc sets (publisher.rs)');
  if (!/with_bcc\(/.test(fnBody(publisher, 'publish_batch'))) p6.push('publish_batch does not call with_bcc (publisher.rs)');
  if (!/recipient_key/.test(fnBody(publisher, 'publish_to'))) p6.push('Publisher::publish_to does not map its recipients through recipient_key');
  if (!/recipient_key/.test(fnBody(outbox, 'for_recipients'))) p6.push('Staged::for_recipients does not map its users through recipient_key (outbox.rs)');
  if (!/bcc:\s*self\.bcc/.test(fnBody(outbox, 'outgoing'))) p6.push('an outbox record does not publish its bcc (OutboxRecord::outgoing)');
  // chat-svc publishes nothing without recipients: each staged event gets
  // them (for_recipients), each direct publish is publish_to.
  const chatSrc = [];
  const walk = (dir) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.rs')) chatSrc.push([rel, rust(rel)]);
    }
  };
  walk('chat-svc/src');
  let staged = 0;
  let direct = 0;
  for (const [rel, src] of chatSrc) {
    for (const m of src.matchAll(/\.stage(?:_as)?\(/g)) {
      staged += 1;
      const statement = src.slice(m.index, src.indexOf(';', m.index));
      if (!statement.includes('.for_recipients(')) p6.push(`${rel}: an event staged without .for_recipients(..) (it would carry no recipient keys)`);
    }
    for (const m of src.matchAll(/\.publish(_to)?\(/g)) {
      if (m[1]) direct += 1;
      else p6.push(`${rel}: .publish(..) publishes without recipients; chat-svc uses publish_to`);
    }
  }
  if (staged === 0 || direct === 0) p6.push(`chat-svc/src: found ${staged} staged events and ${direct} publish_to calls (want both)`);
  for (const [type, ev] of events) {
    if (onRecipientExchange(ev) && ev.file !== 'chat') p6.push(`${type}: on a recipient exchange but not a chat-svc event`);
    if (prefix && type.startsWith(prefix)) p6.push(`${type}: an event type starting with ${prefix} would match recipient bindings`);
  }

  // mandatory: publish_batch's flag, and the rule it follows. With
  // has_durable_consumer(m.exchange, &m.routing_key), an event is published
  // mandatory exactly when a queue of DURABLE_QUEUES binds its routing key
  // on its exchange (topic matching): such an event must reach that queue,
  // so an unroutable one is an error and stays in the outbox; the others
  // only reach fan-out queues through recipient keys, and one with nobody
  // connected is dropped by the broker, which is no error.
  const mandatory = fieldExpr(fnBody(publisher, 'publish_batch'), 'mandatory');
  const durableQueueNames = (/pub const DURABLE_QUEUES[^=]*=\s*\[([\s\S]*?)\];/.exec(topology)?.[1] || '').match(/\w+/g) || [];
  const specs = new Map(); // const name -> [{exchange (variant), key}]
  for (const m of topology.matchAll(/pub const (\w+): QueueSpec = QueueSpec \{/g)) {
    const body = block(topology, m.index + m[0].length - 1);
    specs.set(m[1], [...body.matchAll(/\(Exchange::(\w+),\s*"([^"]+)"\)/g)].map((b) => ({ exchange: b[1], key: b[2] })));
  }
  if (durableQueueNames.length === 0) p6.push('could not read DURABLE_QUEUES from topology.rs');
  for (const n of durableQueueNames) if (!specs.has(n)) p6.push(`DURABLE_QUEUES: ${n} is not a QueueSpec of topology.rs`);
  for (const n of specs.keys()) if (!durableQueueNames.includes(n)) p6.push(`QueueSpec ${n} is not in DURABLE_QUEUES (it would not be declared, nor count for mandatory)`);
  const durableBindings = durableQueueNames.flatMap((n) => specs.get(n) || []);
  const hasDurableConsumer = (exchange, key) => durableBindings.some((b) => b.exchange === exchange && topicMatches(b.key, key));
  // has_durable_consumer as the code has it: DURABLE_QUEUES' bindings, same
  // exchange, topic_matches(pattern, key).
  const hdc = fnBody(topology, 'has_durable_consumer');
  const hdcSig = /pub fn has_durable_consumer\(\s*(\w+)\s*:\s*Exchange\s*,\s*(\w+)\s*:\s*&str\s*\)\s*->\s*bool/.exec(topology);
  const hdcReads = hdcSig
    && /DURABLE_QUEUES\s*\.iter\(\)\s*\.any\(/.test(hdc)
    && /\.bindings\s*\.iter\(\)\s*\.any\(/.test(hdc)
    && new RegExp(`\\*?\\w+\\s*==\\s*${hdcSig[1]}\\b`).test(hdc)
    && new RegExp(`topic_matches\\(\\s*\\w+\\s*,\\s*${hdcSig[2]}\\s*\\)`).test(hdc)
    && !/!\s*topic_matches|\.all\(/.test(hdc);
  if (!/fn topic_matches\(/.test(topology)) p6.push('topology.rs has no fn topic_matches');
  let mandatoryFor; // (exchange variant, routing key) -> bool
  let rule;
  if (mandatory === 'true' || mandatory === 'false') {
    mandatoryFor = () => mandatory === 'true';
    rule = `mandatory ${mandatory}`;
  } else if (/^(?:crate::topology::|topology::)?has_durable_consumer\(\s*m\.exchange\s*,\s*&m\.routing_key\s*,?\s*\)$/.test(mandatory || '')) {
    if (!hdcReads) p6.push('could not read has_durable_consumer(exchange, key) as "a binding of DURABLE_QUEUES on that exchange topic-matches key" (topology.rs)');
    else {
      mandatoryFor = hasDurableConsumer;
      rule = `mandatory iff a queue of DURABLE_QUEUES (${durableQueueNames.join(', ')}) binds the routing key`;
    }
  } else p6.push(`could not read publish_batch's mandatory flag (${mandatory})`);
  report(`code: recipient keys ${recipientKey} (header ${bccHeader}) on ${recipientExchanges.map((e) => exchanges.get(e)).join(', ')}; ${rule || 'mandatory ?'}; chat-svc: ${staged} staged, ${direct} direct publishes, all with recipients`, p6);

  // Each publish: mandatory and bcc as the code has them, the BCC header.
  const p7 = [];
  const exchangeVariant = new Map([...exchanges].map(([k, v]) => [v, k]));
  const notMandatory = [];
  for (const [id, op] of Object.entries(J.operations || {})) {
    if (op.action !== 'send') continue;
    const ex = exchangeVariant.get(op.channel?.bindings?.amqp?.exchange?.name);
    const amqp = op.bindings?.amqp || {};
    // The routing key is the channel's address (= the event type, checked above).
    const key = op.channel?.address;
    if (mandatoryFor) {
      const want = mandatoryFor(ex, key);
      if (!want) notMandatory.push(key);
      if (amqp.mandatory !== want) p7.push(`${id}: mandatory is ${amqp.mandatory}, the code publishes ${key} on ${exchanges.get(ex)} with mandatory ${want}${mandatoryFor === hasDurableConsumer ? (want ? ' (a durable queue binds it)' : ' (no durable queue binds it)') : ` (${rule})`}`);
    }
    const want = recipientExchanges.includes(ex) ? [recipientKey] : undefined;
    if (JSON.stringify(amqp.bcc) !== JSON.stringify(want)) p7.push(`${id}: bcc ${JSON.stringify(amqp.bcc)}, want ${JSON.stringify(want)} (on ${exchanges.get(ex)})`);
  }
  // Nothing may be lost silently but what only sockets want: every event
  // published without mandatory reaches a fan-out queue by recipient keys.
  for (const [type, ev] of events) {
    if (mandatoryFor && !mandatoryFor(ev.exchange, type) && !onRecipientExchange(ev)) p7.push(`${type}: no durable queue binds it and it carries no recipient keys, so nothing receives it`);
  }
  // The description names the events published without mandatory.
  const described = J.info?.description || '';
  for (const t of notMandatory) if (!described.includes(`\`${t}\``)) p7.push(`${t} is published without mandatory: info.description must name it`);
  const headerSchema = J.components?.schemas?.AmqpHeaders?.properties?.[bccHeader];
  if (!headerSchema) p7.push(`AmqpHeaders has no ${bccHeader} header`);
  else if (prefix) {
    const re = new RegExp(headerSchema.items?.pattern || '(?!)');
    if (headerSchema.type !== 'array' || !re.test(`${prefix}u1`) || re.test('u1')) p7.push(`AmqpHeaders.${bccHeader}: an array of strings "${prefix}<userId>"`);
  }
  report(`publishes: mandatory = a durable queue binds the routing key (not mandatory: ${notMandatory.join(', ') || 'none'}), bcc ${recipientKey} exactly on ${recipientExchanges.map((e) => exchanges.get(e)).join(' and ')}, header ${bccHeader}`, p7);

  // Examples: BCC = the recipients of the event's frame (frames.rs), as keys.
  const p8 = [];
  const frameSrc = rust('chat-svc/src/events/frames.rs');
  const variantStruct = new Map([...block(mod, mod.indexOf('closed_event_set! {')).matchAll(/(\w+)\s*=>\s*(?:\w+::)*(\w+)/g)].map((m) => [m[1], m[2]]));
  const typeOfStruct = new Map([...events].map(([type, ev]) => [ev.struct, type]));
  const recipientsOf = new Map(); // type -> data -> [userId]
  for (const arm of fnBody(frameSrc, 'frame_for').split(/Event::/).slice(1)) {
    const head = /^(\w+)\(e\)\s*=>\s*\(\s*([^]*?),\s*\n/.exec(arm);
    if (!head) continue;
    const type = typeOfStruct.get(variantStruct.get(head[1]));
    const expr = head[2].replace(/\s+/g, '');
    const m = /^e((?:\.\w+)+?)(?:\.clone\(\)|\.iter\(\)\.filter\(\|\w+\|\*\*\w+!=e((?:\.\w+)+)\)\.cloned\(\)\.collect\(\))$/.exec(expr);
    if (!type) p8.push(`frames.rs: Event::${head[1]} is no event type`);
    else if (!m) p8.push(`frames.rs: cannot read the recipients of ${type} (${expr})`);
    else {
      const path = (p) => p.split('.').slice(1).map(camel);
      const get = (data, p) => path(p).reduce((o, k) => o?.[k], data);
      recipientsOf.set(type, (data) => (get(data, m[1]) || []).filter((u) => !m[2] || u !== get(data, m[2])));
    }
  }
  let withBcc = 0;
  for (const [type, ev] of events) {
    const msg = messages.get(type);
    if (!msg) continue;
    if (onRecipientExchange(ev) && !recipientsOf.has(type)) p8.push(`${type}: frames.rs builds no frame (so no recipients) for it`);
    for (const ex of msg.examples || []) {
      const bcc = ex.headers?.[bccHeader];
      const name = `${type}/${ex.name}`;
      if (!onRecipientExchange(ev)) {
        if (bcc !== undefined) p8.push(`${name}: ${exchanges.get(ev.exchange)} events carry no ${bccHeader}`);
        continue;
      }
      const want = (recipientsOf.get(type)?.(ex.payload?.data) || []).map((u) => `${prefix}${u}`);
      withBcc += 1;
      if (JSON.stringify(bcc) !== JSON.stringify(want)) p8.push(`${name}: ${bccHeader} ${JSON.stringify(bcc)}, its frame's recipients give ${JSON.stringify(want)}`);
    }
  }
  report(`examples: ${withBcc} with ${bccHeader} = their frame's recipients (frames.rs) as ${recipientKey}`, p8);

  // Queues: names, bindings, and what the bindings route to each.
  const queues = [];
  for (const m of topology.matchAll(/pub const (\w+): QueueSpec = QueueSpec \{/g)) {
    const body = block(topology, m.index + m[0].length - 1);
    const name = /base_name:\s*"([^"]+)"/.exec(body)[1];
    const bindings = [...body.matchAll(/\(Exchange::(\w+),\s*"([^"]+)"\)/g)].map((b) => ({ exchange: exchanges.get(b[1]), key: b[2] }));
    queues.push({ name, bindings, recipientBindings: [], durable: true });
  }
  const fan = /pub const FANOUT_BINDINGS[^=]*=\s*&\[([\s\S]*?)\];/.exec(topology);
  const fanName = /"\{\}(chat-svc\.fanout\.)\{instance_id\}"/.exec(topology);
  if (fan && fanName) {
    queues.push({
      name: `${fanName[1]}{`,
      fanout: true,
      bindings: [...fan[1].matchAll(/\(Exchange::(\w+),\s*"([^"]+)"\)/g)].map((b) => ({ exchange: exchanges.get(b[1]), key: b[2] })),
      recipientBindings: recipientExchanges.map((e) => ({ exchange: exchanges.get(e), key: recipientKey })),
    });
  }
  const p5 = [];
  if (!fan || !fanName) p5.push('could not read FANOUT_BINDINGS / fanout_queue from topology.rs');
  // The per-user bindings, as routes.rs and socket.rs make them.
  const routes = rust('chat-svc/src/realtime/routes.rs');
  const socketSrc = rust('chat-svc/src/realtime/socket.rs');
  // bind and unbind go through set_binding(.., true / false), which binds
  // or unbinds the recipient key on each recipient exchange.
  const setBinding = fnBody(routes, 'set_binding');
  for (const [fn, call, flag] of [['bind', 'queue_bind', 'true'], ['unbind', 'queue_unbind', 'false']]) {
    const b = fnBody(routes, fn);
    const through = new RegExp(`set_binding\\([^)]*\\b${flag}\\)`).test(b);
    if (!(through && /recipient_key\(/.test(setBinding) && /for \w+ in FANOUT_RECIPIENT_EXCHANGES/.test(setBinding) && setBinding.includes(`.${call}(`))) p5.push(`routes.rs: ${fn} does not ${call} recipient_key(user) on each of FANOUT_RECIPIENT_EXCHANGES`);
  }
  const joinAt = socketSrc.search(/routes\.join\(/);
  const readyAt = socketSrc.search(/"type":\s*"ready"/);
  if (joinAt < 0 || readyAt < 0 || joinAt > readyAt) p5.push('socket.rs: routes.join(..) (the bind) does not come before the `ready` frame');
  if (!/routes\.leave\(/.test(socketSrc)) p5.push('socket.rs: no routes.leave(..) when the last socket closes');
  if (!/rebind_all\(\)/.test(rust('chat-svc/src/events/fanout.rs'))) p5.push('events/fanout.rs: a new fan-out queue is not bound again (rebind_all)');
  const linger = /const LINGER: Duration = Duration::from_secs\((\d+)\);/.exec(routes)?.[1];
  const opTimeout = /const OP_TIMEOUT: Duration = Duration::from_secs\((\d+)\);/.exec(routes)?.[1];
  if (!linger || !opTimeout) p5.push('routes.rs: could not read LINGER / OP_TIMEOUT (whole seconds)');
  const queueChannels = Object.values(J.channels || {}).filter((c) => c.bindings?.amqp?.is === 'queue');
  const receiveOps = Object.values(J.operations || {}).filter((o) => o.action === 'receive');
  const fmt = (b) => `${b.exchange} ${b.key}`;
  const docFmt = (b) => `${b.exchange} ${b.routingKey}`;
  for (const q of queues) {
    const ch = queueChannels.find((c) => (q.fanout ? c.address.startsWith(q.name) : c.address === q.name));
    if (!ch) {
      p5.push(`queue ${q.name} (topology.rs) has no queue channel in events.yaml`);
      continue;
    }
    compareSets(p5, `${ch.address}: binding`, new Set(q.bindings.map(fmt)), new Set((ch['x-bindings'] || []).map(docFmt)), 'topology.rs', 'x-bindings');
    compareSets(p5, `${ch.address}: per-user binding`, new Set(q.recipientBindings.map(fmt)), new Set((ch['x-recipient-bindings'] || []).map(docFmt)), 'topology.rs (FANOUT_RECIPIENT_EXCHANGES, recipient_key)', 'x-recipient-bindings');
    if (!q.fanout && prefix) {
      for (const b of q.bindings) {
        if (recipientExchanges.some((e) => exchanges.get(e) === b.exchange) && topicMatches(b.key, `${prefix}u1`)) p5.push(`${ch.address}: binding ${fmt(b)} matches recipient keys ${recipientKey}: it would get every event with recipients`);
      }
    }
    // By routing key through the bindings; on the fan-out queue also every
    // event of a recipient exchange, by its recipients' keys (chat-svc
    // publishes each with them, checked above).
    const routed = new Set([...events].filter(([type, ev]) =>
      q.bindings.some((b) => b.exchange === exchanges.get(ev.exchange) && topicMatches(b.key, type))
      || q.recipientBindings.some((b) => b.exchange === exchanges.get(ev.exchange) && onRecipientExchange(ev))).map(([type]) => type));
    compareSets(p5, `${ch.address}: routed event`, routed, new Set(Object.values(ch.messages || {}).map((m) => m.name)), 'what its bindings route', 'the channel\'s messages');
    const qb = ch.bindings.amqp.queue || {};
    if (q.fanout && !(qb.exclusive === true && qb.autoDelete === true && qb.durable === false)) p5.push(`${ch.address}: the fan-out queue is exclusive, auto-delete, not durable`);
    if (!q.fanout && !(qb.durable === true && qb.exclusive === false)) p5.push(`${ch.address}: durable queues are durable and not exclusive`);
    if (q.fanout && linger && opTimeout) {
      for (const [what, n] of [['LINGER', linger], ['OP_TIMEOUT', opTimeout]]) {
        if (!new RegExp(`\\b${n} s\\b`).test(ch.description || '')) p5.push(`${ch.address}: the description does not give routes.rs's ${what} (${n} s)`);
      }
    }
    const ops = receiveOps.filter((o) => o.channel?.address === ch.address);
    if (ops.length !== 1) p5.push(`${ch.address}: ${ops.length} receive operations (want 1)`);
    for (const o of ops) compareSets(p5, `${ch.address}: consumed event`, new Set(Object.values(ch.messages || {}).map((m) => m.name)), new Set((o.messages || []).map((m) => m.name)), 'the channel', 'its receive operation');
  }
  for (const ch of queueChannels) {
    if (!queues.some((q) => (q.fanout ? ch.address.startsWith(q.name) : ch.address === q.name))) p5.push(`queue channel ${ch.address} is not a queue of topology.rs`);
  }
  report(`queues: ${queues.length} of topology.rs with their bindings (static and per-user) and the events they route`, p5);
}

// ----------------------------------------------------------- websocket.yaml

function checkWebsocket(doc) {
  const J = doc.json();
  const socket = rust('chat-svc/src/realtime/socket.rs');
  const frames = rust('chat-svc/src/events/frames.rs');
  const hub = rust('chat-svc/src/realtime/hub.rs');

  // Directions from the operations: receive = client frames, send and replies = server frames.
  const clientMsgs = new Map();
  const serverMsgs = new Map();
  for (const op of Object.values(J.operations || {})) {
    const into = op.action === 'receive' ? clientMsgs : serverMsgs;
    for (const m of op.messages || []) into.set(payloadConst(m.payload, 'type'), m);
    for (const m of op.reply?.messages || []) serverMsgs.set(payloadConst(m.payload, 'type'), m);
  }

  // ClientFrame: serde renames and fields.
  const enumAt = socket.search(/enum ClientFrame\b/);
  const enumAttrs = socket.slice(Math.max(0, socket.lastIndexOf('#[derive', enumAt)), enumAt);
  const body = block(socket, enumAt);
  const variants = [];
  const re = /#\[serde\(([^)]*)\)\]\s*(\w+)\s*(\{[^}]*\})?/g;
  let m;
  while ((m = re.exec(body))) {
    const rename = /rename\s*=\s*"([^"]+)"/.exec(m[1]);
    const camelCase = /rename_all\s*=\s*"camelCase"/.test(m[1]);
    variants.push({
      variant: m[2],
      type: rename ? rename[1] : m[2],
      fields: m[3] ? fields(m[3].slice(1, -1), camelCase) : [],
    });
  }
  const p1 = [];
  if (variants.length === 0) p1.push('no ClientFrame variants found in socket.rs');
  compareSets(p1, 'client frame', new Set(variants.map((v) => v.type)), new Set(clientMsgs.keys()), 'ClientFrame (socket.rs)', 'websocket.yaml receive operations');
  report(`client frames: ${variants.length} ClientFrame serde renames = the messages chat-svc receives`, p1);

  const p2 = [];
  const tag = /tag\s*=\s*"(\w+)"/.exec(enumAttrs)?.[1] || 'type';
  for (const v of variants) {
    const msg = clientMsgs.get(v.type);
    if (!msg) continue;
    const struct = {
      denyUnknown: /deny_unknown_fields/.test(enumAttrs),
      fields: [{ wire: tag, type: 'String', optional: false, defaulted: false }, ...v.fields],
    };
    compareStruct(p2, `client ${v.type} (ClientFrame::${v.variant})`, struct, msg.payload, new Map());
  }
  report('client frames: members = the variant\'s fields (names, required, nullable)', p2);

  // Server frames: every JSON object the code builds with a "type".
  const built = new Map(); // type -> {keys:Set, optional:Set, durable:bool}
  const keysOf = (obj) => new Set([...obj.matchAll(/"(\w+)"\s*:/g)].map((k) => k[1]));
  const add = (type, keys, optional = new Set(), durable = false) => built.set(type, { keys, optional, durable });
  // frame_for: one arm per event; a durable arm carries the event's cursors.
  const frameFor = fnBody(frames, 'frame_for');
  const helperKeys = {};
  for (const helper of ['message_frame', 'chat_frame']) {
    const b = fnBody(frames, helper);
    const obj = /json!\(\{([^]*?)\}\)/.exec(b);
    helperKeys[helper] = obj ? keysOf(obj[1]) : new Set();
  }
  for (const arm of frameFor.split(/Event::/).slice(1)) {
    const durable = !arm.includes('Cursors::new()');
    const helper = /(message_frame|chat_frame)\(\s*"([^"]+)"/.exec(arm);
    if (helper) {
      add(helper[2], helperKeys[helper[1]], new Set(), durable);
      continue;
    }
    const obj = /json!\(\{([^]*?"type"\s*:\s*"([^"]+)"[^]*?)\}\)/.exec(arm);
    if (obj) add(obj[2], keysOf(obj[1]), new Set(), durable);
  }
  for (const obj of socket.matchAll(/json!\(\{([^{}]*?"type"\s*:\s*"([^"]+)"[^{}]*?)\}\)/g)) {
    const optional = new Set();
    if (obj[2] === 'error') for (const k of fnBody(socket, 'error_frame').matchAll(/f\["(\w+)"\]/g)) optional.add(k[1]);
    add(obj[2], new Set([...keysOf(obj[1]), ...optional]), optional);
  }
  for (const lit of socket.matchAll(/r#"(\{"type":"([^"]+)"[^#]*\})"#/g)) add(lit[2], keysOf(lit[1]));
  const p3 = [];
  compareSets(p3, 'server frame', new Set(built.keys()), new Set(serverMsgs.keys()), 'frames.rs/socket.rs', 'websocket.yaml send operations and replies');
  report(`server frames: ${built.size} frame types built by frames.rs and socket.rs = the messages chat-svc sends`, p3);

  const p4 = [];
  for (const [type, f] of built) {
    const msg = serverMsgs.get(type);
    if (!msg) continue;
    const props = new Set(Object.keys(msg.payload?.properties || {}));
    const want = new Set([...f.keys, ...(f.durable ? ['cursor'] : [])]);
    compareSets(p4, `${type}: member`, want, props, 'the code', 'the schema');
    const required = new Set([...f.keys].filter((k) => !f.optional.has(k)));
    compareSets(p4, `${type}: required member`, required, new Set(msg.payload?.required || []), 'the code (always set)', 'the schema');
    if (msg.payload?.additionalProperties !== false) p4.push(`${type}: server frames have exactly these members (additionalProperties: false)`);
  }
  report('server frames: members as built, `cursor` (optional) exactly on the durable ones', p4);

  // Error codes.
  const codes = new Set([
    ...[...fnBody(socket, 'api_error_code').matchAll(/=>\s*"(\w+)"/g)].map((c) => c[1]),
    ...[...socket.matchAll(/error_frame\(\s*"(\w+)"/g)].map((c) => c[1]),
  ]);
  const p5 = [];
  compareSets(p5, 'error code', codes, new Set(J.components?.schemas?.ErrorCode?.enum || []), 'socket.rs', 'ErrorCode');
  report(`error codes: ${codes.size} codes of socket.rs = ErrorCode`, p5);

  // Close codes and reasons.
  const consts = new Map();
  for (const c of block(socket, socket.search(/mod close_code\b/)).matchAll(/pub const (\w+): u16 = (\d+);/g)) consts.set(c[1], Number(c[2]));
  const byCode = new Map([...consts.values()].map((c) => [c, new Set()]));
  const p6 = [];
  const note = (code, reason, where) => {
    if (!byCode.has(code)) p6.push(`${where} closes with ${code}, which is not in mod close_code`);
    else byCode.get(code).add(reason);
  };
  for (const c of socket.matchAll(/(?:Flow::Close|close)\(\s*(?:session,\s*)?([A-Z_]+),\s*"([^"]+)"\s*\)/g)) {
    if (!consts.has(c[1])) p6.push(`socket.rs closes with ${c[1]}, not a close_code constant`);
    else note(consts.get(c[1]), c[2], 'socket.rs');
  }
  for (const c of hub.matchAll(/Outbound::Close\(\s*(\d+),\s*"([^"]+)"\s*\)/g)) note(Number(c[1]), c[2], 'hub.rs');
  const documented = J.channels?.socket?.['x-close-codes'] || [];
  compareSets(p6, 'close code', new Set(consts.values()), new Set(documented.map((d) => d.code)), 'mod close_code', 'x-close-codes');
  for (const d of documented) {
    const name = [...consts].find(([, v]) => v === d.code)?.[0];
    if (name && d.name !== name) p6.push(`close code ${d.code}: named ${d.name} in the doc, ${name} in code`);
    if (byCode.has(d.code)) compareSets(p6, `close ${d.code}: reason`, byCode.get(d.code), new Set(d.reasons || []), 'socket.rs/hub.rs', 'x-close-codes');
    if (!new RegExp(`\\|\\s*${d.code}\\s*\\|`).test(J.channels.socket.description || '')) p6.push(`close code ${d.code} is missing from the channel description's table`);
  }
  report(`close codes: ${consts.size} codes of mod close_code and their reasons = x-close-codes`, p6);
}

// --------------------------------------------------------------------- main

async function main() {
  for (const [file, check, opts] of [
    ['websocket.yaml', checkWebsocket, { envelopeHeaders: false }],
    ['events.yaml', checkEvents, { envelopeHeaders: true }],
  ]) {
    console.log(`== docs/asyncapi/${file}`);
    let doc;
    try {
      doc = await parse(file);
    } catch (e) {
      report('parser', [String(e?.stack || e)]);
      continue;
    }
    if (!doc) continue;
    for (const step of [() => checkExamples(doc, opts), () => check(doc)]) {
      try {
        step();
      } catch (e) {
        report('check crashed', [String(e?.stack || e)]);
      }
    }
  }
  console.log(`asyncapi: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

await main();
