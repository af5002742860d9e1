// The API client of the console: same-origin fetch with the session cookie (never a token in
// script-visible storage), the session's CSRF token on every change, one refresh on 401, and the
// API's error codes and messages turned into ApiError.

let session = null; // {user_id, roles, csrf_token}, in memory only

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function currentSession() { return session; }
export function hasRole(role) { return !!session && session.roles.includes(role); }

let inflight = 0;
function progress(delta) {
  inflight += delta;
  const bar = document.getElementById('progress');
  if (bar) bar.hidden = inflight === 0;
}

async function raw(method, path, { body, form, idem } = {}) {
  const headers = { Accept: 'application/json' };
  const opts = { method, credentials: 'same-origin', headers, cache: 'no-store' };
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  if (form) opts.body = form;
  if (idem) headers['Idempotency-Key'] = idem;
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf_token;
  progress(1);
  try {
    return await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, 'network', 'The server could not be reached. Check your connection and try again.');
  } finally {
    progress(-1);
  }
}

async function parse(resp) {
  if (resp.status === 204) return null;
  const type = resp.headers.get('content-type') || '';
  const data = type.includes('json') ? await resp.json().catch(() => null) : null;
  if (!resp.ok) {
    const err = (data && data.error) || {};
    const retry = resp.headers.get('retry-after');
    let message = err.message || `The server answered ${resp.status}.`;
    if (resp.status === 429 && retry) message += ` Try again in ${retry} s.`;
    throw new ApiError(resp.status, err.code || 'http_' + resp.status, message, err.field);
  }
  return data;
}

let refreshing = null;
/** Rotates the refresh cookie; true when the session goes on. */
export function refresh() {
  if (!refreshing) {
    refreshing = raw('POST', '/console/session/refresh')
      .then(async (r) => { if (!r.ok) { session = null; return false; } session = await r.json(); return true; })
      .catch(() => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** Calls the API; retries once after refreshing the session on 401. */
export async function api(method, path, opts = {}) {
  let resp = await raw(method, path, opts);
  if (resp.status === 401 && !path.startsWith('/console/session') && (await refresh())) {
    resp = await raw(method, path, opts);
  }
  if (resp.status === 401 && !path.startsWith('/console/session')) {
    session = null;
    window.dispatchEvent(new CustomEvent('payd:signed-out'));
  }
  if (opts.blob) {
    if (!resp.ok) return parse(resp);
    return resp.blob();
  }
  return parse(resp);
}

export const get = (path) => api('GET', path);
export const post = (path, body, idem) => api('POST', path, { body, idem });

/** Loads the session from the cookie (null when signed out). */
export async function loadSession() {
  const resp = await raw('GET', '/console/session');
  if (resp.ok) { session = await resp.json(); return session; }
  if (resp.status === 401 && (await refresh())) return session;
  session = null;
  return null;
}

export async function signIn(email, password) {
  session = await parse(await raw('POST', '/console/session', { body: { email, password } }));
  return session;
}

export async function signOut() {
  try { await api('DELETE', '/console/session'); } finally { session = null; }
}

/** A fresh idempotency key: made when a money form is rendered, kept for that form instance. */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** All pages of a cursor-paged list (bounded). */
export async function pages(path, max = 5) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < max; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}
