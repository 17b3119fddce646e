// Access control of the hold's methods: authenticate the caller (service-auth JWT), then
// check what it may do against the captain and crew records.
export { ANONYMOUS, authenticate, type HoldCaller } from './authenticate.ts'
export {
  ALL_PERMISSIONS,
  type CrewEntry,
  getCaptain,
  getCrewMember,
  PERMISSION,
  permissionsOf,
  requireCrewAdmin,
  requireOwner,
  requireRead,
  requireTrustedAppView,
  requireWrite,
} from './permissions.ts'
