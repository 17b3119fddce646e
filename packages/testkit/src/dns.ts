import type { LookupAddress } from 'node:dns'

export interface StaticDnsTable {
  /** Name → addresses. `*.test` matches every name under `test`. `localhost` is built in. */
  addresses?: Record<string, string[]>
  /** TXT records by full name (e.g. `_atproto.alice.test`). */
  txt?: Record<string, string[]>
}

export interface StaticDns {
  /** Same shape as `dns.lookup(name, { all: true }, callback)`, for `createGuardedFetch`. */
  lookup(
    hostname: string,
    callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
  ): void
  /** Same shape as `dns.promises.resolveTxt`. */
  resolveTxt(name: string): Promise<string[][]>
  /** Every name asked so far (lookups and TXT). */
  asked: string[]
}

/**
 * A DNS stand-in for tests: answers from a table and never asks a real name server, so
 * tests send no traffic off the machine. Unknown names answer ENOTFOUND.
 */
export function staticDns(table: StaticDnsTable = {}): StaticDns {
  const addresses: Record<string, string[]> = { localhost: ['127.0.0.1'], ...table.addresses }
  const asked: string[] = []
  const notFound = (name: string, syscall: string) =>
    Object.assign(new Error(`${syscall} ENOTFOUND ${name}`), { code: 'ENOTFOUND', hostname: name })
  const find = (name: string): string[] | undefined => {
    const lower = name.toLowerCase()
    if (addresses[lower]) return addresses[lower]
    for (const [pattern, value] of Object.entries(addresses)) {
      if (pattern.startsWith('*.') && lower.endsWith(pattern.slice(1))) return value
    }
    return undefined
  }
  return {
    asked,
    lookup: (hostname, callback) => {
      asked.push(hostname)
      const found = find(hostname)
      queueMicrotask(() => {
        if (!found) return callback(notFound(hostname, 'getaddrinfo'), [])
        callback(
          null,
          found.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
        )
      })
    },
    resolveTxt: async (name) => {
      asked.push(name)
      const records = table.txt?.[name.toLowerCase()]
      if (!records) throw notFound(name, 'queryTxt')
      return records.map((record) => [record])
    },
  }
}
