// The pages of sign-in, device approval and settings.
import type { DeviceInfo, PendingAuthorization } from '../auth/devices.ts'
import type { WebUser } from '../auth/web-sessions.ts'
import { html, layout } from './html.ts'

export function homePage(user: WebUser | null, csrfToken: string | undefined): string {
  const body = user
    ? html`<h1>Signed in</h1><p>You are signed in as <strong>${user.handle ?? user.did}</strong>.</p>
      <p><a href="/settings">Settings and devices</a></p>`
    : html`<h1>ATCR</h1><p>A container registry on the AT Protocol.</p>
      <p><a href="/auth/oauth/login">Sign in with your atproto account</a></p>`
  return layout({ title: 'Home', user, csrfToken }, body)
}

export function signInPage(returnTo: string, error?: string, handle = ''): string {
  return layout(
    { title: 'Sign in' },
    html`<h1>Sign in</h1>
      ${error ? html`<p class="notice" role="alert">${error}</p>` : ''}
      <form method="get" action="/auth/oauth/login">
        <input type="hidden" name="return_to" value="${returnTo}">
        <p><label for="handle">Your handle</label><br>
        <input type="text" id="handle" name="handle" value="${handle}" placeholder="alice.bsky.social" required autocomplete="username"></p>
        <p><button class="primary" type="submit">Sign in</button></p>
      </form>
      <p>You will be sent to your PDS to sign in and allow ATCR to write your container records.</p>`,
  )
}

export function devicePage(
  user: WebUser,
  csrfToken: string,
  userCode: string,
  pending: PendingAuthorization | null,
  message?: string,
): string {
  const body = pending
    ? html`<h1>Approve a device</h1>
        <p>A device asks to push and pull images as <strong>${user.handle ?? user.did}</strong>.</p>
        <p>Device: <strong>${pending.clientName}</strong></p>
        <p>Code: <span class="code">${pending.userCode}</span></p>
        <p>Approve only if this code matches the one shown on your device.</p>
        <form method="post" action="/device">
          <input type="hidden" name="_csrf" value="${csrfToken}">
          <input type="hidden" name="user_code" value="${pending.userCode}">
          <button class="primary" type="submit" name="decision" value="approve">Approve</button>
          <button type="submit" name="decision" value="deny">Deny</button>
        </form>`
    : html`<h1>Connect a device</h1>
        ${message ? html`<p class="notice" role="alert">${message}</p>` : ''}
        <form method="get" action="/device">
          <p><label for="user_code">Code shown on your device</label><br>
          <input type="text" id="user_code" name="user_code" value="${userCode}" placeholder="BCDF-GHJK" required autocomplete="off"></p>
          <p><button class="primary" type="submit">Continue</button></p>
        </form>`
  return layout({ title: 'Device', user, csrfToken }, body)
}

export function deviceDecidedPage(user: WebUser, csrfToken: string, approved: boolean): string {
  const body = approved
    ? html`<h1>Device approved</h1><p>Your device is signed in now; you can close this window.</p>
        <p><a href="/settings">Manage your devices</a></p>`
    : html`<h1>Device denied</h1><p>The device was not signed in.</p>`
  return layout({ title: 'Device', user, csrfToken }, body)
}

export function settingsPage(
  user: WebUser,
  csrfToken: string,
  devices: DeviceInfo[],
  message?: string,
): string {
  const date = (ms: number | null) =>
    ms === null ? 'never' : new Date(ms).toISOString().slice(0, 16).replace('T', ' ')
  const rows = devices.map(
    (
      device,
    ) => html`<tr><td>${device.name}</td><td>${date(device.createdAt)}</td><td>${date(device.lastUsedAt)}</td>
      <td><form class="inline" method="post" action="/settings/devices/${device.id}/revoke">
        <input type="hidden" name="_csrf" value="${csrfToken}">
        <button type="submit" aria-label="Revoke ${device.name}">Revoke</button></form></td></tr>`,
  )
  return layout(
    { title: 'Settings', user, csrfToken },
    html`<h1>Settings</h1>
      ${message ? html`<p class="notice" role="status">${message}</p>` : ''}
      <p>Signed in as <strong>${user.handle ?? user.did}</strong> (${user.did}).</p>
      <h2>Devices</h2>
      ${
        devices.length === 0
          ? html`<p>No devices. Run <code>docker-credential-atcr login</code> to add one.</p>`
          : html`<table><thead><tr><th>Name</th><th>Added</th><th>Last used</th><th><span class="visually-hidden">Action</span></th></tr></thead>
            <tbody>${rows}</tbody></table>`
      }`,
  )
}

export function errorPage(status: number, message: string): string {
  return layout({ title: `Error ${status}` }, html`<h1>Something went wrong</h1><p>${message}</p>`)
}
