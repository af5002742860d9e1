// Administrator pages: platform dashboard, users and roles, the merchant review queue with document
// preview, merchant decisions with reasons, reversals, the event backlog and dead letters. A user
// without the admin role who opens these pages sees the API's 403.

import { api, get, post, newKey } from './api.js';
import { h, field, setMain, onSubmit, section, table, money, when, badge, barChart, errorBox, okBox } from './ui.js';

export async function dashboardPage() {
  const totals = h('div', {}), charts = h('div', { class: 'grid two' });
  const rev = h('form', { class: 'inline', novalidate: true },
    field('Operation', { name: 'kind', options: [['topups', 'Top-up'], ['withdrawals', 'Withdrawal'], ['transfers', 'Transfer']] }),
    field('Operation id', { name: 'id', required: true, autocomplete: 'off' }), h('button', { type: 'submit', class: 'danger' }, 'Reverse…'));
  let key = newKey();
  onSubmit(rev, async (d) => {
    if (!window.confirm(`Reverse ${d.get('kind')} ${d.get('id')}? A linked, balancing entry is booked.`)) return null;
    const op = await post(`/api/v1/${d.get('kind')}/${encodeURIComponent(d.get('id'))}/reversal`, undefined, key);
    key = newKey();
    return `Reversal ${op.id}: ${money(op.amount, op.currency)} ${op.status}.`;
  });
  setMain(h('h1', {}, 'Platform'), totals, charts, h('section', { class: 'panel' }, h('h2', {}, 'Reverse an operation'), rev));
  await section(totals, async () => {
    const d = await get('/api/v1/stats/dashboard');
    return d.totals.map((t) => h('div', { class: 'panel' }, h('p', {}, 'Card balances: ', h('strong', { class: 'amount' }, money(t.balance, t.currency))),
      table([{ label: 'Figure', value: (f) => f.name }, { label: 'Count', num: true, value: (f) => f.count },
        { label: 'Net', num: true, value: (f) => money(f.amount, t.currency) }, { label: 'Reversed', num: true, value: (f) => money(f.reversed, t.currency) }], t.figures)));
  });
  await section(charts, async () => {
    const year = new Date().getFullYear();
    const kinds = [['topup', 'Top-ups'], ['withdrawal', 'Withdrawals'], ['transfer', 'Transfers'], ['payment', 'Payments']];
    const all = await Promise.all(kinds.map(([k]) => get(`/api/v1/stats/${k}?year=${year}`)));
    return all.map((st, i) => barChart(`${kinds[i][1]} by month (platform)`, st));
  });
}

export async function usersPage() {
  const out = h('div', {});
  const form = h('form', { class: 'inline', novalidate: true }, field('Search', { name: 'search' }), h('button', { type: 'submit' }, 'Search'));
  const show = (d) => section(out, async () => {
    const q = new URLSearchParams({ limit: '50' });
    if (d.get('search')) q.set('search', d.get('search'));
    const users = (await get(`/api/v1/users?${q}`)).items;
    return table([
      { label: 'Name', value: (u) => `${u.first_name} ${u.last_name}` }, { label: 'E-mail', value: (u) => u.email },
      { label: 'Roles', value: (u) => rolesCell(u) }, { label: 'Joined', value: (u) => when(u.created_at) },
    ], users, 'No users match.');
  });
  onSubmit(form, show);
  setMain(h('h1', {}, 'Users'), h('div', { class: 'panel' }, form), out);
  await show(new FormData(form));
}

function rolesCell(u) {
  const cell = h('div', { class: 'actions' });
  const render = (roles) => {
    cell.replaceChildren(...roles.map((r) => h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove role ${r} from ${u.email}`, onclick: async () => {
      try { await api('DELETE', `/api/v1/users/${u.id}/roles/${r}`); render(roles.filter((x) => x !== r)); } catch (e) { cell.append(errorBox(e)); }
    } }, `${r} ✕`)));
    const add = h('select', { 'aria-label': `Add a role to ${u.email}` }, h('option', { value: '' }, 'Add role…'), ['user', 'merchant', 'admin'].filter((r) => !roles.includes(r)).map((r) => h('option', { value: r }, r)));
    add.addEventListener('change', async () => {
      if (!add.value) return;
      try { await post(`/api/v1/users/${u.id}/roles`, { role: add.value }); render([...roles, add.value]); } catch (e) { cell.append(errorBox(e)); }
    });
    cell.append(add);
  };
  render(u.roles || []);
  return cell;
}

export async function reviewPage() {
  const out = h('div', {});
  setMain(h('h1', {}, 'Merchant review'), h('p', { class: 'muted' }, 'Documents waiting for a decision, oldest first.'), out);
  await section(out, async () => {
    const docs = (await get('/api/v1/merchant-documents?status=submitted&limit=100')).items;
    return table([
      { label: 'Merchant', value: (d) => h('a', { href: `#/admin/merchants/${d.merchant_id}` }, `#${d.merchant_id}`) },
      { label: 'Document', value: (d) => d.doc_type.replace(/_/g, ' ') }, { label: 'File', value: (d) => d.file_name },
      { label: 'Uploaded', value: (d) => when(d.created_at) },
    ], docs, 'Nothing waits for review.');
  });
}

