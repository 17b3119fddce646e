// A real browser for tests: Debian's chromium (scripts/apt-deps.sh) driven by
// playwright-core, headless, with a fresh profile per launch. No browser is downloaded.
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'

export const CHROMIUM_PATH = '/usr/bin/chromium'

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export interface TestBrowser {
  context: BrowserContext
  newPage(): Promise<Page>
  close(): Promise<void>
}

/** Whether the browser tests can run here (chromium installed). */
export function hasChromium(): boolean {
  return existsSync(CHROMIUM_PATH)
}

export async function launchBrowser(): Promise<TestBrowser> {
  const { chromium } = await import('playwright-core')
  const profile = await mkdtemp(join(tmpdir(), 'atcr-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: FLAGS,
    })
    return {
      context,
      newPage: () => context.newPage(),
      close: async () => {
        await context.close()
        await rm(profile, { recursive: true, force: true })
      },
    }
  } catch (error) {
    await rm(profile, { recursive: true, force: true })
    throw error
  }
}

/**
 * Signs an account in on the PDS's authorize page the browser was sent to (the username is
 * prefilled from the login hint), then allows the client on the consent step. Resolves
 * once the browser has left the PDS (it is on the client's callback or beyond).
 */
export async function approveOnAuthorizePage(
  page: Page,
  account: { password: string },
  pdsUrl: string,
): Promise<void> {
  const pds = new URL(pdsUrl).origin
  await page.waitForURL((url) => url.origin === pds)
  await page.locator('input[name="password"]').fill(account.password)
  await page.locator('button[type="submit"]').first().click()
  await page.getByRole('button', { name: 'Authorize' }).click()
  await page.waitForURL((url) => url.origin !== pds, { timeout: 30_000 })
}
