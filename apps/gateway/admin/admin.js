// The /admin page: follows GET /api/cluster/events and draws the cluster. Plain browser
// JavaScript, no build step. The admin token lives in this tab's sessionStorage and goes
// out only as a bearer header (EventSource cannot send headers, so the stream is read
// with fetch).
'use strict';

const TOKEN_KEY = 'shortener.adminToken';
const SLOT_COLOURS = ['#1f4fbf', '#c2410c', '#15803d', '#9d174d', '#6d28d9', '#0e7490', '#a16207', '#b91c1c', '#4d7c0f', '#7c2d12', '#1e3a8a', '#86198f'];

const state = { token: sessionStorage.getItem(TOKEN_KEY), cluster: null, operations: [], stream: null, retryMs: 2000, slotCells: [] };
const $ = (id) => document.getElementById(id);

function setStatus(text, tone) {
  const status = $('status');
  status.textContent = text;
  status.className = tone || '';
}

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    // Through the CSSOM: the page's Content-Security-Policy forbids inline style attributes.
    else if (key === 'style') for (const [property, setting] of Object.entries(value)) node.style.setProperty(property, setting);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function colourOf(shard) {
  return SLOT_COLOURS[shard % SLOT_COLOURS.length];
}

function bytes(value) {
  if (value === null || value === undefined) return '–';
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} kB`;
  return `${(value / 1024 / 1024).toFixed(1)} MB`;
}

function seconds(value) {
  return value === null || value === undefined ? '–' : `${Number(value).toFixed(1)} s`;
}

// ------------------------------------------------------------------ sign-in

function showSignedIn(signedIn) {
  $('sign-in-section').hidden = signedIn;
  $('cluster').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
}

function signIn(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('sign-in-error').textContent = '';
  showSignedIn(true);
  follow();
}

function signOut(reason) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.stream) state.stream.abort();
  state.stream = null;
  showSignedIn(false);
  $('sign-in-error').textContent = reason || '';
  setStatus('Signed out');
  $('token').focus();
}

// ------------------------------------------------------------------ the event stream

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reads the stream, and opens it again after the server's retry delay whenever it drops. */
async function follow() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  while (state.token && state.stream === controller) {
    try {
      setStatus('Connecting…');
      const response = await fetch('/api/cluster/events', {
        headers: { authorization: `Bearer ${state.token}`, accept: 'text/event-stream' },
        cache: 'no-store',
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 403) {
        signOut('The admin token was refused.');
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setStatus('Live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          handleFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      throw new Error('the stream ended');
    } catch (error) {
      if (controller.signal.aborted || !state.token) return;
      setStatus(`Reconnecting in ${Math.round(state.retryMs / 1000)} s (${error.message})`, 'warn');
      await sleep(state.retryMs);
    }
  }
}

function handleFrame(frame) {
  let event = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'retry' && /^\d+$/.test(value)) state.retryMs = Number(value);
  }
  if (data.length === 0) return;
  const payload = JSON.parse(data.join('\n'));
  if (event === 'topology' || event === 'health') {
    state.cluster = payload;
    renderCluster();
  } else if (event === 'operations') {
    state.operations = payload;
    renderOperations();
  }
}

// ------------------------------------------------------------------ drawing

function renderCluster() {
  const cluster = state.cluster;
  const nodes = cluster.shards.flatMap((shard) => [shard.primary, ...shard.replicas]);
  $('epoch').textContent = String(cluster.epoch);
  $('replication-mode').textContent = cluster.replicationMode;
  $('shard-count').textContent = String(cluster.shards.length);
  $('healthy-count').textContent = `${nodes.filter((node) => node.healthy).length} of ${nodes.length}`;
  $('updated').textContent = new Date().toLocaleTimeString();
  renderShards(cluster);
  renderSlots(cluster);
  renderFailovers(cluster);
}

function nodeRow(node) {
  return element(
    'tr',
    { 'data-node': node.name, 'data-role': node.role },
    element('th', { scope: 'row', text: node.name }),
    element('td', { text: node.role }),
    element('td', { class: node.healthy ? 'healthy' : 'down', text: node.healthy ? 'healthy' : 'down' }),
    element('td', { text: bytes(node.lagBytes) }),
    element('td', { text: seconds(node.lagSeconds) }),
    element('td', { text: `${node.host}:${node.port}` }),
  );
}

function renderShards(cluster) {
  const cards = cluster.shards.map((shard) => {
    const title = `Shard ${shard.id}`;
    return element(
      'article',
      { class: 'shard', 'data-shard': String(shard.id), 'aria-label': title, style: { '--shard-colour': colourOf(shard.id) } },
      element('h3', { text: `${title}: primary ${shard.primary.name}` }),
      element(
        'div',
        { class: 'scroll' },
        element(
          'table',
          {},
          element('caption', { class: 'visually-hidden', text: `Nodes of shard ${shard.id}` }),
          element(
            'thead',
            {},
            element('tr', {}, ...['Node', 'Role', 'Health', 'Lag', 'Lag (time)', 'Address'].map((name) => element('th', { scope: 'col', text: name }))),
          ),
          element('tbody', {}, nodeRow(shard.primary), ...shard.replicas.map(nodeRow)),
        ),
      ),
      element('button', {
        type: 'button',
        class: 'secondary',
        text: `Switch over shard ${shard.id}`,
        disabled: shard.replicas.length === 0,
        onclick: () => confirmSwitchover(shard),
      }),
    );
  });
  $('shards').replaceChildren(...cards);
}

function renderSlots(cluster) {
  const slots = cluster.ring.slots;
  const map = $('slot-map');
  if (state.slotCells.length !== slots.length) {
    state.slotCells = slots.map(() => element('span'));
    map.replaceChildren(...state.slotCells);
  }
  const counts = new Map();
  slots.forEach((shard, slot) => {
    counts.set(shard, (counts.get(shard) || 0) + 1);
    const cell = state.slotCells[slot];
    const colour = colourOf(shard);
    if (cell.dataset.shard !== String(shard)) {
      cell.dataset.shard = String(shard);
      cell.style.background = colour;
      cell.title = `slot ${slot}: shard ${shard}`;
    }
  });
  const owners = [...counts.entries()].sort((a, b) => a[0] - b[0]);
  $('slot-summary').textContent = `${slots.length} slots: ${owners.map(([shard, count]) => `shard ${shard} holds ${count}`).join(', ')}.`;
  $('slot-legend').replaceChildren(
    ...owners.map(([shard, count]) => element('li', { style: { '--swatch': colourOf(shard) }, text: `Shard ${shard} (${count} slots)` })),
  );
}

function renderFailovers(cluster) {
  const rows = [...(cluster.failovers || [])]
    .reverse()
    .map((failover) =>
      element(
        'tr',
        {},
        element('td', { text: new Date(failover.at).toLocaleString() }),
        element('td', { text: String(failover.shard) }),
        element('td', { text: failover.from }),
        element('td', { text: failover.to }),
        element('td', { text: failover.reason }),
        element('td', { text: failover.durationMs === undefined ? '–' : `${(failover.durationMs / 1000).toFixed(1)} s` }),
      ),
    );
  if (rows.length === 0) rows.push(element('tr', {}, element('td', { colspan: '6', text: 'No failover yet.' })));
  $('failovers').tBodies[0].replaceChildren(...rows);
}

function renderOperations() {
  const list = state.operations || [];
  if (list.length === 0) {
    $('operations').replaceChildren(element('p', { text: 'No operation is running.' }));
    return;
  }
  $('operations').replaceChildren(
    ...list.map((operation) => {
      const total = operation.slotsTotal || 0;
      const moved = operation.slotsMoved || 0;
      const label = `${operation.type || 'operation'} ${operation.id || ''}: ${operation.phase || ''} (${moved} of ${total} slots)`;
      return element(
        'div',
        { class: 'operation' },
        element('p', { text: label }),
        element('progress', { max: String(total || 1), value: String(moved), 'aria-label': label }),
      );
    }),
  );
}

// ------------------------------------------------------------------ switchover

function confirmSwitchover(shard) {
  const dialog = $('confirm');
  $('confirm-title').textContent = `Switch over shard ${shard.id}?`;
  $('confirm-text').textContent =
    `The primary role of shard ${shard.id} moves from ${shard.primary.name} to its most advanced replica. ` +
    'Writes to the shard pause for about a second; no acknowledged write is lost.';
  dialog.returnValue = '';
  dialog.onclose = () => {
    if (dialog.returnValue === 'confirm') void switchover(shard.id);
  };
  dialog.showModal();
  $('confirm-button').focus();
}

async function switchover(shard) {
  setStatus(`Switching over shard ${shard}…`);
  try {
    const response = await fetch(`/api/cluster/shards/${shard}/switchover`, {
      method: 'POST',
      headers: { authorization: `Bearer ${state.token}` },
    });
    if (response.status === 401 || response.status === 403) return signOut('The admin token was refused.');
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      setStatus(`Switchover of shard ${shard} failed: ${body.detail || response.status}`, 'warn');
      return;
    }
    const next = body.shards.find((candidate) => candidate.id === shard);
    setStatus(`Shard ${shard} switched over: primary ${next.primary.name}, epoch ${body.epoch}`);
  } catch (error) {
    setStatus(`Switchover of shard ${shard} failed: ${error.message}`, 'warn');
  }
}

// ------------------------------------------------------------------ start

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim();
    $('token').value = '';
    if (token) signIn(token);
  });
  $('sign-out').addEventListener('click', () => signOut());
  if (state.token) signIn(state.token);
  else showSignedIn(false);
});
