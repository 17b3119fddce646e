// Services of the ATCR stack that @atcr/testkit runs in-process, each in a process of its
// own here so that their memory and CPU time can be read apart from the bench's:
//   node services-child.ts network   a real PLC directory and PDS (startNetwork)
//   node services-child.ts s3        s3rver (startS3)
// Prints one JSON line (URLs, the account to push with, the bucket) once ready; stops on
// SIGTERM or when stdin closes (the bench died).
import { startNetwork, startS3 } from '@atcr/testkit'

export interface NetworkInfo {
  plcUrl: string
  pdsUrl: string
  did: string
  handle: string
  appPassword: string
}

export interface S3Info {
  endpoint: string
  region: string
  bucket: string
  accessKeyId: string
  secretAccessKey: string
}

let closeService: () => Promise<void>
if (process.argv[2] === 's3') {
  const s3 = await startS3('atcr-bench')
  const { close: closeS3, ...info } = s3
  closeService = closeS3
  process.stdout.write(`${JSON.stringify(info satisfies S3Info)}\n`)
} else {
  const net = await startNetwork({ blobUploadLimit: 64 * 1024 * 1024 })
  const account = await net.pds.createAccount('bench.test')
  closeService = net.close
  const info: NetworkInfo = {
    plcUrl: net.plc.url,
    pdsUrl: net.pds.url,
    did: account.did,
    handle: account.handle,
    appPassword: account.appPassword,
  }
  process.stdout.write(`${JSON.stringify(info)}\n`)
}

let closing = false
const close = async () => {
  if (closing) return
  closing = true
  const timer = setTimeout(() => process.exit(1), 10_000)
  await closeService().catch(() => {})
  clearTimeout(timer)
  process.exit(0)
}
process.on('SIGTERM', close)
process.on('SIGINT', close)
process.stdin.on('end', close)
process.stdin.on('close', close)
process.stdin.resume()
