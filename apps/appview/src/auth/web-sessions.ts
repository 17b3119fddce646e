// The AppView's browser sessions (the store is @atcr/core/oauth's WebSessions).
export { WebSessions, type WebUser } from '@atcr/core/oauth'

export const SESSION_COOKIE = 'atcr_session'
