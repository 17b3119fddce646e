// A bare node:http server on 127.0.0.1 that reads each request body to the end and drops
// it: the loopback HTTP ceiling for the physical limits. Prints its port; stops on SIGTERM
// or when stdin closes.
import { createServer } from 'node:http'

const server = createServer((request, response) => {
  let bytes = 0
  request.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  request.on('end', () => response.writeHead(201, { 'x-bytes': String(bytes) }).end())
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`)
})
const stop = () => process.exit(0)
process.on('SIGTERM', stop)
process.stdin.on('close', stop)
process.stdin.resume()
