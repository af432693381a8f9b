// pvauth sample login page: plain JavaScript, no build step, no external resources.
// It talks to the self-service API on the same origin (see /api/v1/auth in the README)
// and keeps its tokens in sessionStorage, so they end with the browser tab.
(function () {
  'use strict';

  const API = '/api/v1/auth';
  // An OAuth2 login or consent request lives 15 minutes on the server (ttl.oauth2_flow).
  const HANDOFF_TTL_MS = 15 * 60 * 1000;

  // ---- small helpers --------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  const store = {
    get(k) {
      try {
        return JSON.parse(sessionStorage.getItem('pvauth.' + k));
      } catch (e) {
        return null;
      }
    },
    set(k, v) { sessionStorage.setItem('pvauth.' + k, JSON.stringify(v)); },
    del(k) { sessionStorage.removeItem('pvauth.' + k); },
  };

  // el builds an element; children are nodes or strings (always inserted as text).
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k === 'text') n.textContent = v;
      else if (k.startsWith('data-')) n.setAttribute(k, v);
      else n[k] = v;
    }
    for (const c of children) {
      if (c !== undefined && c !== null) n.append(c);
    }
    return n;
  }

  function fmtTime(s) {
    if (!s) return 'never';
    const d = new Date(s);
    if (isNaN(d)) return String(s);
    const p = (x) => String(x).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  const b64u = {
    encode(buf) {
      const bytes = new Uint8Array(buf);
      let s = '';
      for (const b of bytes) s += String.fromCharCode(b);
      return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    },
    decode(str) {
      let s = String(str).replace(/-/g, '+').replace(/_/g, '/');
      while (s.length % 4) s += '=';
      const bin = atob(s);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out.buffer;
    },
  };

  function jwtClaims(token) {
    try {
      return JSON.parse(new TextDecoder().decode(b64u.decode(token.split('.')[1])));
    } catch (e) {
      return {};
    }
  }

  // ---- messages ---------------------------------------------------------------------

  function showError(msg) {
    const m = $('message');
    m.textContent = msg;
    m.hidden = !msg;
    if (msg) $('notice').hidden = true;
  }

  function showNotice(msg) {
    const m = $('notice');
    m.textContent = msg;
    m.hidden = !msg;
  }

  function clearMessages() {
    showError('');
    showNotice('');
  }

  // describe turns an API error, a WebAuthn DOMException or anything else into a sentence.
  function describe(err) {
    if (err instanceof ApiError) return err.message;
    if (err && err.name === 'NotAllowedError') {
      return 'The passkey request was cancelled, timed out, or no matching passkey was found.';
    }
    if (err && err.name === 'InvalidStateError') {
      return 'This authenticator already holds a passkey for this account.';
    }
    if (err && err.name === 'SecurityError') {
      return 'The browser refused the passkey request: the page origin does not match webauthn.rp.id / webauthn.rp.origins.';
    }
    return (err && err.message) || String(err);
  }

  // busy disables a button while fn runs and reports its error.
  async function busy(btn, fn) {
    clearMessages();
    btn.disabled = true;
    btn.classList.add('busy');
    try {
      await fn();
    } catch (err) {
      showError(describe(err));
    } finally {
      btn.disabled = false;
      btn.classList.remove('busy');
    }
  }

  // ---- API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // api calls the self-service API. opts.token overrides the bearer (the pending login
  // token); opts.auth=false sends none. A 401 with the stored access token refreshes once.
  async function api(method, path, opts = {}) {
    const headers = { Accept: 'application/json' };
    let bearer = opts.token;
    if (!bearer && opts.auth !== false) {
      const t = store.get('tokens');
      bearer = t && t.accessToken;
    }
    if (bearer) headers.Authorization = 'Bearer ' + bearer;
    const init = { method, headers, credentials: 'omit', cache: 'no-store' };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    let resp;
    try {
      resp = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, 'network_error', 'The server cannot be reached: ' + e.message);
    }
    const text = await resp.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch (e) {
        json = null;
      }
    }
    if (resp.ok) return json && typeof json === 'object' && 'data' in json ? json.data : json;
    if (resp.status === 401 && !opts.token && opts.auth !== false && !opts.retried && store.get('tokens')) {
      if (await refreshTokens()) return api(method, path, Object.assign({}, opts, { retried: true }));
      endSession('Your session has ended. Sign in again.');
    }
    const msg = (json && json.message) || `${resp.status} ${resp.statusText}`.trim();
    throw new ApiError(resp.status, json && json.error, msg);
  }

  // Refresh tokens are single use: concurrent 401s share one refresh.
  let refreshing = null;
  function refreshTokens() {
    if (!refreshing) {
      refreshing = (async () => {
        const t = store.get('tokens');
        if (!t || !t.refreshToken) return false;
        try {
          const ts = await api('POST', '/refresh', { body: { refreshToken: t.refreshToken }, auth: false });
          store.set('tokens', ts);
          return true;
        } catch (e) {
          return false;
        }
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // ---- WebAuthn -----------------------------------------------------------------------

  function requireWebAuthn() {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      throw new Error('This browser does not support passkeys (WebAuthn), or the page is not in a secure context (use https or http://localhost).');
    }
  }

  function creationOptions(json) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    const o = JSON.parse(JSON.stringify(json));
    o.challenge = b64u.decode(o.challenge);
    o.user.id = b64u.decode(o.user.id);
    for (const c of o.excludeCredentials || []) c.id = b64u.decode(c.id);
    return o;
  }

  function requestOptions(json) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    const o = JSON.parse(JSON.stringify(json));
    o.challenge = b64u.decode(o.challenge);
    for (const c of o.allowCredentials || []) c.id = b64u.decode(c.id);
    return o;
  }

  // credentialJSON is credential.toJSON(), with a fallback for browsers without it.
  function credentialJSON(cred) {
    if (typeof cred.toJSON === 'function') return cred.toJSON();
    const r = cred.response;
    const out = {
      id: cred.id,
      rawId: b64u.encode(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: b64u.encode(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = b64u.encode(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = b64u.encode(r.authenticatorData);
      out.response.signature = b64u.encode(r.signature);
      if (r.userHandle) out.response.userHandle = b64u.encode(r.userHandle);
    }
    return out;
  }

  // ---- views --------------------------------------------------------------------------

  function show(view) {
    for (const v of ['login', 'otp', 'account', 'consent', 'handoff', 'signed-out']) $(v + '-section').hidden = v !== view;
    document.body.dataset.view = view;
    renderLoginContext(view);
    const tokens = store.get('tokens');
    const who = $('whoami');
    if ((view === 'account' || view === 'consent') && tokens) {
      who.textContent = jwtClaims(tokens.accessToken).email || '';
      who.hidden = !who.textContent;
    } else {
      who.hidden = true;
    }
  }

  function showLogin() {
    stopWatching();
    const last = store.get('lastEmail');
    if (last && !$('email').value) $('email').value = last;
    $('password').value = '';
    show('login');
  }

  // endSession forgets every token (after logout or when the session is dead).
  function endSession(msg) {
    store.del('tokens');
    store.del('pending');
    store.del('method');
    recoveryCodes = null;
    clearAccount();
    showLogin();
    if (msg) showNotice(msg);
  }

  // ---- step 1: password -------------------------------------------------------------

  async function passwordLogin() {
    const email = $('email').value.trim();
    const res = await api('POST', '/login', {
      auth: false,
      body: { email, password: $('password').value, rememberMe: $('remember-me').checked },
    });
    store.set('lastEmail', email);
    store.set('pending', { token: res.token, registerOtp: res.registerOtp });
    $('password').value = '';
    await enterOtp();
  }

  // ---- step 2: TOTP -------------------------------------------------------------------

  async function enterOtp() {
    const p = store.get('pending');
    $('otp-code').value = '';
    $('otp-enrol').hidden = true;
    $('otp-prompt').hidden = true;
    show('otp');
    if (p.registerOtp) {
      $('otp-title').textContent = 'Set up two-step verification';
      try {
        const s = await api('GET', '/otp/setup', { token: p.token });
        $('otp-qr').src = s.qrCodePng;
        $('otp-secret').textContent = s.secret;
        $('otp-enrol').hidden = false;
      } catch (err) {
        if (err.status !== 409) throw err;
        p.registerOtp = false; // enrolled meanwhile: just ask for a code
        store.set('pending', p);
      }
    }
    if (!p.registerOtp) {
      $('otp-title').textContent = 'Two-step verification';
      $('otp-prompt').hidden = false;
    }
    $('otp-code').focus();
  }

  let recoveryCodes = null;

  async function verifyOtp() {
    const p = store.get('pending');
    if (!p) return showLogin();
    const ts = await api('POST', '/otp/verify', { token: p.token, body: { otp: $('otp-code').value.trim() } });
    store.del('pending');
    recoveryCodes = ts.recoveryCodes || null;
    delete ts.recoveryCodes;
    store.set('tokens', ts);
    store.set('method', 'password and one-time code');
    await afterSignIn();
  }

  // ---- passkey login ----------------------------------------------------------------

  async function passkeyLogin() {
    requireWebAuthn();
    const email = $('email').value.trim();
    const begin = await api('POST', '/passkeys/login/begin', { auth: false, body: email ? { email } : {} });
    const cred = await navigator.credentials.get({ publicKey: requestOptions(begin.publicKey) });
    if (!cred) throw new Error('No passkey was chosen.');
    const res = await api('POST', '/passkeys/login/finish', {
      auth: false,
      body: { sessionId: begin.sessionId, response: credentialJSON(cred), rememberMe: $('remember-me').checked },
    });
    if (email) store.set('lastEmail', email);
    store.set('tokens', res.tokens);
    store.set('method', email ? 'a passkey, for ' + email : 'a passkey, without an email (discoverable)');
    $('password').value = '';
    await afterSignIn();
  }

  // ---- step 3: the account ----------------------------------------------------------

  async function enterAccount() {
    show('account');
    renderRecovery();
    $('login-method').textContent = 'Signed in with ' + (store.get('method') || 'a saved session') + '.';
    // Each panel reports its own failure; the profile decides whether the session lives.
    await Promise.all([loadProfile(), loadPasskeys().catch(report), loadDevices().catch(report)]);
  }

  function report(err) { showError(describe(err)); }

  let passkeyCount = 0;
  let promptStatus = '';

  async function loadProfile() {
    let me;
    try {
      me = await api('GET', '/me');
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        endSession();
      }
      throw err;
    }
    const tokens = store.get('tokens') || {};
    const claims = jwtClaims(tokens.accessToken || '');
    $('profile-email').textContent = me.email;
    $('profile-id').textContent = String(me.id);
    $('profile-name').textContent = (me.employee && me.employee.name) || '—';
    $('profile-department').textContent = (me.department && me.department.name) || '—';
    $('profile-mfa').textContent = me.mfaEnabled ? 'TOTP enabled' : 'not set up';
    $('profile-amr').textContent = (claims.amr || []).join(', ') || '—';
    $('profile-prompt').textContent = me.passkeyPromptStatus;
    $('profile-expires').textContent = fmtTime(tokens.refreshTokenExpiresAt);
    promptStatus = me.passkeyPromptStatus;
    renderPrompt();
  }

  // clearAccount forgets what the account view showed of the last session, so the next
  // sign-in (maybe of another user) never shows it, even before its /me has answered.
  function clearAccount() {
    for (const id of ['email', 'id', 'name', 'department', 'mfa', 'amr', 'prompt', 'expires']) $('profile-' + id).textContent = '';
    $('login-method').textContent = '';
    $('passkey-list').replaceChildren();
    $('device-list').replaceChildren();
    passkeyCount = 0;
    promptStatus = '';
    renderPrompt();
    confirmationId = null;
    $('confirm-panel').hidden = true;
  }

  function renderPrompt() {
    $('passkey-prompt').hidden = !(promptStatus === 'pending' && passkeyCount === 0);
  }

  function renderRecovery() {
    const box = $('recovery-box');
    const list = $('recovery-codes');
    list.replaceChildren();
    if (!recoveryCodes || recoveryCodes.length === 0) {
      box.hidden = true;
      return;
    }
    for (const c of recoveryCodes) list.append(el('li', {}, el('code', { text: c })));
    box.hidden = false;
  }

  async function logout() {
    const t = store.get('tokens');
    try {
      if (t) await api('POST', '/logout', { body: { refreshToken: t.refreshToken } });
    } finally {
      endSession('You are logged out.');
    }
  }

  async function setPrompt(status) {
    await api('PUT', '/passkeys/prompt', { body: { status } });
    promptStatus = status;
    $('profile-prompt').textContent = status;
    renderPrompt();
  }

  // ---- passkeys -----------------------------------------------------------------------

  async function registerPasskey() {
    requireWebAuthn();
    const name = $('passkey-name').value.trim();
    const begin = await api('POST', '/passkeys/register/begin', { body: { name } });
    const cred = await navigator.credentials.create({ publicKey: creationOptions(begin.publicKey) });
    if (!cred) throw new Error('No passkey was created.');
    const res = await api('POST', '/passkeys/register/finish', {
      body: { sessionId: begin.sessionId, response: credentialJSON(cred) },
    });
    $('passkey-name').value = '';
    showNotice(`Passkey "${res.credential.name}" added. Log out and sign in with it.`);
    await loadPasskeys();
    if (promptStatus !== 'accepted') await setPrompt('accepted').catch(() => {});
  }

  async function loadPasskeys() {
    const res = await api('GET', '/passkeys');
    const list = $('passkey-list');
    const creds = res.credentials || [];
    passkeyCount = creds.length;
    renderPrompt();
    list.replaceChildren();
    if (creds.length === 0) {
      list.append(el('li', { class: 'empty', id: 'passkey-empty', text: 'No passkeys yet. Name one above and add it.' }));
      return;
    }
    for (const c of creds) list.append(passkeyItem(c));
  }

  function passkeyItem(c) {
    const nameEl = el('span', { class: 'name', id: 'passkey-label-' + c.id, text: c.name || '(unnamed)' });
    const meta = [`added ${fmtTime(c.createdAt)}`, `last used ${fmtTime(c.lastUsedAt)}`];
    if (c.transportFlags && c.transportFlags.length) meta.push(c.transportFlags.join(', '));
    if (c.backupEligible) meta.push(c.backupState ? 'synced' : 'can sync');
    const warn = c.cloneWarning
      ? el('span', { class: 'badge bad', title: 'The signature counter went backwards: this authenticator may have been cloned.', text: 'clone warning' })
      : null;

    const renameBtn = el('button', { type: 'button', class: 'link', id: 'passkey-rename-' + c.id, text: 'Rename' });
    const deleteBtn = el('button', { type: 'button', class: 'link danger', id: 'passkey-delete-' + c.id, text: 'Delete' });
    const head = el('div', { class: 'item-head' }, nameEl, warn);
    const li = el('li', { class: 'item', id: 'passkey-' + c.id, 'data-name': c.name },
      el('div', { class: 'item-main' }, head, el('div', { class: 'meta', text: meta.join(' · ') })),
      el('div', { class: 'item-actions' }, renameBtn, deleteBtn));

    renameBtn.addEventListener('click', () => {
      const input = el('input', { id: 'passkey-rename-input-' + c.id, value: c.name, maxLength: 255 });
      const save = el('button', { type: 'submit', class: 'primary small', id: 'passkey-save-' + c.id, text: 'Save' });
      const cancel = el('button', { type: 'button', class: 'link', text: 'Cancel' });
      const form = el('form', { class: 'inline rename' }, input, save, cancel);
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        busy(save, async () => {
          await api('PATCH', '/passkeys/' + encodeURIComponent(c.id), { body: { name: input.value.trim() } });
          showNotice('Passkey renamed.');
          await loadPasskeys();
        });
      });
      cancel.addEventListener('click', () => form.replaceWith(head));
      head.replaceWith(form);
      input.focus();
    });

    // Two clicks delete: the first asks, the second does it (no blocking dialogs).
    deleteBtn.addEventListener('click', () => {
      if (!deleteBtn.classList.contains('armed')) {
        deleteBtn.classList.add('armed');
        deleteBtn.textContent = 'Click again to delete';
        return;
      }
      busy(deleteBtn, async () => {
        await api('DELETE', '/passkeys/' + encodeURIComponent(c.id));
        showNotice(`Passkey "${c.name}" deleted.`);
        await loadPasskeys();
      });
    });
    return li;
  }

  // ---- devices ------------------------------------------------------------------------

  async function loadDevices() {
    const res = await api('GET', '/devices');
    const list = $('device-list');
    const devices = res.devices || [];
    list.replaceChildren();
    if (devices.length === 0) {
      list.append(el('li', { class: 'empty', id: 'device-empty', text: 'No devices yet. The mobile app registers one with POST /devices/register/challenge.' }));
      return;
    }
    for (const d of devices) {
      const meta = [d.deviceType, d.keyAlgorithm, `registered ${fmtTime(d.createdAt)}`, `last used ${fmtTime(d.lastUsedAt)}`];
      if (d.fcmToken) meta.push('push enabled');
      list.append(el('li', { class: 'item', id: 'device-' + d.id, 'data-name': d.deviceName },
        el('div', { class: 'item-main' },
          el('div', { class: 'item-head' }, el('span', { class: 'name', text: d.deviceName })),
          el('div', { class: 'meta', text: meta.join(' · ') }))));
    }
  }

  // ---- action confirmations -----------------------------------------------------------
  //
  // The page follows a confirmation live through GET /confirmation/{id}/events (server-
  // sent events). EventSource cannot send an Authorization header, so the stream is read
  // with fetch and parsed here: "event: status" + "data: {…}", comment lines are
  // heartbeats, and the server ends the stream after a final status.

  let stream = null; // the AbortController of the open events stream
  let confirmationId = null;

  async function initiateConfirmation() {
    stopWatching();
    const actionType = $('action-type').value.trim();
    const actionPayload = { amount: 125.5, currency: 'EUR', document: 'Invoice 2026-117', source: 'sample login page' };
    const c = await api('POST', '/confirmation/initiate', { body: { actionType, actionPayload } });
    confirmationId = c.confirmationId;
    $('confirm-id').textContent = c.confirmationId;
    $('confirm-panel').dataset.challenge = c.challenge;
    $('confirm-expires').textContent = fmtTime(c.expiresAt);
    $('confirm-action').textContent = c.actionType;
    $('confirm-payload').textContent = JSON.stringify(actionPayload, null, 2);
    $('confirm-hash').textContent = c.actionHash || '';
    $('confirm-match-row').hidden = !c.matchCode;
    $('confirm-match').textContent = c.matchCode || '';
    $('confirm-panel').hidden = false;
    setStatus(c.status);
    watch(c.confirmationId);
  }

  function setStatus(status) {
    const b = $('confirm-status');
    b.textContent = status;
    b.className = 'badge ' + status;
    $('confirm-checked').textContent = fmtTime(new Date().toISOString());
    $('confirm-reject-btn').hidden = status !== 'pending';
    $('confirm-spinner').hidden = stream === null;
    $('confirm-stop-btn').hidden = stream === null;
  }

  // showView renders a status object of the stream (the same shape as /status).
  function showView(v) {
    if (v.actionPayload !== undefined && v.actionPayload !== null) {
      $('confirm-payload').textContent = JSON.stringify(v.actionPayload, null, 2);
    }
    if (v.actionHash) $('confirm-hash').textContent = v.actionHash;
    $('confirm-panel').dataset.events = String(Number($('confirm-panel').dataset.events || 0) + 1);
    if (v.status !== 'pending') stopWatching();
    setStatus(v.status);
  }

  async function watch(id) {
    const ctl = new AbortController();
    stream = ctl;
    $('confirm-panel').dataset.events = '0';
    const t = store.get('tokens');
    let resp;
    try {
      resp = await fetch(API + '/confirmation/' + encodeURIComponent(id) + '/events', {
        headers: { Accept: 'text/event-stream', Authorization: 'Bearer ' + (t && t.accessToken) },
        credentials: 'omit', cache: 'no-store', signal: ctl.signal,
      });
      if (!resp.ok || !resp.body) throw new Error(`${resp.status} ${resp.statusText}`);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = '';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue; // heartbeat
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (name === 'status' && data.length) showView(JSON.parse(data.join('\n')));
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
      showError('The confirmation stream stopped: ' + err.message);
    } finally {
      if (stream === ctl) stopWatching();
    }
  }

  function stopWatching() {
    if (stream !== null) stream.abort();
    stream = null;
    $('confirm-spinner').hidden = true;
    $('confirm-stop-btn').hidden = true;
  }

  async function rejectConfirmation() {
    if (!confirmationId) return;
    const r = await api('POST', '/confirmation/' + encodeURIComponent(confirmationId) + '/reject', { body: { reason: 'rejected on the sample page' } });
    stopWatching();
    setStatus(r.status);
  }

  // ---- OAuth2 login and consent hand-off ---------------------------------------------
  //
  // pvauth's /oauth2/auth sends the browser here with ?login_challenge=… (urls.login_ui)
  // and, after the login, with ?consent_challenge=… (urls.consent_ui). The request is
  // kept in sessionStorage ('pvauth.oauth2') so it survives the login steps and reloads;
  // the query wins when it names another request.

  const SCOPE_TEXT = {
    openid: 'Know who you are (your user id)',
    email: 'See your email address',
    profile: 'See your name',
    offline_access: 'Stay signed in (refresh tokens)',
    offline: 'Stay signed in (refresh tokens)',
  };

  function handoffFromURL() {
    const q = new URLSearchParams(window.location.search);
    const lc = q.get('login_challenge');
    const cc = q.get('consent_challenge');
    const kind = lc ? 'login' : cc ? 'consent' : null;
    if (kind) {
      const challenge = lc || cc;
      const old = store.get('oauth2');
      if (!old || old.kind !== kind || old.challenge !== challenge) {
        store.set('oauth2', { kind, challenge, at: Date.now() });
      }
    }
    return activeHandoff();
  }

  // activeHandoff is the stored request, or null when there is none or it has expired.
  function activeHandoff() {
    const h = store.get('oauth2');
    if (!h || !h.challenge) return null;
    if (!(Date.now() - h.at < HANDOFF_TTL_MS)) {
      store.del('oauth2');
      return null;
    }
    return h;
  }

  function dropHandoff() {
    store.del('oauth2');
    renderLoginContext(document.body.dataset.view);
  }

  function clientLabel(h) {
    return (h && h.client && (h.client.clientName || h.client.clientId)) || 'the application';
  }

  function scopeItem(scope, checkbox) {
    const label = el('span', { class: 'scope-name' }, el('code', { text: scope }));
    const desc = el('span', { class: 'scope-desc', text: SCOPE_TEXT[scope] || '' });
    if (!checkbox) return el('li', { 'data-scope': scope }, label, desc);
    const box = el('input', { type: 'checkbox', id: 'consent-scope-' + scope, value: scope, checked: true });
    return el('li', { 'data-scope': scope }, el('label', { class: 'check' }, box, label, desc));
  }

  // renderLoginContext shows, above the login and code steps, which application the user
  // is signing in to and what it asks for.
  function renderLoginContext(view) {
    const h = activeHandoff();
    const box = $('oauth2-login-info');
    const active = !!h && (view === 'login' || view === 'otp');
    box.hidden = !active;
    $('login-title').textContent = h && h.kind === 'login' && h.client ? 'Sign in to ' + clientLabel(h) : 'Sign in';
    if (!active) return;
    const c = h.client || {};
    $('oauth2-login-client').textContent = h.kind === 'login' ? clientLabel(h) : 'Sign in to review the request of the application';
    $('oauth2-login-client-id').textContent = c.clientId && c.clientId !== c.clientName ? c.clientId : '';
    const scopes = c.requestedScope || [];
    $('oauth2-login-scope-box').hidden = scopes.length === 0;
    $('oauth2-login-scopes').replaceChildren(...scopes.map((s) => scopeItem(s, false)));
    // "Remember me" asks pvauth for a browser login session (the next application's
    // sign-in needs no login page); only a login request has one.
    $('oauth2-remember-line').hidden = h.kind !== 'login';
    $('oauth2-remember').checked = !!h.remember;
  }

  // navigate leaves the page for the authorization endpoint (or the client).
  function navigate(url, what) {
    const u = new URL(url, window.location.href);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('Refusing to go to ' + url);
    show('handoff');
    $('handoff-title').textContent = what;
    $('handoff-recovery').hidden = true;
    $('handoff-continue-btn').hidden = true;
    $('handoff-status').textContent = 'Redirecting…';
    document.body.dataset.view = 'redirecting';
    window.location.assign(u.href);
  }

  // startHandoff runs when the page opens on a login or consent request.
  async function startHandoff(h) {
    if (h.kind === 'login') {
      try {
        h.client = await api('GET', '/oauth2/login?login_challenge=' + encodeURIComponent(h.challenge), { auth: false });
        store.set('oauth2', h);
      } catch (err) {
        if (err.status === 404 || err.status === 400) return handoffGone(err);
        throw err;
      }
      if (store.get('tokens')) return acceptLogin(); // already signed in in this tab
      if (store.get('pending')) return enterOtp();
      return showLogin();
    }
    if (!store.get('tokens')) {
      // The consent endpoints need the user: sign in first, then the consent screen.
      showLogin();
      showNotice('Sign in to review what the application asks for.');
      return;
    }
    return enterConsent();
  }

  // handoffGone forgets a request the server no longer knows and carries on as the plain page.
  async function handoffGone(err) {
    const h = activeHandoff();
    dropHandoff();
    const what = h && h.kind === 'consent' ? 'consent request' : 'sign-in request';
    const msg = `This ${what} of an application is no longer valid: ${err.message} Go back to the application and start again.`;
    if (store.get('tokens')) await enterAccount().catch(() => {});
    else if (store.get('pending')) await enterOtp().catch(() => {});
    else showLogin();
    showError(msg);
  }

  // sessionGone handles a stored session the server refused (api() already tried a
  // refresh): the user signs in again and the request goes on after that.
  function sessionGone() {
    store.del('tokens');
    showLogin();
    showNotice('Your session has ended. Sign in again to continue.');
  }

  // afterSignIn follows a completed login: back to the application's request, or the account.
  async function afterSignIn() {
    const h = activeHandoff();
    if (!h) return enterAccount();
    if (h.kind === 'consent') return enterConsent();
    if (recoveryCodes && recoveryCodes.length) {
      // Shown once: the user saves them before the page leaves for the application.
      show('handoff');
      $('handoff-title').textContent = 'Almost done';
      $('handoff-recovery-codes').replaceChildren(...recoveryCodes.map((c) => el('li', {}, el('code', { text: c }))));
      $('handoff-recovery').hidden = false;
      $('handoff-status').textContent = '';
      $('handoff-continue-btn').textContent = 'I saved them, continue to ' + clientLabel(h);
      $('handoff-continue-btn').hidden = false;
      return;
    }
    return acceptLogin();
  }

  async function acceptLogin() {
    const h = activeHandoff();
    if (!h || h.kind !== 'login') return enterAccount();
    recoveryCodes = null;
    let res;
    try {
      res = await api('POST', '/oauth2/login/accept', { body: { loginChallenge: h.challenge, remember: !!h.remember } });
    } catch (err) {
      if (err.status === 404 || err.status === 400) return handoffGone(err);
      if (err.status === 403 && err.code === 'login_required') {
        // prompt=login or max_age: this sign-in is too old for the application.
        store.del('tokens');
        showLogin();
        showNotice(clientLabel(h) + ' asks you to sign in again.');
        return;
      }
      if (err.status === 401 || err.status === 403) return sessionGone();
      throw err;
    }
    dropHandoff();
    navigate(res.redirectTo, 'Returning to ' + clientLabel(h));
  }

  async function enterConsent() {
    const h = activeHandoff();
    if (!h || h.kind !== 'consent') return enterAccount();
    let c;
    try {
      c = await api('GET', '/oauth2/consent?consent_challenge=' + encodeURIComponent(h.challenge));
    } catch (err) {
      if (err.status === 404 || err.status === 400) return handoffGone(err);
      if (err.status === 401 || err.status === 403) return sessionGone();
      throw err;
    }
    h.client = c;
    store.set('oauth2', h);
    const name = clientLabel(h);
    $('consent-title').textContent = 'Allow ' + name + ' to access your account?';
    $('consent-client').textContent = name;
    $('consent-client-id').textContent = c.clientId || '';
    $('consent-client-id-line').hidden = !c.clientId || c.clientId === c.clientName;
    const email = jwtClaims((store.get('tokens') || {}).accessToken || '').email || '';
    $('consent-user').textContent = email;
    $('consent-user-line').hidden = !email;
    $('consent-scopes').replaceChildren(...(c.requestedScope || []).map((s) => scopeItem(s, true)));
    $('consent-remember').checked = false;
    show('consent');
  }

  async function answerConsent(allow) {
    const h = activeHandoff();
    if (!h || h.kind !== 'consent') throw new Error('There is no consent request to answer.');
    let res;
    try {
      if (allow) {
        const grantScope = [...document.querySelectorAll('#consent-scopes input[type=checkbox]')]
          .filter((b) => b.checked).map((b) => b.value);
        res = await api('POST', '/oauth2/consent/accept', {
          body: { consentChallenge: h.challenge, grantScope, remember: $('consent-remember').checked },
        });
      } else {
        res = await api('POST', '/oauth2/consent/reject', { body: { consentChallenge: h.challenge } });
      }
    } catch (err) {
      if (err.status === 404) return handoffGone(err);
      if (err.status === 401 || err.status === 403) return sessionGone();
      throw err;
    }
    dropHandoff();
    navigate(res.redirectTo, 'Returning to ' + clientLabel(h));
  }

  // ---- wiring -------------------------------------------------------------------------

  function on(id, event, fn) {
    $(id).addEventListener(event, (ev) => {
      ev.preventDefault();
      const btn = event === 'submit' ? ev.target.querySelector('button[type=submit]') : ev.currentTarget;
      busy(btn, fn);
    });
  }

  function init() {
    on('login-form', 'submit', passwordLogin);
    on('passkey-login-btn', 'click', passkeyLogin);
    on('otp-form', 'submit', verifyOtp);
    $('otp-cancel-btn').addEventListener('click', () => { store.del('pending'); clearMessages(); showLogin(); });
    on('logout-btn', 'click', logout);
    on('passkey-register-form', 'submit', registerPasskey);
    on('passkeys-refresh-btn', 'click', loadPasskeys);
    on('devices-refresh-btn', 'click', loadDevices);
    on('passkey-prompt-dismiss-btn', 'click', () => setPrompt('dismissed'));
    $('recovery-done-btn').addEventListener('click', () => { recoveryCodes = null; renderRecovery(); });
    on('confirm-form', 'submit', initiateConfirmation);
    on('confirm-reject-btn', 'click', rejectConfirmation);
    $('confirm-stop-btn').addEventListener('click', stopWatching);
    on('consent-form', 'submit', () => answerConsent(true));
    on('consent-deny-btn', 'click', () => answerConsent(false));
    on('handoff-continue-btn', 'click', acceptLogin);
    $('oauth2-remember').addEventListener('change', (ev) => {
      const h = activeHandoff();
      if (h) store.set('oauth2', { ...h, remember: ev.target.checked });
    });
    $('signed-out-login-btn').addEventListener('click', () => { clearMessages(); showLogin(); });

    const h = handoffFromURL();
    const signedOut = new URLSearchParams(window.location.search).get('signed_out') === 'true';
    const start = h ? () => startHandoff(h)
      : signedOut ? async () => { store.del('tokens'); store.del('pending'); show('signed-out'); }
      : store.get('tokens') ? enterAccount : store.get('pending') ? enterOtp : async () => showLogin();
    start().catch((err) => {
      report(err);
      // Never leave the page blank: fall back to the login form.
      if (!document.body.dataset.view) show('login');
    }).finally(() => { document.body.dataset.ready = 'true'; });
  }

  init();
})();
