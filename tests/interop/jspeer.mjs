#!/usr/bin/env node
// js-libp2p 3.x interop peer for Peerdesk tests.
//
// Driven over stdin/stdout with JSON lines:
//   stdin : one command per line   {"cmd": "...", "id": N, ...}
//   stdout: one JSON object a line  (answers carry the command's id; events carry "event")
//   stderr: logs (set DEBUG=libp2p:* for js-libp2p's own logs)
//
// See README.md in this folder for the full command list.
//
// Options (argv):
//   --private-key <base64>   libp2p protobuf-encoded private key (e.g. "CAESQ..." Ed25519,
//                            the format p2p-webapp / go-libp2p export); default: fresh Ed25519
//   --heartbeat-ms <n>       GossipSub heartbeat interval (default 500, like the Go program)
//   --no-floodsub            do not offer /floodsub/1.0.0 as a fallback

// ---------------------------------------------------------------------------
// Polyfills. js-libp2p 3.x targets Node >= 22 but the test machines have Node 20:
// it uses Promise.withResolvers (Node 22) and Set.prototype.difference (Node 22).
// They must be installed before any libp2p module is evaluated, hence the dynamic
// imports below.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve, reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
{
  const setMethods = {
    union (other) { const out = new Set(this); for (const v of other.keys()) out.add(v); return out },
    intersection (other) { const out = new Set(); for (const v of this) if (other.has(v)) out.add(v); return out },
    difference (other) { const out = new Set(); for (const v of this) if (!other.has(v)) out.add(v); return out },
    symmetricDifference (other) {
      const out = new Set(this)
      for (const v of other.keys()) { if (this.has(v)) out.delete(v); else out.add(v) }
      return out
    },
    isSubsetOf (other) { for (const v of this) if (!other.has(v)) return false; return true },
    isSupersetOf (other) { for (const v of other.keys()) if (!this.has(v)) return false; return true },
    isDisjointFrom (other) { for (const v of this) if (other.has(v)) return false; return true }
  }
  for (const [name, fn] of Object.entries(setMethods)) {
    if (typeof Set.prototype[name] !== 'function') {
      Object.defineProperty(Set.prototype, name, { configurable: true, writable: true, value: fn })
    }
  }
}

// ---------------------------------------------------------------------------
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { gossipsub } = await import('@libp2p/gossipsub')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { privateKeyFromProtobuf } = await import('@libp2p/crypto/keys')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const readline = await import('node:readline')

// ---------------------------------------------------------------------------
// I/O helpers

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log (...args) {
  const ts = new Date().toISOString().slice(11, 23)
  process.stderr.write(`[jspeer ${ts}] ${args.map(a => (typeof a === 'string' ? a : (a instanceof Error ? (a.stack ?? a.message) : JSON.stringify(a)))).join(' ')}\n`)
}

function errMsg (err) {
  if (err == null) return 'unknown error'
  const name = err.name != null && err.name !== 'Error' ? `${err.name}: ` : ''
  return `${name}${err.message ?? String(err)}`
}

function parseArgs (argv) {
  const opts = { privateKey: null, heartbeatMs: 500, floodsub: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--private-key') opts.privateKey = argv[++i]
    else if (a === '--heartbeat-ms') opts.heartbeatMs = Number(argv[++i])
    else if (a === '--no-floodsub') opts.floodsub = false
    else throw new Error(`unknown argument ${a}`)
  }
  return opts
}

const opts = parseArgs(process.argv.slice(2))

// Only ever dial loopback addresses (the harness must never touch the network).
function isLoopback (ma) {
  const s = ma.toString()
  return s.startsWith('/ip4/127.') || s.startsWith('/ip6/::1/')
}

// ---------------------------------------------------------------------------
// Node

const nodeInit = {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  connectionGater: {
    // refuse anything that is not 127.0.0.0/8 or ::1, whatever asks for the dial
    denyDialMultiaddr: async (ma) => !isLoopback(ma)
  },
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      fallbackToFloodsub: opts.floodsub,
      globalSignaturePolicy: 'StrictSign',
      floodPublish: true,
      doPX: false,
      D: 6,
      Dlo: 5,
      Dhi: 12,
      Dout: 2,
      heartbeatInterval: opts.heartbeatMs
    }),
    dht: kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      clientMode: false,
      // the default mapper (removePrivateAddressesMapper) drops 127.0.0.1 and
      // would make a loopback-only DHT useless
      peerInfoMapper: passthroughMapper,
      allowQueryWithZeroPeers: false
    })
  }
}
if (opts.privateKey != null) {
  nodeInit.privateKey = privateKeyFromProtobuf(Buffer.from(opts.privateKey, 'base64'))
}

