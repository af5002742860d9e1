// Cardholder pages: cards (issue, freeze/unfreeze, close), balance and statement (filters, CSV), top-up,
// withdrawal, paying a person by card number (preview, then confirm), and the user's monthly figures.
// Every money form gets an idempotency key when it is rendered: a double click or a resubmit of the same
// form instance replays the first answer instead of paying twice.

import { get, post, pages, newKey } from './api.js';
import { h, field, setMain, onSubmit, section, table, money, toMinor, amountField, when, badge, downloadCsv, barChart, okBox, errorBox } from './ui.js';

const BRANDS = ['visa', 'mastercard', 'american express', 'discover'];
const METHODS = ['bca', 'bni', 'bri', 'mandiri', 'dana', 'ovo', 'gopay', 'linkaja', 'jenius', 'alfamart', 'indomart'];

async function myCards() {
  return pages('/api/v1/cards?limit=100', 3);
}

function cardOptions(cards, usable = true) {
  const list = usable ? cards.filter((c) => c.status === 'active') : cards;
  return list.map((c) => [String(c.id), `${c.label || c.brand} •••• ${c.last4}`]);
}

function amountOf(d) {
  const v = toMinor(d.get('amount'));
  if (!Number.isFinite(v) || v <= 0) {
    const e = new Error('Enter an amount such as 150000.00');
    e.field = 'amount';
    throw e;
  }
  return v;
}

export async function cardsPage() {
  const list = h('div', {});
  const issued = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'inline', novalidate: true },
    field('Type', { name: 'card_type', options: [['debit', 'Debit'], ['credit', 'Credit']] }),
    field('Network', { name: 'brand', options: BRANDS.map((b) => [b, b]) }),
    field('Label (optional)', { name: 'label', maxlength: '100' }),
    h('button', { type: 'submit' }, 'Issue a card'));
  onSubmit(form, async (d) => {
    const body = { card_type: d.get('card_type'), brand: d.get('brand') };
    if (d.get('label')) body.label = d.get('label');
    const card = await post('/api/v1/cards', body);
    showIssued(issued, card, () => load());
    load();
    return 'Card issued.';
  });
  const load = () => section(list, async () => {
    const cards = await myCards();
    if (!cards.length) return h('p', { class: 'muted' }, 'You have no cards yet. Issue one below.');
    return h('div', { class: 'cards' }, cards.map((c) => h('a', { class: `card-tile ${c.status}`, href: `#/cards/${c.id}`, 'aria-label': `Card ${c.label || c.brand} ending ${c.last4}, ${c.status}` },
      h('div', {}, c.label || c.brand), h('div', { class: 'pan' }, c.card_number), h('div', {}, `${c.card_type} · ${c.status} · ${String(c.expiry_month).padStart(2, '0')}/${c.expiry_year}`))));
  });
  setMain(h('h1', {}, 'Your cards'), issued, list, h('section', { class: 'panel' }, h('h2', {}, 'Issue a card'), form));
  await load();
}

/** The number and CVV of a new card, shown once. */
function showIssued(container, issued, done) {
  const box = h('div', { class: 'warning', role: 'alert', tabindex: '-1' },
    h('h2', {}, 'Write these down now — they are shown only once'),
    h('p', {}, 'payd never shows the full card number or the security code again. Keep them safe and never share the code.'),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Card number'), h('dd', { class: 'secret', 'data-testid': 'issued-number' }, issued.card_number),
      h('dt', {}, 'CVV'), h('dd', { class: 'secret', 'data-testid': 'issued-cvv' }, issued.cvv),
      h('dt', {}, 'Expires'), h('dd', {}, `${String(issued.card.expiry_month).padStart(2, '0')}/${issued.card.expiry_year}`)),
    h('button', { type: 'button', onclick: () => { container.replaceChildren(); done(); } }, 'I have saved them, hide'));
  container.replaceChildren(box);
  box.focus();
}

