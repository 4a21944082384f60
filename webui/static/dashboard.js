// Backplane cluster dashboard: polls GET /admin/cluster every second and
// shows each member's Raft state, indexes, connections, health and message
// rate (computed from the growth of last_message between polls). A member
// that does not answer stays listed as down with its last known values.
'use strict';
(() => {
  const POLL_MS = 1000;
  const SAMPLES = 60;
  const TOKEN_KEY = 'backplane.adminToken';
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  const series = new Map();    // key -> {prev: {t, last}, rates: [number|null]}
  const lastKnown = new Map(); // member id -> {status, at}
  let lastOK = 0;

  function node(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // sample records a last_message reading (null: no reading) and returns
  // the series, whose last rate is messages per second since the previous
  // reading.
  function sample(key, last, t) {
    let s = series.get(key);
    if (!s) { s = { prev: null, rates: [] }; series.set(key, s); }
    let rate = null;
    if (last === null) {
      s.prev = null;
    } else {
      if (s.prev && t > s.prev.t) rate = Math.max(0, (last - s.prev.last) * 1000 / (t - s.prev.t));
      s.prev = { t, last };
    }
    s.rates.push(rate);
    if (s.rates.length > SAMPLES) s.rates.shift();
    return s;
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return '—';
    return r >= 100 ? Math.round(r).toLocaleString() : r.toFixed(1);
  }

  // sparkline draws rates as an SVG line; gaps (null) break the line.
  function sparkline(rates, cls) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', cls);
    svg.setAttribute('viewBox', `0 0 ${SAMPLES - 1} 100`);
    svg.setAttribute('preserveAspectRatio', 'none');
    const base = document.createElementNS(SVG, 'line');
    base.setAttribute('class', 'base');
    for (const [k, v] of Object.entries({ x1: 0, y1: 99, x2: SAMPLES - 1, y2: 99 })) base.setAttribute(k, v);
    svg.appendChild(base);
    const max = Math.max(1, ...rates.filter((r) => r !== null));
    const x0 = SAMPLES - rates.length;
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        const area = document.createElementNS(SVG, 'polygon');
        area.setAttribute('class', 'area');
        area.setAttribute('points', `${run[0][0]},100 ${run.map((p) => p.join(',')).join(' ')} ${run[run.length - 1][0]},100`);
        const line = document.createElementNS(SVG, 'polyline');
        line.setAttribute('points', run.map((p) => p.join(',')).join(' '));
        svg.append(area, line);
      }
      run = [];
    };
    rates.forEach((r, i) => {
      if (r === null) { flush(); return; }
      run.push([x0 + i, (96 - (r / max) * 90).toFixed(1)]);
    });
    flush();
    svg.setAttribute('aria-label', `message rate, peak ${fmtRate(max)}/s`);
    return svg;
  }

  function badge(text, kind, title) {
    const b = node('span', 'badge ' + (kind || ''), text);
    if (title) b.title = title;
    return b;
  }

  function stateBadge(state) {
    const kinds = { Leader: '', Follower: 'muted', Candidate: 'warn', Shutdown: 'err' };
    return badge(state, kinds[state] ?? 'muted');
  }

  function connections(c) {
    if (!c) return '—';
    const signalr = (c.signalr_websockets || 0) + (c.signalr_sse || 0) + (c.signalr_longpolling || 0);
    return `SSE ${c.stream_sse || 0} · poll ${c.stream_poll || 0} · WS ${c.stream_ws || 0} · SignalR ${signalr}`;
  }

  function cell(tr, content, cls) {
    const td = node('td', cls);
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    tr.appendChild(td);
    return td;
  }

  function memberRow(m, t) {
    if (m.status) lastKnown.set(m.id, { status: m.status, at: Date.now() });
    const known = lastKnown.get(m.id);
    const st = m.status || (known && known.status);
    const s = sample('member:' + m.id, m.status ? m.status.messages.last_message : null, t);
    const tr = node('tr', m.reachable ? '' : 'down');
    Object.assign(tr.dataset, { member: m.id, health: m.reachable ? 'up' : 'down', ready: String(m.ready) });

    const who = node('div');
    who.append(node('span', 'node-id', m.id), document.createTextNode(' '));
    if (m.self) who.append(badge('this node'));
    const addr = node('a', 'mono', m.http_addr || 'address unknown');
    if (m.http_addr) addr.href = `${location.protocol}//${m.http_addr}/dashboard`;
    const where = node('div', 'sub');
    where.append(addr);
    cell(tr, who, 'node').append(where);

    cell(tr, st && m.reachable ? stateBadge(st.state) : '—');
    const health = cell(tr, m.reachable ? badge('up', 'ok') : badge('down', 'err'));
    if (m.reachable) health.append(' ', m.ready ? badge('ready', 'ok') : badge('not ready', 'warn', m.not_ready || ''));
    if (!m.reachable && known) health.append(node('div', 'sub', `last seen ${Math.round((Date.now() - known.at) / 1000)} s ago`));
    if (m.reachable && !m.ready && m.not_ready) health.append(node('div', 'sub', m.not_ready));

    const nums = st ? [st.term, st.last_index, st.commit_index, st.applied_index, st.messages.last_message] : [];
    for (let i = 0; i < 5; i++) cell(tr, i < nums.length ? String(nums[i]) : '—', 'num');
    if (m.error) {
      // Down (or answering oddly): the reason takes the place of the live figures.
      cell(tr, m.error, 'err-text').colSpan = 2;
    } else {
      cell(tr, st ? connections(st.connections) : '—', 'conn');
      cell(tr, fmtRate(s.rates[s.rates.length - 1]), 'num');
    }
    cell(tr, sparkline(s.rates, 'spark'));
    return tr;
  }

  function render(view) {
    const t = performance.now();
    const st = view.status;
    const members = [...view.members].sort((a, b) => a.id.localeCompare(b.id));
    $('viewer').textContent = `${view.id} (${location.host})`;
    $('leader').textContent = st.leader.id || 'none';
    $('leaderSub').textContent = st.leader.id ? st.leader.http_addr : 'no leader known: writes wait';
    $('term').textContent = String(st.term);
    $('termSub').textContent = `${view.id} is ${st.state}`;
    const up = members.filter((m) => m.reachable).length;
    const ready = members.filter((m) => m.ready).length;
    $('health').textContent = `${up} / ${members.length} up`;
    $('health').dataset.up = String(up);
    $('healthSub').textContent = `${ready} ready` + (up < members.length ? ` · ${members.length - up} down` : '');
    const cluster = sample('cluster', st.messages.last_message, t);
    $('rate').textContent = fmtRate(cluster.rates[cluster.rates.length - 1]);
    $('rateChart').replaceChildren(sparkline(cluster.rates, 'rate-chart'));
    $('members').replaceChildren(...members.map((m) => memberRow(m, t)));
    lastOK = Date.now();
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`;
  }

  function showError(text) {
    const e = $('error');
    e.hidden = !text;
    e.textContent = text || '';
  }

  function showAuth(reason) {
    $('auth').hidden = false;
    $('authReason').textContent = reason;
  }

  async function tick() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    try {
      const res = await fetch('/admin/cluster', {
        cache: 'no-store', headers: token ? { Authorization: 'Bearer ' + token } : {},
      });
      if (res.status === 401 || res.status === 403) {
        const body = await res.json().catch(() => ({}));
        showAuth(`${location.host} answered ${res.status}: ${body.error || res.statusText}`);
        showError('');
      } else if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        showError(`GET /admin/cluster: ${res.status} ${body.error || res.statusText}`);
      } else {
        $('auth').hidden = true;
        showError('');
        render(await res.json());
      }
    } catch (e) {
      const age = lastOK ? ` (figures below are ${Math.round((Date.now() - lastOK) / 1000)} s old)` : '';
      showError(`${location.host} does not answer${age}: open the dashboard of another node`);
    }
    setTimeout(tick, POLL_MS);
  }

  $('authForm').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = $('token').value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    $('token').value = '';
  });
  $('forget').addEventListener('click', () => sessionStorage.removeItem(TOKEN_KEY));
  tick();
})();
