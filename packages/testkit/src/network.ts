import { type StartPdsOptions, startPds, type TestPds } from './pds.ts'
import { startPlc, type TestPlc } from './plc.ts'

export interface TestNetwork {
  plc: TestPlc
  pds: TestPds
  /** Starts another PDS on the same PLC (for cross-PDS scenarios). */
  addPds(options?: Omit<StartPdsOptions, 'plcUrl'>): Promise<TestPds>
  close(): Promise<void>
}

/** A real local AT Protocol network: one PLC directory and one PDS, both on loopback. */
export async function startNetwork(
  options: Omit<StartPdsOptions, 'plcUrl'> = {},
): Promise<TestNetwork> {
  const plc = await startPlc()
  const extra: TestPds[] = []
  try {
    const pds = await startPds({ ...options, plcUrl: plc.url })
    return {
      plc,
      pds,
      addPds: async (more = {}) => {
        const added = await startPds({ ...more, plcUrl: plc.url })
        extra.push(added)
        return added
      },
      close: async () => {
        for (const server of [...extra, pds]) await server.close()
        await plc.close()
      },
    }
  } catch (error) {
    await plc.close()
    throw error
  }
}