export async function cardPage(id) {
  const head = h('div', {});
  const stmt = h('div', {});
  setMain(h('h1', {}, 'Card'), head, h('section', { class: 'panel' }, h('h2', {}, 'Statement'), stmtForm(id, stmt), stmt));
  await section(head, async () => {
    const [card, bal] = await Promise.all([get(`/api/v1/cards/${id}`), get(`/api/v1/cards/${id}/balance`)]);
    document.querySelector('main h1').textContent = `Card ${card.label || card.brand} •••• ${card.last4}`;
    const act = (path, label, cls, confirmText) => h('button', { type: 'button', class: cls, onclick: async (ev) => {
      if (confirmText && !window.confirm(confirmText)) return;
      ev.target.disabled = true;
      try { await post(`/api/v1/cards/${id}/${path}`); await cardPage(id); } catch (e) { head.append(errorBox(e)); ev.target.disabled = false; }
    } }, label);
    return h('div', { class: 'grid two' },
      h('div', { class: 'panel' }, h('p', { class: 'muted' }, 'Balance'), h('p', { class: 'big amount', 'data-testid': 'balance' }, money(bal.balance, bal.currency)),
        h('p', {}, 'Available: ', h('span', { class: 'amount' }, money(bal.available, bal.currency)))),
      h('div', { class: 'panel' }, h('dl', { class: 'kv' },
        h('dt', {}, 'Number'), h('dd', {}, card.card_number),
        h('dt', {}, 'Status'), h('dd', {}, badge(card.status)),
        h('dt', {}, 'Type'), h('dd', {}, `${card.card_type} (${card.brand})`),
        h('dt', {}, 'Expires'), h('dd', {}, `${String(card.expiry_month).padStart(2, '0')}/${card.expiry_year}`)),
        h('div', { class: 'actions' },
          card.status === 'active' ? act('freeze', 'Freeze', 'secondary') : null,
          card.status === 'frozen' ? act('unfreeze', 'Unfreeze', 'secondary') : null,
          card.payments_locked_at ? act('unlock', 'Unlock payments', 'secondary') : null,
          card.status !== 'closed' ? act('close', 'Close card', 'danger', 'Close this card for good? Its balance must be zero.') : null)));
  });
}

function stmtForm(id, out) {
  let rows = [];
  const form = h('form', { class: 'inline', novalidate: true },
    field('From', { name: 'from', type: 'date' }), field('To', { name: 'to', type: 'date' }),
    field('Kind', { name: 'kind', options: [['', 'All'], ['topup', 'Top-ups'], ['withdrawal', 'Withdrawals'], ['transfer', 'Transfers'], ['payment', 'Payments'], ['refund', 'Refunds'], ['reversal', 'Reversals']] }),
    h('button', { type: 'submit' }, 'Show'),
    h('button', { type: 'button', class: 'secondary', onclick: () => downloadCsv(`card-${id}-statement.csv`, ['date', 'kind', 'amount_minor', 'balance_after_minor', 'operation_id'], rows.map((r) => [r.created_at, r.kind, r.amount, r.balance_after, r.operation_id])) }, 'Export CSV'));
  const show = async (d) => {
    const q = new URLSearchParams({ limit: '100' });
    if (d.get('from')) q.set('from', new Date(`${d.get('from')}T00:00:00`).toISOString());
    if (d.get('to')) q.set('to', new Date(`${d.get('to')}T23:59:59`).toISOString());
    const kind = d.get('kind');
    await section(out, async () => {
      rows = (await pages(`/api/v1/cards/${id}/statement?${q}`, 10)).filter((r) => !kind || r.kind.startsWith(kind));
      return table([
        { label: 'Date', value: (r) => when(r.created_at) },
        { label: 'Kind', value: (r) => r.kind },
        { label: 'Amount', num: true, value: (r) => money(r.amount) },
        { label: 'Balance after', num: true, value: (r) => money(r.balance_after) },
      ], rows, 'No entries in this period.');
    });
  };
  onSubmit(form, show);
  show(new FormData(form));
  return form;
}

async function moneyPage(title, intro, build) {
  const cards = await myCards();
  if (!cards.some((c) => c.status === 'active')) {
    setMain(h('h1', {}, title), h('p', {}, 'You need an active card first. ', h('a', { href: '#/cards' }, 'Issue a card')));
    return;
  }
  setMain(h('h1', {}, title), h('p', { class: 'muted' }, intro), h('div', { class: 'panel' }, build(cards)));
}

/**
 * The idempotency key of a money form: made when the form is rendered and written into the page's
 * address (`#/topup?k=…`), so a reload of the page keeps it — resubmitting after a reload replays the
 * first answer instead of paying twice. Opening the page anew (a link) makes a new key.
 */
function formKey(params, route) {
  const given = params && params.get && params.get('k');
  const key = given && /^[0-9a-f-]{16,64}$/.test(given) ? given : newKey();
  history.replaceState(null, '', `#${route}?k=${key}`);
  return key;
}

function opResult(op, what) {
  return okBox(`${what}: ${money(op.amount, op.currency)} — ${op.status}${op.failure_reason ? ` (${op.failure_reason})` : ''}.`);
}

