// Debian's Chromium driven by playwright-core: no browser download. Flags keep
// it off the network beyond loopback (see ../shared/docs/toolchain-facts.md).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

export const ARTIFACTS = fileURLToPath(new URL('../artifacts', import.meta.url));
const EXECUTABLE = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: EXECUTABLE,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** Saves a full-page screenshot under test/artifacts/<journey>/<step>.png for a reviewer. */
export async function snapshot(page: Page, journey: string, step: string): Promise<void> {
  const dir = path.join(ARTIFACTS, process.env.TEST_DATABASE ?? 'pglite', journey);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${step}.png`);
  try {
    await page.screenshot({ path: file, fullPage: true });
  } catch (error) {
    // Headless Chromium now and then fails a capture on a busy machine
    // (Page.captureScreenshot: "Unable to capture screenshot"); the page itself is fine.
    if (!String(error).includes('Unable to capture screenshot')) throw error;
    await page.screenshot({ path: file, fullPage: true });
  }
}