const node = await createLibp2p(nodeInit)
const pubsub = node.services.pubsub
const dht = node.services.dht

// ---------------------------------------------------------------------------
// Topics

pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  const from = msg.type === 'signed' ? msg.from.toString() : null
  const text = Buffer.from(msg.data).toString('utf8')
  let data
  try {
    data = JSON.parse(text)
  } catch {
    out({ event: 'topicInvalid', topic: msg.topic, from, raw: Buffer.from(msg.data).toString('base64') })
    return
  }
  out({ event: 'topic', topic: msg.topic, from, data })
})

// ---------------------------------------------------------------------------
// Direct application protocols (wire-protocol.md §3)
//
// Frame: 4-byte big-endian length + UTF-8 JSON.
//   data {"type":"data","id":ID,"data":base64(UTF-8 JSON of value)}
//   ack  {"type":"ack","id":ID}
// Every stream (inbound or outbound) runs a reader that handles both frame
// types, like the Go program: data -> report + ack on the same stream,
// ack -> resolves the pending send with that id for (peer, protocol).

const MAX_FRAME = 16 * 1024 * 1024

function encodeFrame (obj) {
  const body = Buffer.from(JSON.stringify(obj), 'utf8')
  const frame = Buffer.alloc(4 + body.length)
  frame.writeUInt32BE(body.length, 0)
  body.copy(frame, 4)
  return frame
}

class FrameReader {
  constructor (stream) {
    this.it = stream[Symbol.asyncIterator]()
    this.buf = Buffer.alloc(0)
  }

  async fill (n) {
    while (this.buf.length < n) {
      const { value, done } = await this.it.next()
      if (done) return false
      const chunk = value instanceof Uint8Array ? value : value.subarray()
      this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk])
    }
    return true
  }

  // resolves to a parsed frame object, or null on clean EOF at a frame boundary
  async readFrame () {
    if (!(await this.fill(4))) {
      if (this.buf.length === 0) return null
      throw new Error(`EOF inside frame header (${this.buf.length} bytes)`)
    }
    const len = this.buf.readUInt32BE(0)
    if (len > MAX_FRAME) throw new Error(`frame too large: ${len}`)
    if (!(await this.fill(4 + len))) throw new Error(`EOF inside frame body (${this.buf.length - 4}/${len} bytes)`)
    const body = this.buf.subarray(4, 4 + len)
    this.buf = this.buf.subarray(4 + len)
    const text = body.toString('utf8')
    try {
      return { obj: JSON.parse(text), text }
    } catch {
      return { obj: null, text }
    }
  }
}

async function writeFrame (stream, obj, signal) {
  if (stream.writeStatus !== 'writable') throw new Error(`stream not writable (${stream.writeStatus})`)
  if (!stream.send(encodeFrame(obj))) {
    await stream.onDrain({ signal })
  }
}

const handledProtocols = new Set()
const goChannels = new Map() // key -> Channel (latest stream, inbound replaces: Go semantics)
const ownChannels = new Map() // key -> Channel (only streams this peer opened)
const pendingAcks = new Map() // key -> Map(id -> resolve)
const seenIds = new Map() // key -> Set(id)
let sendCounter = 0

const keyOf = (peer, protocol) => `${peer}|${protocol}`

class Channel {
  constructor (stream, peer, protocol, origin) {
    this.stream = stream
    this.peer = peer
    this.protocol = protocol
    this.origin = origin // 'inbound' | 'outbound'
    this.key = keyOf(peer, protocol)
    this.readable = true
    const { promise, resolve } = Promise.withResolvers()
    this.ended = promise
    this._ended = resolve
    this.readLoop().catch(err => log('reader crashed', err))
  }

  get usable () {
    return this.readable && this.stream.status === 'open' && this.stream.writeStatus === 'writable'
  }

