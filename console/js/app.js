// The console shell: hash routes per area (cardholder, merchant, admin), the navigation for the
// user's roles, and the session check. Pages call the JSON API; the API decides what each user may do.

import { loadSession, currentSession, hasRole, signOut } from './api.js';
import { h, setMain, errorBox } from './ui.js';
import * as auth from './auth.js';
import * as cardholder from './cardholder.js';
import * as merchant from './merchant.js';
import * as admin from './admin.js';

// [pattern, page, needs a session]
const routes = [
  [/^\/signin$/, auth.signInPage, false],
  [/^\/signup$/, auth.signUpPage, false],
  [/^\/verify$/, auth.verifyPage, false],
  [/^\/forgot$/, auth.forgotPage, false],
  [/^\/reset$/, auth.resetPage, false],
  [/^\/(cards)?$/, cardholder.cardsPage, true],
  [/^\/cards\/(\d+)$/, cardholder.cardPage, true],
  [/^\/topup$/, cardholder.topupPage, true],
  [/^\/withdraw$/, cardholder.withdrawPage, true],
  [/^\/pay$/, cardholder.payPage, true],
  [/^\/stats$/, cardholder.statsPage, true],
  [/^\/account$/, auth.accountPage, true],
  [/^\/merchants$/, merchant.merchantsPage, true],
  [/^\/merchants\/(\d+)$/, merchant.merchantPage, true],
  [/^\/merchants\/(\d+)\/payments$/, merchant.paymentsPage, true],
  [/^\/merchants\/(\d+)\/webhooks$/, merchant.webhooksPage, true],
  [/^\/admin$/, admin.dashboardPage, true],
  [/^\/admin\/users$/, admin.usersPage, true],
  [/^\/admin\/review$/, admin.reviewPage, true],
  [/^\/admin\/merchants\/(\d+)$/, admin.merchantReviewPage, true],
  [/^\/admin\/events$/, admin.eventsPage, true],
];

function nav() {
  const el = document.getElementById('nav');
  const s = currentSession();
  const path = (location.hash.slice(1) || '/').split('?')[0];
  const link = (href, text) => h('a', { href: `#${href}`, 'aria-current': path === href ? 'page' : null }, text);
  if (!s) {
    el.replaceChildren(link('/signin', 'Sign in'), link('/signup', 'Create account'));
    return;
  }
  const items = [link('/cards', 'Cards'), link('/pay', 'Pay'), link('/topup', 'Top up'), link('/withdraw', 'Withdraw'), link('/stats', 'My figures'), link('/merchants', 'Merchant')];
  if (hasRole('admin')) items.push(link('/admin', 'Admin'), link('/admin/review', 'Review'), link('/admin/users', 'Users'), link('/admin/events', 'Events'));
  const out = h('button', { type: 'button', class: 'link', onclick: async () => { await signOut().catch(() => {}); location.hash = '#/signin'; route(); } }, 'Sign out');
  el.replaceChildren(...items, h('span', { class: 'right' }, link('/account', 'Account'), out));
}

let generation = 0;
export async function route() {
  const mine = ++generation;
  const path = (location.hash.slice(1) || '/').split('?')[0];
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const found = routes.find(([re]) => re.test(path));
  if (currentSession() === null) await loadSession();
  if (mine !== generation) return;
  nav();
  if (!found) { setMain(h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. '), h('a', { href: '#/' }, 'Back to your cards')); return; }
  const [re, page, needsSession] = found;
  if (needsSession && !currentSession()) { location.replace(`#/signin?next=${encodeURIComponent(path)}`); return; }
  try {
    await page(...path.match(re).slice(1), params);
  } catch (err) {
    setMain(h('h1', {}, 'Something went wrong'), errorBox(err));
  }
  const main = document.getElementById('main');
  const h1 = main.querySelector('h1');
  document.title = `${h1 ? h1.textContent + ' · ' : ''}payd console`;
  main.focus();
}

window.addEventListener('hashchange', route);
window.addEventListener('payd:signed-out', () => { if (!/^#\/(signin|signup|verify|forgot|reset)/.test(location.hash)) location.hash = '#/signin'; });
route();
