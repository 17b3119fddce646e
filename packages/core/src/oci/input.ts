// Echoes client input inside error messages: quoted, and cut short so that a megabyte of
// garbage in a URL does not come back a megabyte long.
const ECHO_MAX = 160

export function quoteInput(value: string): string {
  return JSON.stringify(value.length > ECHO_MAX ? `${value.slice(0, ECHO_MAX)}…` : value)
}
