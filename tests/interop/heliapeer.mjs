#!/usr/bin/env node
// A Helia 7 node (js IPFS) for Peerdesk's bitswap interop tests and benchmark.
//
// Driven like jspeer.mjs: one JSON command per line on stdin, one JSON object per line on
// stdout (answers carry the command's id, events carry "event"), logs on stderr.
// Only loopback TCP + Noise + Yamux; bitswap is its only block broker; no routers, no
// bootstrap, no HTTP gateways: every block comes from a peer the test connected.
//
// Commands (README.md has the table):
//   dial {addr}                         -> {peer}
//   addFile {path, peerdesk?}            -> {cid}   (peerdesk: Peerdesk's import parameters)
//   putRaw {path}                       -> {cid}   (one raw block named by sha2-512, as kubo's
//                                                   `--hash sha2-512 --raw-leaves` would)
//   addDir {entries: [{name, path}], sharded?, peerdesk?} -> {cid}
//   cat {cid, out, timeoutMs?}          -> {size, ms}  (writes the file's bytes to `out`)
//   ls {cid, timeoutMs?}                -> {entries: [{name, cid, type}]}
//   want {cid, timeoutMs?}              -> {got, dontHave: [peer ids that said DONT_HAVE]}
//   peers                               -> {peers}
//   stop

await import('./polyfills.mjs')

const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { createHeliaLight } = await import('helia')
const { withBitswap } = await import('@helia/bitswap')
const { withLibp2pLight } = await import('@helia/libp2p')
const { unixfs } = await import('@helia/unixfs')
const { fixedSize } = await import('ipfs-unixfs-importer/chunker')
const { balanced } = await import('ipfs-unixfs-importer/layout')
const { MemoryBlockstore } = await import('blockstore-core')
const { MemoryDatastore } = await import('datastore-core')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const { sha512 } = await import('multiformats/hashes/sha2')
const fs = await import('node:fs')
const readline = await import('node:readline')

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log (...args) {
  process.stderr.write(`[heliapeer] ${args.map(a => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ')}\n`)
}

const isLoopback = (ma) => {
  const s = ma.toString()
  return s.startsWith('/ip4/127.') || s.startsWith('/ip6/::1/')
}

const libp2pOptions = {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  connectionGater: { denyDialMultiaddr: async (ma) => !isLoopback(ma) },
  services: { identify: identify() }
}

// Helia's own composition (createHelia = bitswap + libp2p + HTTP), without the HTTP part and
// with our loopback-only libp2p: bitswap is the only way blocks arrive.
const helia = withBitswap(withLibp2pLight(createHeliaLight({
  blockstore: new MemoryBlockstore(),
  datastore: new MemoryDatastore(),
  hashers: [sha512] // besides Helia's defaults, for blocks named by sha2-512 (putRaw)
}), libp2pOptions))
await helia.start()
const libp2p = helia.libp2p
// Keep a handle on the bitswap instance to watch the messages it receives (DONT_HAVE).
const engine = helia.blockBrokers.find(b => b.name === 'bitswap')
const dontHave = new Map() // CID string -> Set of peer ids
const ufs = unixfs(helia)

function watchPresences () {
  const network = engine?.bitswap?.network
  if (network == null) {
    throw new Error('cannot reach the bitswap network of this Helia version')
  }
  network.addEventListener('bitswap:message', (evt) => {
    for (const p of evt.detail.message.blockPresences ?? []) {
      if (p.type !== 'DoNotHaveBlock') continue // protons decodes enums to their names
      const key = CID.decode(p.cid).toV1().toString()
      if (!dontHave.has(key)) dontHave.set(key, new Set())
      dontHave.get(key).add(evt.detail.peer.toString())
    }
  })
}
watchPresences()

// Peerdesk / p2p-webapp / kubo's classic import: 256 KiB chunks, dag-pb leaves, 174 links.
const peerdeskImport = {
  cidVersion: 1,
  rawLeaves: false,
  leafType: 'file',
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 })
}

async function * fileContent (path) {
  for await (const chunk of fs.createReadStream(path, { highWaterMark: 1 << 20 })) {
    yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  }
}

const signalFor = (args, ms = 60000) => AbortSignal.timeout(args.timeoutMs ?? ms)

const commands = {
  async dial (args) {
    const conn = await libp2p.dial(multiaddr(args.addr), { signal: signalFor(args, 10000) })
    return { peer: conn.remotePeer.toString() }
  },
  async peers () {
    return { peers: libp2p.getPeers().map(p => p.toString()) }
  },
  async addFile (args) {
    const options = args.peerdesk ? peerdeskImport : {}
    const cid = await ufs.addByteStream(fileContent(args.path), options)
    return { cid: cid.toString() }
  },
  async putRaw (args) {
    const bytes = new Uint8Array(fs.readFileSync(args.path))
    const cid = CID.createV1(0x55, await sha512.digest(bytes))
    await helia.blockstore.put(cid, bytes)
    return { cid: cid.toString() }
  },
  async addDir (args) {
    const options = {
      ...(args.peerdesk ? peerdeskImport : {}),
      wrapWithDirectory: true,
      shardSplitThresholdBytes: args.sharded ? 1 : 262144
    }
    const source = args.entries.map(e => ({ path: e.name, content: fileContent(e.path) }))
    let last = null
    for await (const entry of ufs.addAll(source, options)) last = entry
    return { cid: last.cid.toString() }
  },
  async cat (args) {
    const started = performance.now()
    const fh = fs.openSync(args.out, 'w')
    let size = 0
    try {
      for await (const chunk of ufs.cat(CID.parse(args.cid), { signal: signalFor(args) })) {
        fs.writeSync(fh, chunk)
        size += chunk.byteLength
      }
    } finally {
      fs.closeSync(fh)
    }
    return { size, ms: performance.now() - started }
  },
  async ls (args) {
    const entries = []
    for await (const e of ufs.ls(CID.parse(args.cid), { signal: signalFor(args) })) {
      entries.push({ name: e.name, cid: e.cid.toString(), type: e.type })
    }
    return { entries }
  },
  async want (args) {
    const cid = CID.parse(args.cid)
    let got = false
    try {
      // interface-blockstore 7: get() yields the block's bytes; nothing happens until read
      for await (const _ of helia.blockstore.get(cid, { signal: signalFor(args, 5000) })) got = true
    } catch (err) {
      log('want', args.cid, 'ended:', err.message)
    }
    return { got, dontHave: [...(dontHave.get(cid.toV1().toString()) ?? [])] }
  },
  async stop () {
    setTimeout(shutdown, 10)
    return {}
  }
}

let stopping = false
async function shutdown () {
  if (stopping) return
  stopping = true
  try {
    await helia.stop()
  } catch (err) {
    log('stop failed', err)
  }
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    out({ id: null, ok: false, error: `bad JSON: ${err.message}` })
    return
  }
  const fn = commands[msg.cmd]
  if (fn == null) {
    out({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` })
    return
  }
  Promise.resolve().then(() => fn(msg)).then(
    (answer) => out({ id: msg.id, ok: true, ...answer }),
    (err) => out({ id: msg.id, ok: false, error: err?.message ?? String(err) })
  )
})
rl.on('close', shutdown)

out({
  event: 'ready',
  peerId: libp2p.peerId.toString(),
  addrs: libp2p.getMultiaddrs().map(a => a.toString()),
  node: process.versions.node
})
