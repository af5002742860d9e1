// Merchant pages: apply, documents (upload, replace, review status), API keys (secret shown once,
// rotate, revoke), webhooks (add, signing secret, delivery log, redeliver), payments and refunds,
// balance, statement and charts. Which merchant a user may see is the API's decision.

import { api, get, post, pages, newKey } from './api.js';
import { h, field, setMain, onSubmit, section, table, money, toMinor, when, badge, barChart, okBox, errorBox } from './ui.js';

const DOC_TYPES = [['business_licence', 'Business licence'], ['owner_identity', 'Owner identity'], ['tax_registration', 'Tax registration'], ['bank_statement', 'Bank statement']];

function tabs(id, current) {
  const t = (href, label) => h('a', { href: `#/merchants/${id}${href}`, 'aria-current': current === href ? 'page' : null, class: 'button secondary' }, label);
  return h('nav', { class: 'actions', 'aria-label': 'Merchant' }, t('', 'Overview'), t('/payments', 'Payments'), t('/webhooks', 'Webhooks'));
}

function secretBox(title, value, testid) {
  return h('div', { class: 'warning', role: 'alert' }, h('strong', {}, title), h('p', {}, 'Shown only once: copy it now and keep it in your server’s secret store.'),
    h('p', { class: 'secret', 'data-testid': testid }, value));
}

