#!/usr/bin/env node
// A js-libp2p circuit relay v2 server for the NAT lab (tests/core/network/test_nat_lab.py): py peers behind
// NAT routers reserve on it and reach each other through it.
//
//   node nat_relay.mjs <ip> <port> [<data limit in bytes per relayed connection>]
//
// Prints one JSON line {"peerid", "addrs"} once listening; exits when stdin closes. The address
// is announced explicitly: a js relay advertises none until its own AutoNAT confirms one.
await import('./polyfills.mjs')
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { circuitRelayServer } = await import('@libp2p/circuit-relay-v2')

const [ip, port, dataLimit] = process.argv.slice(2)
const reservations = { maxReservations: 16 }
if (dataLimit) reservations.defaultDataLimit = BigInt(dataLimit)
const addr = `/ip4/${ip}/tcp/${port}`
const node = await createLibp2p({
  addresses: { listen: [addr], announce: [addr] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    relay: circuitRelayServer({ reservations })
  }
})
console.log(JSON.stringify({ peerid: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) }))
process.stdin.on('end', async () => { await node.stop(); process.exit(0) })
process.stdin.resume()
