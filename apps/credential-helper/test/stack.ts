// The whole registry on loopback for the helper's end-to-end tests, every part real and in
// its own process where it ships as one: a PLC directory and a PDS (alice.test, bob.test),
// the atcr-hold executable, and the atcr-appview executable.
import { join } from 'node:path'
import {
  type AppViewProcess,
  type HoldProcess,
  makeTempDir,
  removeTempDir,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  type TestAccount,
  type TestNetwork,
} from '@atcr/testkit'
import { BIN_DIR } from './cli-harness.ts'

export interface HelperStack {
  net: TestNetwork
  alice: TestAccount
  bob: TestAccount
  hold: HoldProcess
  appview: AppViewProcess
  /** `127.0.0.1:PORT`: the registry host in image references and auth files. */
  host: string
  /** `http://127.0.0.1:PORT` */
  url: string
  /** PATH with the helper's bin directory first, so clients find docker-credential-atcr. */
  path: string
  /** `did-plc-xyz`: how an account's DID is spelled in image names. */
  nameOf(account: TestAccount): string
  close(): Promise<void>
}

export async function startHelperStack(): Promise<HelperStack> {
  const cleanups: (() => Promise<unknown>)[] = []
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
  }
  try {
    const root = await makeTempDir('atcr-helper-stack-')
    cleanups.push(() => removeTempDir(root))
    const net = await startNetwork()
    cleanups.push(() => net.close())
    const alice = await net.pds.createAccount('alice.test')
    const bob = await net.pds.createAccount('bob.test')
    const hold = await startHoldProcess({ plcUrl: net.plc.url, ownerDid: alice.did })
    cleanups.push(() => hold.close())
    const appview = await startAppViewProcess({
      dataDir: join(root, 'appview'),
      plcUrl: net.plc.url,
      handleResolverUrl: net.pds.url,
      config: { registry: { default_hold_did: hold.did } },
    })
    cleanups.push(() => appview.kill())
    const host = new URL(appview.url).host
    return {
      net,
      alice,
      bob,
      hold,
      appview,
      host,
      url: appview.url,
      path: `${BIN_DIR}:${process.env.PATH ?? ''}`,
      nameOf: (account) => account.did.replaceAll(':', '-'),
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}