export async function merchantsPage() {
  const list = h('div', {});
  const form = h('form', { class: 'stack', novalidate: true },
    field('Business name', { name: 'business_name', required: true, maxlength: '200' }),
    field('Contact e-mail', { name: 'contact_email', type: 'email', required: true }),
    field('Category', { name: 'category', required: true, value: 'retail' }),
    field('Website (optional)', { name: 'website', type: 'url' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply')));
  onSubmit(form, async (d) => {
    const body = { business_name: d.get('business_name'), contact_email: d.get('contact_email'), category: d.get('category') };
    if (d.get('website')) body.website = d.get('website');
    const m = await post('/api/v1/merchants', body);
    location.hash = `#/merchants/${m.id}`;
  });
  setMain(h('h1', {}, 'Merchant'), list, h('section', { class: 'panel' }, h('h2', {}, 'Apply to accept payments'), form));
  await section(list, async () => {
    const ms = await pages('/api/v1/merchants?limit=50', 2);
    return table([
      { label: 'Business', value: (m) => h('a', { href: `#/merchants/${m.id}` }, m.business_name) },
      { label: 'Status', value: (m) => badge(m.status) },
      { label: 'Applied', value: (m) => when(m.created_at) },
    ], ms, 'You have no merchant yet.');
  });
}

export async function merchantPage(id) {
  const head = h('div', {}), docs = h('div', {}), keys = h('div', {}), charts = h('div', { class: 'grid two' }), stmt = h('div', {});
  setMain(h('h1', {}, 'Merchant'), tabs(id, ''), head,
    h('section', { class: 'panel' }, h('h2', {}, 'Documents'), docs),
    h('section', { class: 'panel' }, h('h2', {}, 'API keys'), keys),
    h('section', {}, h('h2', {}, 'Payments by month'), charts),
    h('section', { class: 'panel' }, h('h2', {}, 'Statement'), stmt));
  await section(head, async () => {
    const [m, bal] = await Promise.all([get(`/api/v1/merchants/${id}`), get(`/api/v1/merchants/${id}/balance`)]);
    document.querySelector('main h1').textContent = m.business_name;
    return h('div', { class: 'grid two' },
      h('div', { class: 'panel' }, h('dl', { class: 'kv' }, h('dt', {}, 'Status'), h('dd', { 'data-testid': 'merchant-status' }, badge(m.status)),
        m.status_reason ? [h('dt', {}, 'Reason'), h('dd', {}, m.status_reason)] : null,
        h('dt', {}, 'Contact'), h('dd', {}, m.contact_email), h('dt', {}, 'Category'), h('dd', {}, m.category))),
      h('div', { class: 'panel' }, h('p', { class: 'muted' }, 'Balance'), h('p', { class: 'big amount' }, money(bal.balance, bal.currency))));
  });
  loadDocs(id, docs);
  loadKeys(id, keys);
  section(charts, async () => {
    const year = new Date().getFullYear();
    const [amount, method] = await Promise.all([get(`/api/v1/stats/payment?merchant_id=${id}&year=${year}`), get(`/api/v1/stats/payment?merchant_id=${id}&year=${year}&metric=method`)]);
    return [barChart('Payments (net, gross, refunded)', amount), barChart('Payments by method', method)];
  });
  section(stmt, async () => table([
    { label: 'Date', value: (r) => when(r.created_at) }, { label: 'Kind', value: (r) => r.kind },
    { label: 'Amount', num: true, value: (r) => money(r.amount) }, { label: 'Balance after', num: true, value: (r) => money(r.balance_after) },
  ], (await get(`/api/v1/merchants/${id}/statement?limit=50`)).items, 'No entries yet.'));
}

function loadDocs(id, box) {
  const list = h('div', {});
  const refresh = () => section(list, async () => {
    const docs = await get(`/api/v1/merchants/${id}/documents`);
    return table([
      { label: 'Document', value: (d) => d.doc_type.replace(/_/g, ' ') },
      { label: 'File', value: (d) => `${d.file_name} (v${d.version || 1})` },
      { label: 'Status', value: (d) => [badge(d.status), d.review_note ? h('small', {}, ` ${d.review_note}`) : null] },
      { label: 'Uploaded', value: (d) => when(d.created_at) },
      { label: 'Replace', value: (d) => replaceForm(id, d, refresh) },
    ], docs, 'No documents yet: upload each required document.');
  });
  const upload = h('form', { class: 'inline', novalidate: true },
    field('Document', { name: 'doc_type', options: DOC_TYPES }),
    field('File (PDF, PNG or JPEG)', { name: 'file', type: 'file', accept: 'application/pdf,image/png,image/jpeg', required: true }),
    h('button', { type: 'submit' }, 'Upload'));
  onSubmit(upload, async (d) => {
    const form = new FormData();
    form.append('doc_type', d.get('doc_type'));
    form.append('file', d.get('file'));
    await api('POST', `/api/v1/merchants/${id}/documents`, { form });
    upload.querySelector('[name=file]').value = '';
    await refresh();
    return 'Uploaded; it waits for review.';
  });
  box.replaceChildren(list, upload);
  refresh();
}

function replaceForm(id, doc, refresh) {
  const f = h('form', { class: 'inline', novalidate: true },
    field(`New file for ${doc.doc_type.replace(/_/g, ' ')}`, { name: 'file', type: 'file', accept: 'application/pdf,image/png,image/jpeg', required: true }),
    h('button', { type: 'submit', class: 'secondary' }, 'Replace'));
  onSubmit(f, async (d) => {
    const form = new FormData();
    form.append('file', d.get('file'));
    await api('POST', `/api/v1/merchants/${id}/documents/${doc.id}/replace`, { form });
    await refresh();
  });
  return f;
}

function loadKeys(id, box) {
  const shown = h('div', { 'aria-live': 'polite' });
  const create = h('form', { class: 'inline', novalidate: true }, field('Label', { name: 'label', required: true, maxlength: '100', value: 'checkout server' }), h('button', { type: 'submit' }, 'Create key'));
  onSubmit(create, async (d) => {
    const k = await post(`/api/v1/merchants/${id}/api-keys`, { label: d.get('label') });
    shown.replaceChildren(secretBox(`API key “${k.key.label}”`, k.api_key, 'api-key-secret'));
    refresh();
  });
  const list = h('div', {});
  const refresh = () => section(list, async () => {
    const keys = await get(`/api/v1/merchants/${id}/api-keys`);
    const items = Array.isArray(keys) ? keys : keys.items;
    return table([
      { label: 'Label', value: (k) => k.label }, { label: 'Key id', value: (k) => k.key_id },
      { label: 'Last used', value: (k) => when(k.last_used_at) },
      { label: 'State', value: (k) => (k.revoked_at ? badge('revoked') : badge('active')) },
      { label: 'Actions', value: (k) => (k.revoked_at ? '' : h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: async () => { try { const r = await post(`/api/v1/merchants/${id}/api-keys/${k.id}/rotate`); shown.replaceChildren(secretBox('Rotated key', r.api_key, 'api-key-secret')); refresh(); } catch (e) { shown.replaceChildren(errorBox(e)); } } }, 'Rotate'),
        h('button', { type: 'button', class: 'danger', onclick: async () => { if (!window.confirm(`Revoke “${k.label}”? Clients using it stop working.`)) return; try { await api('DELETE', `/api/v1/merchants/${id}/api-keys/${k.id}`); refresh(); } catch (e) { shown.replaceChildren(errorBox(e)); } } }, 'Revoke'))) },
    ], items, 'No keys yet.');
  });
  box.replaceChildren(shown, list, create);
  refresh();
}

export async function paymentsPage(id) {
  const out = h('div', {});
  const form = h('form', { class: 'inline', novalidate: true }, field('Order reference', { name: 'search', maxlength: '100' }),
    field('Status', { name: 'status', options: [['', 'Any'], ['success', 'Succeeded'], ['failed', 'Failed']] }), h('button', { type: 'submit' }, 'Search'));
  const refund = h('div', { 'aria-live': 'polite' });
  const show = async (d) => {
    const q = new URLSearchParams({ limit: '50' });
    if (d.get('search')) q.set('search', d.get('search'));
    if (d.get('status')) q.set('status', d.get('status'));
    await section(out, async () => table([
      { label: 'Date', value: (p) => when(p.created_at) }, { label: 'Order', value: (p) => p.order_ref || '—' },
      { label: 'Kind', value: (p) => p.kind }, { label: 'Card', value: (p) => p.source_card_masked || '—' },
      { label: 'Amount', num: true, value: (p) => money(p.amount, p.currency) }, { label: 'Status', value: (p) => badge(p.status) },
      { label: '', value: (p) => (p.kind === 'payment' && p.status === 'success' ? h('button', { type: 'button', class: 'secondary', onclick: () => refundForm(refund, p) }, 'Refund…') : '') },
    ], (await get(`/api/v1/merchants/${id}/payments?${q}`)).items, 'No payments found.'));
  };
  onSubmit(form, show);
  setMain(h('h1', {}, 'Payments'), tabs(id, '/payments'), h('div', { class: 'panel' }, form), refund, out);
  await show(new FormData(form));
}

