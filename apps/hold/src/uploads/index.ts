export { registerUploadRoutes } from './routes.ts'
export {
  abortUpload,
  type CompletedPart,
  completeUpload,
  getPartUploadUrl,
  initiateUpload,
  PART_NUMBER_HEADER,
  type PartUploadTarget,
  type SweepResult,
  sweepExpiredUploads,
  UPLOAD_ID_HEADER,
  uploadPart,
} from './service.ts'
