// Node 22 built-ins that js-libp2p 3.x and Helia 7 use, for Node 20 (see README.md).
// Load this before any libp2p or Helia module is evaluated.
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
