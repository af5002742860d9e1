// Sign in, sign up with e-mail verification, password reset, and the account page.

import { signIn, get, post, api, currentSession } from './api.js';
import { h, field, setMain, onSubmit, section, okBox } from './ui.js';

function go(hash) { location.hash = hash; }

export function signInPage(params) {
  const form = h('form', { class: 'stack', novalidate: true },
    field('E-mail', { name: 'email', type: 'email', autocomplete: 'username', required: true }),
    field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')));
  onSubmit(form, async (d) => {
    await signIn(d.get('email'), d.get('password'));
    const next = params && params.get('next');
    go(next && next.startsWith('/') ? `#${next}` : '#/cards');
  });
  setMain(h('h1', {}, 'Sign in'), h('div', { class: 'panel' }, form,
    h('p', {}, h('a', { href: '#/signup' }, 'Create an account'), ' · ', h('a', { href: '#/forgot' }, 'Forgot your password?'), ' · ', h('a', { href: '#/verify' }, 'Verify your e-mail'))));
}

export function signUpPage() {
  const form = h('form', { class: 'stack', novalidate: true },
    field('First name', { name: 'first_name', autocomplete: 'given-name', required: true }),
    field('Last name', { name: 'last_name', autocomplete: 'family-name', required: true }),
    field('E-mail', { name: 'email', type: 'email', autocomplete: 'email', required: true }),
    field('Password', { name: 'password', type: 'password', autocomplete: 'new-password', required: true }, '8 or more characters with a letter and a digit'),
    field('Repeat the password', { name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create account')));
  onSubmit(form, async (d) => {
    const body = Object.fromEntries(['first_name', 'last_name', 'email', 'password', 'confirm_password'].map((k) => [k, d.get(k)]));
    await post('/api/v1/auth/register', body);
    go(`#/verify?email=${encodeURIComponent(body.email)}`);
  });
  setMain(h('h1', {}, 'Create an account'), h('div', { class: 'panel' }, form));
}

export function verifyPage(params) {
  const email = (params && params.get('email')) || '';
  const form = h('form', { class: 'stack', novalidate: true },
    h('p', {}, 'We e-mailed you a 6-digit code. Enter it to verify your address.'),
    field('E-mail', { name: 'email', type: 'email', autocomplete: 'email', required: true, value: email }),
    field('Code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true, maxlength: '6', pattern: '[0-9]{6}' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Verify'), h('button', { type: 'button', class: 'secondary', id: 'resend' }, 'Send a new code')));
  const out = onSubmit(form, async (d) => {
    await post('/api/v1/auth/verify-email', { email: d.get('email'), code: String(d.get('code')).trim() });
    return h('div', {}, okBox('Your e-mail is verified. '), h('a', { href: '#/signin', class: 'button' }, 'Sign in'));
  });
  form.querySelector('#resend').addEventListener('click', async () => {
    try {
      await post('/api/v1/auth/verify-email/resend', { email: new FormData(form).get('email') });
      out.replaceChildren(okBox('A new code is on its way.'));
    } catch (e) { out.replaceChildren(h('div', { class: 'error', role: 'alert' }, e.message)); }
  });
  setMain(h('h1', {}, 'Verify your e-mail'), h('div', { class: 'panel' }, form));
}

export function forgotPage() {
  const form = h('form', { class: 'stack', novalidate: true },
    field('E-mail', { name: 'email', type: 'email', autocomplete: 'email', required: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'E-mail me a reset link')));
  onSubmit(form, async (d) => {
    const r = await post('/api/v1/auth/password/forgot', { email: d.get('email') });
    return h('div', {}, okBox(r.message), h('a', { href: '#/reset' }, 'I have the reset token'));
  });
  setMain(h('h1', {}, 'Reset your password'), h('div', { class: 'panel' }, form));
}

export function resetPage(params) {
  const form = h('form', { class: 'stack', novalidate: true },
    field('Reset token (from the e-mail)', { name: 'token', required: true, autocomplete: 'off', value: (params && params.get('token')) || '' }),
    field('New password', { name: 'new_password', type: 'password', autocomplete: 'new-password', required: true }),
    field('Repeat the new password', { name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Set the new password')));
  onSubmit(form, async (d) => {
    await post('/api/v1/auth/password/reset', { token: d.get('token'), new_password: d.get('new_password'), confirm_password: d.get('confirm_password') });
    return h('div', {}, okBox('Password changed; every session was signed out. '), h('a', { href: '#/signin' }, 'Sign in'));
  });
  setMain(h('h1', {}, 'Choose a new password'), h('div', { class: 'panel' }, form));
}

export async function accountPage() {
  const me = h('div', { class: 'panel' });
  const name = h('form', { class: 'stack', novalidate: true },
    field('Name shown to people who pay you', { name: 'display_name', maxlength: '50' }, 'Leave empty for your first name and last initial'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save name')));
  onSubmit(name, async (d) => {
    const v = String(d.get('display_name') || '').trim();
    await api('PUT', '/api/v1/auth/me/display-name', { body: { display_name: v || null } });
    return 'Saved.';
  });
  const pw = h('form', { class: 'stack', novalidate: true },
    field('Current password', { name: 'current_password', type: 'password', autocomplete: 'current-password', required: true }),
    field('New password', { name: 'new_password', type: 'password', autocomplete: 'new-password', required: true }),
    field('Repeat the new password', { name: 'confirm_password', type: 'password', autocomplete: 'new-password', required: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Change password')));
  onSubmit(pw, async (d) => {
    await post('/api/v1/auth/password/change', Object.fromEntries(['current_password', 'new_password', 'confirm_password'].map((k) => [k, d.get(k)])));
    pw.reset();
    return 'Password changed. Your other sessions were signed out.';
  });
  setMain(h('h1', {}, 'Account'), me, h('div', { class: 'grid two' },
    h('section', { class: 'panel' }, h('h2', {}, 'Display name'), name),
    h('section', { class: 'panel' }, h('h2', {}, 'Password'), pw)));
  await section(me, async () => {
    const u = await get('/api/v1/auth/me');
    name.querySelector('[name=display_name]').value = u.display_name || '';
    return h('dl', { class: 'kv' },
      h('dt', {}, 'Name'), h('dd', {}, `${u.first_name} ${u.last_name}`),
      h('dt', {}, 'E-mail'), h('dd', {}, u.email),
      h('dt', {}, 'Roles'), h('dd', {}, (u.roles || currentSession().roles).join(', ')));
  });
}