export function topupPage(params) {
  return moneyPage('Top up', 'Add money to a card from a bank or wallet.', (cards) => {
    const key = formKey(params, '/topup');
    const form = h('form', { class: 'stack', novalidate: true, 'data-idempotency-key': key },
      field('Card', { name: 'card_id', options: cardOptions(cards) }),
      amountField(),
      field('Paid with', { name: 'method', options: METHODS.map((m) => [m, m.toUpperCase()]) }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Top up')));
    onSubmit(form, async (d) => h('div', {}, opResult(await post('/api/v1/topups', { card_id: Number(d.get('card_id')), amount: amountOf(d), method: d.get('method') }, key), 'Top-up'),
      h('a', { href: `#/topup?k=${newKey()}` }, 'Make another top-up')));
    return form;
  });
}

export function withdrawPage(params) {
  return moneyPage('Withdraw', 'Take money out of a card to your bank.', (cards) => {
    const key = formKey(params, '/withdraw');
    const form = h('form', { class: 'stack', novalidate: true, 'data-idempotency-key': key },
      field('Card', { name: 'card_id', options: cardOptions(cards) }), amountField(),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Withdraw')));
    onSubmit(form, async (d) => h('div', {}, opResult(await post('/api/v1/withdrawals', { card_id: Number(d.get('card_id')), amount: amountOf(d) }, key), 'Withdrawal'),
      h('a', { href: `#/withdraw?k=${newKey()}` }, 'Make another withdrawal')));
    return form;
  });
}

/** Pay a person: details, then a confirmation step showing who receives the money. */
export function payPage(params) {
  return moneyPage('Pay a person', 'Send money to anyone’s payd card by its number. You confirm the recipient before paying.', (cards) => {
    const wrap = h('div', {});
    // A key carried in the address (a reload of the confirmation) is used for the next confirmation only.
    let carried = params && params.get && params.get('k');
    const step1 = () => {
      const form = h('form', { class: 'stack', novalidate: true },
        field('From card', { name: 'from_card_id', options: cardOptions(cards) }),
        field('Recipient card number', { name: 'card_number', inputmode: 'numeric', autocomplete: 'off', required: true, maxlength: '30' }, '12-19 digits; spaces and dashes are fine'),
        amountField(),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Continue')));
      onSubmit(form, async (d) => {
        const amount = amountOf(d);
        const preview = await post('/api/v1/transfers/recipient-preview', { card_number: String(d.get('card_number')) });
        step2({ from_card_id: Number(d.get('from_card_id')), to_card_number: String(d.get('card_number')), amount }, preview);
      });
      wrap.replaceChildren(form);
    };
    const step2 = (body, preview) => {
      // One key per payment form: a double click, or confirming again after a reload, pays once.
      const key = formKey(carried ? new URLSearchParams({ k: carried }) : null, '/pay');
      carried = null;
      const from = cards.find((c) => c.id === body.from_card_id);
      const form = h('form', { class: 'stack', novalidate: true, 'data-idempotency-key': key },
        h('h2', {}, 'Confirm the payment'),
        h('dl', { class: 'kv', 'data-testid': 'pay-preview' },
          h('dt', {}, 'To'), h('dd', {}, preview.display_name),
          h('dt', {}, 'Card'), h('dd', {}, preview.card_number),
          h('dt', {}, 'Amount'), h('dd', { class: 'amount' }, money(body.amount)),
          h('dt', {}, 'From'), h('dd', {}, `${from.label || from.brand} •••• ${from.last4}`)),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, `Pay ${money(body.amount)}`), h('button', { type: 'button', class: 'secondary', onclick: step1 }, 'Change')));
      onSubmit(form, async () => {
        const op = await post('/api/v1/transfers', body, key);
        form.querySelectorAll('button').forEach((b) => b.remove());
        return h('div', {}, opResult(op, `Paid ${preview.display_name}`), h('p', {}, h('a', { href: `#/cards/${body.from_card_id}` }, 'See the statement'), ' · ', h('a', { href: `#/pay?k=${newKey()}` }, 'Pay someone else')));
      });
      wrap.replaceChildren(form);
      form.querySelector('button[type=submit]').focus();
    };
    step1();
    return wrap;
  });
}

export async function statsPage() {
  const cards = await myCards();
  const charts = h('div', { class: 'grid two' });
  const year = new Date().getFullYear();
  const form = h('form', { class: 'inline', novalidate: true },
    field('Card', { name: 'card_id', options: cardOptions(cards, false) }),
    field('Year', { name: 'year', type: 'number', min: '2000', max: '2100', value: String(year) }),
    h('button', { type: 'submit' }, 'Show'));
  const show = async (d) => {
    const card = d.get('card_id');
    if (!card) { charts.replaceChildren(h('p', { class: 'muted' }, 'Issue a card to see figures.')); return; }
    await section(charts, async () => {
      const q = `card_id=${card}&year=${Number(d.get('year')) || year}`;
      const kinds = [['topup', 'Top-ups'], ['withdrawal', 'Withdrawals'], ['transfer', 'Transfers'], ['payment', 'Payments'], ['balance', 'Balance']];
      const all = await Promise.all(kinds.map(([k]) => get(`/api/v1/stats/${k}?${q}`)));
      return all.map((st, i) => barChart(`${kinds[i][1]} by month`, st));
    });
  };
  onSubmit(form, show);
  setMain(h('h1', {}, 'My figures'), h('div', { class: 'panel' }, form), charts);
  await show(new FormData(form));
}
