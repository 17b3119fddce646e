// io.atcr.hold.getLayersForManifest: the layer records written for one manifest (its
// layers and its config blob). Public, like the repo reads that serve the same records.
import { NSID } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import type { HoldContext } from '../../../../context.ts'
import { layersOfManifest } from '../../../../layers/index.ts'
import { output, parseParams } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.get(`/xrpc/${NSID.holdGetLayersForManifest}`, async (request) => {
    const { manifest } = parseParams(NSID.holdGetLayersForManifest, request.query)
    const layers = await layersOfManifest(ctx.db.db, ctx.identity.did, manifest)
    return output(NSID.holdGetLayersForManifest, { layers: layers.map((layer) => layer.value) })
  })
}