  async readLoop () {
    const reader = new FrameReader(this.stream)
    try {
      while (true) {
        const frame = await reader.readFrame()
        if (frame == null) break
        await this.onFrame(frame)
      }
    } catch (err) {
      log(`stream ${this.origin} ${this.protocol} ${this.peer}: read error: ${errMsg(err)}`)
    } finally {
      this.readable = false
      if (goChannels.get(this.key) === this) goChannels.delete(this.key)
      if (ownChannels.get(this.key) === this) ownChannels.delete(this.key)
      // the remote will not send on this stream any more: finish our side too
      this.stream.close().catch(() => {})
      this._ended()
    }
  }

  async onFrame ({ obj, text }) {
    if (obj == null || typeof obj !== 'object') {
      out({ event: 'frameInvalid', protocol: this.protocol, from: this.peer, raw: text })
      return
    }
    if (obj.type === 'ack') {
      const waiting = pendingAcks.get(this.key)
      const resolve = waiting?.get(obj.id)
      if (resolve != null) {
        waiting.delete(obj.id)
        resolve()
      } else {
        log(`unexpected ack ${obj.id} on ${this.protocol} from ${this.peer}`)
        out({ event: 'ackUnexpected', protocol: this.protocol, from: this.peer, msgId: obj.id })
      }
      return
    }
    if (obj.type === 'data') {
      let value
      try {
        value = JSON.parse(Buffer.from(String(obj.data ?? ''), 'base64').toString('utf8'))
      } catch {
        // Go drops non-JSON application data without acking it
        out({ event: 'dataInvalid', protocol: this.protocol, from: this.peer, msgId: obj.id, raw: obj.data })
        return
      }
      let seen = seenIds.get(this.key)
      if (seen == null) seenIds.set(this.key, seen = new Set())
      const duplicate = seen.has(obj.id)
      seen.add(obj.id)
      // report first, then ack: once the sender holds the ack the event is on stdout
      out({ event: 'data', protocol: this.protocol, from: this.peer, msgId: obj.id, duplicate, stream: this.origin, data: value })
      try {
        await writeFrame(this.stream, { type: 'ack', id: obj.id })
      } catch (err) {
        log(`could not ack ${obj.id}: ${errMsg(err)}`)
      }
      return
    }
    out({ event: 'frameInvalid', protocol: this.protocol, from: this.peer, raw: text })
  }
}

function onInboundStream (stream, connection) {
  const peer = connection.remotePeer.toString()
  const protocol = stream.protocol
  const ch = new Channel(stream, peer, protocol, 'inbound')
  const old = goChannels.get(ch.key)
  goChannels.set(ch.key, ch)
  if (old != null && old !== ch) {
    // Go closes the stream an inbound one replaces
    old.stream.close().catch(() => {})
  }
}

async function openChannel (peerId, protocol, signal) {
  const stream = await node.dialProtocol(peerId, protocol, { signal })
  return new Channel(stream, peerId.toString(), protocol, 'outbound')
}

