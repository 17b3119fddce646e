// @atproto/api, loaded on the first sign-in or use of a PDS session rather than at start:
// its module graph (every lexicon of the atproto and bsky namespaces) is the largest the
// AppView has, and an AppView serving only anonymous pulls never needs it.
type AtpApi = typeof import('@atproto/api')

let loading: Promise<AtpApi> | undefined

export function loadAtpApi(): Promise<AtpApi> {
  loading ??= import('@atproto/api')
  return loading
}
