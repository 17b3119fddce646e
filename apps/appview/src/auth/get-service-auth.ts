// com.atproto.server.getServiceAuth, the one PDS method the AppView calls that
// @atproto/lex-client does not carry: the user's PDS mints a service token for a hold.
import { l } from '@atproto/lex-schema'

export const getServiceAuth = l.query(
  'com.atproto.server.getServiceAuth',
  l.params({
    aud: l.string({ format: 'did' }),
    exp: l.optional(l.integer()),
    lxm: l.optional(l.string({ format: 'nsid' })),
  }),
  l.jsonPayload({ token: l.string() }),
  ['BadExpiration'],
)