// mode: 'go' (default) reuse the latest stream for (peer, protocol), inbound streams replace it;
//       'own' reuse only a stream this peer opened; 'new' a fresh stream per message, closed after the ack
async function sendData (peerStr, protocol, value, { mode = 'go', timeoutMs = 10000, attemptTimeoutMs = 5000 } = {}) {
  const peerId = peerIdFromString(peerStr)
  const key = keyOf(peerStr, protocol)
  const msgId = `${process.hrtime.bigint()}-${sendCounter++}`
  const payload = Buffer.from(JSON.stringify(value), 'utf8').toString('base64')
  const deadline = Date.now() + timeoutMs
  let attempts = 0
  let lastErr = null

  let waiting = pendingAcks.get(key)
  if (waiting == null) pendingAcks.set(key, waiting = new Map())
  const acked = new Promise(resolve => waiting.set(msgId, resolve))

  try {
    while (Date.now() < deadline) {
      attempts++
      const remaining = deadline - Date.now()
      const signal = AbortSignal.timeout(Math.max(1, Math.min(remaining, attemptTimeoutMs)))
      let ch = null
      let fresh = false
      try {
        if (mode === 'go') ch = goChannels.get(key)
        else if (mode === 'own') ch = ownChannels.get(key)
        if (ch == null || !ch.usable) {
          ch = await openChannel(peerId, protocol, signal)
          fresh = true
          if (mode === 'go') goChannels.set(key, ch)
          else if (mode === 'own') ownChannels.set(key, ch)
        }
        await writeFrame(ch.stream, { type: 'data', id: msgId, data: payload }, signal)
        const outcome = await Promise.race([
          acked.then(() => 'ack'),
          ch.ended.then(() => 'closed'),
          new Promise(resolve => signal.addEventListener('abort', () => resolve('timeout'), { once: true }))
        ])
        if (outcome === 'closed') {
          // an ack may still arrive on another stream of this (peer, protocol); give it a moment
          const late = await Promise.race([acked.then(() => 'ack'), new Promise(resolve => setTimeout(() => resolve('closed'), 200))])
          if (late === 'ack') return { attempts, msgId, freshStream: fresh }
          lastErr = new Error('stream closed before ack')
          continue
        }
        if (outcome === 'timeout') {
          lastErr = new Error('no ack before attempt timeout')
          if (mode === 'go' || mode === 'own') ch.stream.abort(new Error('ack timeout'))
          continue
        }
        if (mode === 'new') ch.stream.close().catch(() => {})
        return { attempts, msgId, freshStream: fresh }
      } catch (err) {
        lastErr = err
        if (err?.name === 'UnsupportedProtocolError' || err?.name === 'InvalidParametersError') throw err
        log(`send attempt ${attempts} to ${peerStr} on ${protocol} failed: ${errMsg(err)}`)
        if (ch != null && fresh) ch.stream.abort(err)
        await new Promise(resolve => setTimeout(resolve, Math.min(200, Math.max(0, deadline - Date.now()))))
      }
    }
    throw new Error(`not acknowledged after ${attempts} attempt(s) in ${timeoutMs} ms: ${errMsg(lastErr)}`)
  } finally {
    waiting.delete(msgId)
  }
}

// ---------------------------------------------------------------------------
// Commands

function peerInfoJson (p) {
  return { id: p.id.toString(), addrs: (p.multiaddrs ?? []).map(a => a.toString()) }
}

