// The AppView database's tables, one interface each; each feature's migration creates its
// own and adds them here.
export type AppViewSchema = {}
