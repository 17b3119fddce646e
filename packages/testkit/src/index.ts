export {
  type AppViewProcess,
  type StartAppViewProcessOptions,
  startAppViewProcess,
} from './appview-process.ts'
export {
  approveOnAuthorizePage,
  CHROMIUM_PATH,
  hasChromium,
  launchBrowser,
  type TestBrowser,
} from './browser.ts'
export { hasCaddy, startCaddy, type TestCaddy } from './caddy.ts'
export { type DidWebServer, startDidWebServer } from './did-web-server.ts'
export { type StaticDns, type StaticDnsTable, staticDns } from './dns.ts'
export {
  configEnvArb,
  configYamlArb,
  damagedBytesArb,
  expectConfigOutcome,
  expectEnvIssuesFrom,
  type Json,
  keysOf,
  mutatedJson,
  weirdJsonValue,
} from './fuzz.ts'
export {
  type HaproxyBackend,
  hasHaproxy,
  type ServedRequest,
  type StartHaproxyOptions,
  startHaproxy,
  type TestHaproxy,
} from './haproxy.ts'
export { type HoldProcess, type StartHoldProcessOptions, startHoldProcess } from './hold-process.ts'
export { canUsePrivateHosts, type PrivateHosts, privateHosts } from './hosts.ts'
export { type JetstreamEvent, startJetstream, type TestJetstream } from './jetstream.ts'
export { startNetwork, type TestNetwork } from './network.ts'
export {
  type CommandResult,
  type ContainerStorage,
  createContainerStorage,
  createDockerCli,
  hasCommand,
  type RunOptions,
  run,
  writeAuthFile,
} from './oci-clients.ts'
export {
  type ArtifactBlob,
  type ArtifactSpec,
  type BuiltArtifact,
  type BuiltImage,
  type BuiltIndex,
  type ContainerConfig,
  createOciLayout,
  type Descriptor,
  type FilesLayer,
  type ImageSpec,
  type IndexJson,
  type IndexSpec,
  type LayerFile,
  type LayerInfo,
  type LayerSpec,
  type OciLayout,
  type OciLayoutOptions,
  type Platform,
  type RandomLayer,
  REF_NAME_ANNOTATION,
  writeOciImage,
} from './oci-layout.ts'
export { type StartPdsOptions, startPds, type TestAccount, type TestPds } from './pds.ts'
export { startPlc, type TestPlc } from './plc.ts'
export { bindToLoopback, freePort, LOOPBACK, portOf } from './ports.ts'
export { hasPostgres, postgresBinDir, startPostgres, type TestPostgres } from './postgres.ts'
export { startS3, type TestS3 } from './s3.ts'
export {
  type S3Fault,
  type S3FaultProxy,
  type S3FaultRule,
  type S3Operation,
  s3Operation,
  startS3FaultProxy,
} from './s3-fault-proxy.ts'
export { mountSmallFilesystem, type SmallFilesystem } from './small-filesystem.ts'
export { startTcpProxy, type TcpProxy } from './tcp-proxy.ts'
export { makeTempDir, removeTempDir } from './temp-dir.ts'