const commands = {
  async dial ({ addr, timeoutMs = 10000 }) {
    const ma = multiaddr(addr)
    const conn = await node.dial(ma, { signal: AbortSignal.timeout(timeoutMs) })
    return { peer: conn.remotePeer.toString() }
  },

  async hangUp ({ peer }) {
    await node.hangUp(peerIdFromString(peer))
    return {}
  },

  async peers () {
    return {
      peers: node.getPeers().map(p => p.toString()),
      connections: node.getConnections().map(c => ({ peer: c.remotePeer.toString(), addr: c.remoteAddr.toString(), direction: c.direction, muxer: c.multiplexer, encryption: c.encryption }))
    }
  },

  async protocols ({ peer }) {
    const p = await node.peerStore.get(peerIdFromString(peer))
    return { protocols: p.protocols, addrs: p.addresses.map(a => a.multiaddr.toString()) }
  },

  async ping ({ peer, timeoutMs = 10000 }) {
    const rtt = await node.services.ping.ping(peerIdFromString(peer), { signal: AbortSignal.timeout(timeoutMs) })
    return { rtt }
  },

  // --- pubsub
  async subscribe ({ topic }) {
    pubsub.subscribe(topic)
    return {}
  },

  async unsubscribe ({ topic }) {
    pubsub.unsubscribe(topic)
    return {}
  },

  async publish ({ topic, data }) {
    const bytes = Buffer.from(JSON.stringify(data === undefined ? null : data), 'utf8')
    const res = await pubsub.publish(topic, bytes)
    return { recipients: (res?.recipients ?? []).map(p => p.toString()) }
  },

  async publishRaw ({ topic, raw }) {
    const res = await pubsub.publish(topic, Buffer.from(raw, 'base64'))
    return { recipients: (res?.recipients ?? []).map(p => p.toString()) }
  },

  async topicPeers ({ topic }) {
    const mesh = pubsub.mesh?.get(topic) ?? new Set()
    return {
      peers: pubsub.getSubscribers(topic).map(p => p.toString()),
      mesh: [...mesh].map(p => p.toString()),
      topics: pubsub.getTopics()
    }
  },

  async pubsubPeers () {
    // peers speaking a pubsub protocol with us, and which one was negotiated
    const peers = []
    for (const p of pubsub.getPeers()) {
      const id = p.toString()
      const streams = pubsub.streamsOutbound?.get(id)
      peers.push({ id, protocol: streams?.protocol ?? null })
    }
    return { peers }
  },

  // --- direct protocols
  async handle ({ protocol }) {
    if (!handledProtocols.has(protocol)) {
      await node.handle(protocol, onInboundStream, { maxInboundStreams: 256 })
      handledProtocols.add(protocol)
    }
    return {}
  },

  async unhandle ({ protocol }) {
    if (handledProtocols.has(protocol)) {
      await node.unhandle(protocol)
      handledProtocols.delete(protocol)
    }
    return {}
  },

  async send ({ peer, protocol, data, mode, timeoutMs, attemptTimeoutMs }) {
    return await sendData(peer, protocol, data === undefined ? null : data, { mode, timeoutMs, attemptTimeoutMs })
  },

  // --- DHT
  async provide ({ key, timeoutMs = 30000 }) {
    const cid = CID.parse(key)
    const sentTo = []
    const errors = []
    for await (const ev of dht.provide(cid, { signal: AbortSignal.timeout(timeoutMs) })) {
      if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'ADD_PROVIDER') sentTo.push(ev.from.toString())
      if (ev.name === 'QUERY_ERROR') errors.push(`${ev.from?.toString()}: ${errMsg(ev.error)}`)
    }
    return { sentTo, errors }
  },

  async findProviders ({ key, timeoutMs = 5000, count = 1, includeSelf = false }) {
    const cid = CID.parse(key)
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), timeoutMs)
    const found = new Map()
    const self = node.peerId.toString()
    try {
      for await (const ev of dht.findProviders(cid, { signal: controller.signal })) {
        if (ev.name !== 'PROVIDER') continue
        for (const p of ev.providers) {
          const id = p.id.toString()
          if (!includeSelf && id === self) continue
          const prev = found.get(id)
          const addrs = new Set([...(prev?.addrs ?? []), ...peerInfoJson(p).addrs])
          found.set(id, { id, addrs: [...addrs] })
        }
        if (found.size >= count) break
      }
    } catch (err) {
      if (!controller.signal.aborted) throw err
    } finally {
      clearTimeout(timer)
    }
    return { providers: [...found.values()] }
  },

  async findPeer ({ peer, timeoutMs = 10000 }) {
    const info = await node.peerRouting.findPeer(peerIdFromString(peer), { signal: AbortSignal.timeout(timeoutMs) })
    return peerInfoJson(info)
  },

  async routingTable () {
    const rt = dht.routingTable
    return { size: rt?.size ?? null, mode: await dht.getMode() }
  },

  async stop () {
    setImmediate(() => { shutdown(0) })
    return {}
  }
}

async function runCommand (line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    out({ id: null, ok: false, error: `bad JSON: ${errMsg(err)}` })
    return
  }
  const id = msg?.id ?? null
  const fn = Object.hasOwn(commands, msg?.cmd ?? '') ? commands[msg.cmd] : null
  if (fn == null) {
    out({ id, ok: false, error: `unknown command ${JSON.stringify(msg?.cmd)}` })
    return
  }
  try {
    const res = await fn(msg)
    out({ id, ok: true, ...res })
  } catch (err) {
    log(`command ${msg.cmd} (${id}) failed`, err)
    out({ id, ok: false, error: errMsg(err) })
  }
}

let stopping = false
async function shutdown (code) {
  if (stopping) return
  stopping = true
  const force = setTimeout(() => process.exit(code), 3000)
  force.unref()
  try {
    await node.stop()
  } catch (err) {
    log('error while stopping', err)
  }
  process.exit(code)
}

process.on('SIGTERM', () => { shutdown(0) })
process.on('SIGINT', () => { shutdown(0) })
process.on('unhandledRejection', (err) => { log('unhandled rejection', err) })

await node.start()
out({
  event: 'ready',
  peerId: node.peerId.toString(),
  addrs: node.getMultiaddrs().map(a => a.toString()),
  node: process.versions.node
})

const rl = readline.createInterface({ input: process.stdin, terminal: false })
rl.on('line', (line) => {
  if (line.trim() === '') return
  runCommand(line)
})
rl.on('close', () => { shutdown(0) })
