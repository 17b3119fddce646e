import { registryClientScenarios } from './registry-client-scenarios.ts'

registryClientScenarios('s3')