/** Refunds are allowed to the merchant's API keys and admins (the API's rule): the owner pastes a key, used for this request only. */
function refundForm(box, p) {
  const key = newKey();
  const f = h('form', { class: 'stack panel', novalidate: true },
    h('h2', {}, `Refund order ${p.order_ref || p.id}`),
    field('Amount to refund', { name: 'amount', inputmode: 'decimal', value: (p.amount / 100).toFixed(2), required: true }),
    field('Reason', { name: 'reason', maxlength: '200' }),
    field('Your API key (refunds are made with a merchant key; it is not kept)', { name: 'api_key', type: 'password', autocomplete: 'off' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, 'Confirm refund'), h('button', { type: 'button', class: 'secondary', onclick: () => box.replaceChildren() }, 'Cancel')));
  onSubmit(f, async (d) => {
    const body = { amount: toMinor(d.get('amount')) };
    if (d.get('reason')) body.reason = d.get('reason');
    const headers = d.get('api_key') ? { 'X-Api-Key': d.get('api_key') } : {};
    const resp = await fetch(`/api/v1/payments/${p.id}/refunds`, { method: 'POST', credentials: d.get('api_key') ? 'omit' : 'same-origin', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key, ...headers }, body: JSON.stringify(body) });
    if (!resp.ok) { const e = (await resp.json().catch(() => ({}))).error || {}; throw Object.assign(new Error(e.message || `refused (${resp.status})`), { field: e.field }); }
    const r = await resp.json();
    return okBox(`Refunded ${money(r.amount, r.currency)} (${r.status}).`);
  });
  box.replaceChildren(f);
}

export async function webhooksPage(id) {
  const list = h('div', {}), shown = h('div', { 'aria-live': 'polite' }), log = h('div', {});
  const form = h('form', { class: 'stack', novalidate: true }, field('URL', { name: 'url', type: 'url', required: true }), field('Event types', { name: 'event_types', value: '*' }, 'Comma-separated, or * for all'), field('Description', { name: 'description' }), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add endpoint')));
  onSubmit(form, async (d) => {
    const body = { url: d.get('url'), event_types: String(d.get('event_types') || '*').split(',').map((s) => s.trim()).filter(Boolean) };
    if (d.get('description')) body.description = d.get('description');
    const r = await post(`/api/v1/merchants/${id}/webhooks`, body);
    shown.replaceChildren(secretBox('Signing secret', r.secret, 'webhook-secret'));
    refresh();
  });
  const deliveries = (w) => section(log, async () => {
    const items = (await get(`/api/v1/merchants/${id}/webhooks/${w.id}/deliveries?limit=50`)).items;
    return [h('h2', {}, `Deliveries to ${w.url}`), table([
      { label: 'Event', value: (x) => x.event_type }, { label: 'Status', value: (x) => badge(x.status) }, { label: 'Attempts', num: true, value: (x) => x.attempts },
      { label: 'Last answer', value: (x) => x.last_status || x.last_error || '—' }, { label: 'Created', value: (x) => when(x.created_at) },
      { label: '', value: (x) => h('button', { type: 'button', class: 'secondary', onclick: async () => { try { await post(`/api/v1/merchants/${id}/webhooks/${w.id}/deliveries/${x.id}/redeliver`); deliveries(w); } catch (e) { log.prepend(errorBox(e)); } } }, 'Redeliver') },
    ], items, 'No deliveries yet.')];
  });
  const refresh = () => section(list, async () => {
    const r = await get(`/api/v1/merchants/${id}/webhooks`);
    return table([
      { label: 'URL', value: (w) => w.url }, { label: 'Events', value: (w) => w.event_types.join(', ') }, { label: 'Status', value: (w) => badge(w.status) },
      { label: '', value: (w) => h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => deliveries(w) }, 'Delivery log'),
        h('button', { type: 'button', class: 'secondary', onclick: async () => { try { const s = await post(`/api/v1/merchants/${id}/webhooks/${w.id}/rotate-secret`, { overlap_secs: 3600 }); shown.replaceChildren(secretBox('New signing secret (the old one works for another hour)', s.secret, 'webhook-secret')); } catch (e) { shown.replaceChildren(errorBox(e)); } } }, 'New secret')) },
    ], r.items, 'No endpoints yet.');
  });
  setMain(h('h1', {}, 'Webhooks'), tabs(id, '/webhooks'), shown, list, log, h('section', { class: 'panel' }, h('h2', {}, 'Add an endpoint'), form));
  await refresh();
}