export async function merchantReviewPage(id) {
  const head = h('div', {}), docs = h('div', {}), preview = h('div', { 'aria-live': 'polite' });
  setMain(h('h1', {}, `Merchant #${id}`), head, h('section', { class: 'panel' }, h('h2', {}, 'Documents'), docs), preview);
  const decision = (action, label, cls) => {
    const f = h('form', { class: 'inline', novalidate: true }, action === 'approve' ? null : field(`Reason to ${action}`, { name: 'reason', required: true, maxlength: '500' }), h('button', { type: 'submit', class: cls }, label));
    onSubmit(f, async (d) => {
      const body = d.get('reason') ? { reason: d.get('reason') } : {};
      const m = await post(`/api/v1/merchants/${id}/${action}`, body);
      loadHead();
      return `Merchant is now ${m.status}.`;
    });
    return f;
  };
  const loadHead = () => section(head, async () => {
    const m = await get(`/api/v1/merchants/${id}`);
    return h('div', { class: 'panel' }, h('dl', { class: 'kv' }, h('dt', {}, 'Business'), h('dd', {}, m.business_name), h('dt', {}, 'Status'), h('dd', { 'data-testid': 'merchant-status' }, badge(m.status)),
      h('dt', {}, 'Contact'), h('dd', {}, m.contact_email)), h('div', { class: 'stack' }, decision('approve', 'Approve merchant', null), decision('reject', 'Reject', 'danger'), decision('suspend', 'Suspend', 'danger')));
  });
  const show = async (d) => {
    const blob = await api('GET', `/api/v1/merchants/${id}/documents/${d.id}/content`, { blob: true });
    const url = URL.createObjectURL(blob);
    const el = blob.type === 'application/pdf' ? h('iframe', { src: url, class: 'preview-frame', title: `Preview of ${d.file_name}` }) : h('img', { src: url, alt: `Preview of ${d.file_name}`, class: 'preview-img' });
    preview.replaceChildren(h('section', { class: 'panel' }, h('h2', {}, d.file_name), el));
  };
  const review = (d, decisionName) => async () => {
    const note = decisionName === 'reject' ? window.prompt('Why is it rejected? (the merchant sees this)') : null;
    if (decisionName === 'reject' && !note) return;
    try { await post(`/api/v1/merchants/${id}/documents/${d.id}/review`, note ? { decision: decisionName, note } : { decision: decisionName }); loadDocs(); } catch (e) { preview.replaceChildren(errorBox(e)); }
  };
  const loadDocs = () => section(docs, async () => table([
    { label: 'Document', value: (d) => d.doc_type.replace(/_/g, ' ') }, { label: 'File', value: (d) => d.file_name }, { label: 'Status', value: (d) => badge(d.status) },
    { label: '', value: (d) => h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => show(d).catch((e) => preview.replaceChildren(errorBox(e))) }, 'Preview'),
      d.status === 'submitted' ? [h('button', { type: 'button', onclick: review(d, 'approve') }, 'Approve'), h('button', { type: 'button', class: 'danger', onclick: review(d, 'reject') }, 'Reject')] : null) },
  ], await get(`/api/v1/merchants/${id}/documents`), 'No documents.'));
  await Promise.all([loadHead(), loadDocs()]);
}

export async function eventsPage() {
  const status = h('div', {}), dead = h('div', {});
  setMain(h('h1', {}, 'Events'), h('section', { class: 'panel' }, h('h2', {}, 'Backlog'), status), h('section', { class: 'panel' }, h('h2', {}, 'Dead letters'), dead));
  await section(status, async () => {
    const s = await get('/api/v1/admin/events');
    const rows = Object.entries(s).filter(([, v]) => typeof v !== 'object' || v === null);
    return h('dl', { class: 'kv' }, rows.flatMap(([k, v]) => [h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, String(v))]));
  });
  await section(dead, async () => table([
    { label: 'Kind', value: (d) => d.kind }, { label: 'Consumer', value: (d) => d.consumer }, { label: 'Reference', value: (d) => d.reference },
    { label: 'Reason', value: (d) => d.reason }, { label: 'Attempts', num: true, value: (d) => d.attempts }, { label: 'When', value: (d) => when(d.created_at) },
  ], (await get('/api/v1/admin/dead-letters?limit=50')).items, 'No dead letters.'));
}
export { okBox };
