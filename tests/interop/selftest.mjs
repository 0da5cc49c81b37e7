#!/usr/bin/env node
// Self-test of jspeer.mjs: two (or three) js peers over loopback.
// Usage: node selftest.mjs            (exit code 0 = all checks passed)
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))

class Peer {
  constructor (name) {
    this.name = name
    this.proc = spawn(process.execPath, [path.join(here, 'jspeer.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.nextId = 1
    this.waiters = new Map()
    this.events = []
    this.eventWaiters = []
    this.stderr = ''
    this.proc.stderr.on('data', d => { this.stderr += d })
    this.exited = new Promise(resolve => this.proc.on('exit', code => resolve(code)))
    createInterface({ input: this.proc.stdout }).on('line', line => {
      const msg = JSON.parse(line)
      if (msg.event != null) {
        this.events.push(msg)
        for (const w of [...this.eventWaiters]) {
          if (w.pred(msg)) { this.eventWaiters.splice(this.eventWaiters.indexOf(w), 1); w.resolve(msg) }
        }
      } else {
        this.waiters.get(msg.id)?.(msg)
        this.waiters.delete(msg.id)
      }
    })
  }

  async ready () {
    const ev = await this.event(e => e.event === 'ready', 15000)
    this.peerId = ev.peerId
    this.addrs = ev.addrs
    return ev
  }

  cmd (cmd, args = {}, timeoutMs = 20000) {
    const id = this.nextId++
    this.proc.stdin.write(JSON.stringify({ cmd, id, ...args }) + '\n')
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: ${cmd} timed out`)), timeoutMs)
      this.waiters.set(id, msg => { clearTimeout(t); resolve(msg) })
    })
  }

  async ok (cmd, args, timeoutMs) {
    const res = await this.cmd(cmd, args, timeoutMs)
    if (!res.ok) throw new Error(`${this.name}: ${cmd} failed: ${res.error}`)
    return res
  }

  event (pred, timeoutMs = 10000) {
    const found = this.events.find(pred)
    if (found != null) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const w = { pred, resolve }
      this.eventWaiters.push(w)
      setTimeout(() => {
        const i = this.eventWaiters.indexOf(w)
        if (i >= 0) { this.eventWaiters.splice(i, 1); reject(new Error(`${this.name}: event timed out`)) }
      }, timeoutMs)
    })
  }
}

function check (cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`)
  console.log(`ok - ${what}`)
}

async function until (fn, timeoutMs = 10000, stepMs = 100) {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    const v = await fn()
    if (v) return v
    await new Promise(resolve => setTimeout(resolve, stepMs))
  }
  return null
}

const t0 = Date.now()
const [a, b, c] = [new Peer('A'), new Peer('B'), new Peer('C')]
let failed = false
try {
  await Promise.all([a.ready(), b.ready(), c.ready()])
  check(a.addrs.length === 1 && a.addrs[0].startsWith('/ip4/127.0.0.1/tcp/'), 'listens on loopback only')

  // dial A->B, C->B
  check((await a.ok('dial', { addr: b.addrs[0] })).peer === b.peerId, 'A dials B')
  check((await c.ok('dial', { addr: b.addrs[0] })).peer === b.peerId, 'C dials B')
  const bad = await a.cmd('dial', { addr: '/ip4/10.1.2.3/tcp/4001/p2p/' + c.peerId, timeoutMs: 2000 })
  check(!bad.ok, `non-loopback dial refused (${bad.error})`)

  // pubsub
  for (const p of [a, b, c]) await p.ok('subscribe', { topic: 'chatroom' })
  check(await until(async () => (await a.ok('topicPeers', { topic: 'chatroom' })).peers.includes(b.peerId)), 'A sees B in topic')
  check(await until(async () => (await b.ok('topicPeers', { topic: 'chatroom' })).peers.length === 2), 'B sees A and C in topic')
  // subscribers are not enough: B forwards only to its mesh, so wait for the mesh (and for A's and C's)
  check(await until(async () => (await b.ok('topicPeers', { topic: 'chatroom' })).mesh.length === 2), 'B has A and C in its mesh')
  check(await until(async () => (await a.ok('topicPeers', { topic: 'chatroom' })).mesh.includes(b.peerId)), 'A has B in its mesh')
  check(await until(async () => (await c.ok('topicPeers', { topic: 'chatroom' })).mesh.includes(b.peerId)), 'C has B in its mesh')
  const pp = await a.ok('pubsubPeers')
  console.log('  negotiated pubsub protocols:', JSON.stringify(pp.peers))
  await a.ok('publish', { topic: 'chatroom', data: { hello: 'from A', n: 1 } })
  const evB = await b.event(e => e.event === 'topic' && e.data?.hello === 'from A')
  check(evB.from === a.peerId && evB.topic === 'chatroom', 'B got A\'s topic message with from = A')
  await c.event(e => e.event === 'topic' && e.data?.hello === 'from A')
  check(true, 'C got A\'s message through B')
  await b.ok('publish', { topic: 'chatroom', data: 'from B' })
  await a.event(e => e.event === 'topic' && e.data === 'from B')
  check(true, 'A got B\'s message (other direction)')

  // direct protocol, both ways and in all modes
  await b.ok('handle', { protocol: '/chat/1.0.0' })
  await a.ok('handle', { protocol: '/chat/1.0.0' })
  const s1 = await a.ok('send', { peer: b.peerId, protocol: '/chat/1.0.0', data: { msg: 'hi B', list: [1, 2, 3] } })
  const d1 = await b.event(e => e.event === 'data' && e.data?.msg === 'hi B')
  check(d1.from === a.peerId && s1.attempts === 1, 'A->B send acked, B reported data')
  await b.ok('send', { peer: a.peerId, protocol: '/chat/1.0.0', data: 'hi A' })
  const d2 = await a.event(e => e.event === 'data' && e.data === 'hi A')
  check(d2.stream === 'outbound', 'B->A send acked (Go mode: reused the stream A opened)')
  await b.ok('send', { peer: a.peerId, protocol: '/chat/1.0.0', data: 'hi A again', mode: 'new' })
  const d3 = await a.event(e => e.event === 'data' && e.data === 'hi A again')
  check(d3.stream === 'inbound', 'B->A send on a fresh stream acked')
  for (let i = 0; i < 20; i++) await a.ok('send', { peer: b.peerId, protocol: '/chat/1.0.0', data: i, mode: 'own' })
  check(b.events.filter(e => e.event === 'data' && typeof e.data === 'number').length === 20, '20 sequential sends on one own stream')
  const tstart = Date.now()
  const nohandler = await a.cmd('send', { peer: b.peerId, protocol: '/nope/1.0.0', data: 1, timeoutMs: 2000 })
  check(!nohandler.ok, `send to unhandled protocol fails (${Date.now() - tstart} ms): ${nohandler.error}`)

  // DHT
  check(await until(async () => (await a.ok('routingTable')).size >= 1), 'A routing table non-empty')
  check(await until(async () => (await c.ok('routingTable')).size >= 1), 'C routing table non-empty')
  const key = 'bafkreigzbskufesb3w42cyscbmwyfaabhy7vpkeo7cmjcefeu5ma6t4fle'
  const prov = await a.ok('provide', { key })
  console.log('  provide sent to', prov.sentTo, 'errors', prov.errors)
  const fp = await c.ok('findProviders', { key })
  check(fp.providers.some(p => p.id === a.peerId && p.addrs.length > 0), 'C finds A as provider (with addrs)')
  const prov2 = await c.ok('provide', { key: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' })
  console.log('  provide sent to', prov2.sentTo)
  const fp2 = await a.ok('findProviders', { key: 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' })
  check(fp2.providers.some(p => p.id === c.peerId), 'A finds C as provider (other direction)')
  const fp3 = await a.ok('findProviders', { key: 'bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzako47346wosmu', timeoutMs: 2000 })
  check(fp3.providers.length === 0, 'unknown key: no providers, answered within timeout')
} catch (err) {
  failed = true
  console.error('FAILED:', err)
  for (const p of [a, b, c]) console.error(`--- ${p.name} stderr\n${p.stderr}`)
} finally {
  for (const p of [a, b, c]) p.cmd('stop', {}, 5000).catch(() => {})
  const codes = await Promise.all([a, b, c].map(p => p.exited))
  console.log('exit codes', codes, `total ${Date.now() - t0} ms`)
  if (codes.some(c => c !== 0)) failed = true
}
process.exit(failed ? 1 : 0)
