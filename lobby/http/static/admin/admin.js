// The lobby admin page: plain JavaScript over the /api/admin endpoints, no build step.
// The bearer token lives in sessionStorage (this tab only); every name shown comes from
// players, so text is always set with textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 2000;
const PALETTE = ["#e5534b", "#4ea1ff", "#57c26b", "#d6a84e", "#b07cff", "#4fd1c5"];
const UNCLAIMED = "#59617a";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem("shards-admin-token"),
  username: sessionStorage.getItem("shards-admin-user"),
  layout: null,
  layoutKey: "",
  factions: [],
  timer: null,
  busy: false,
  clockSkew: 0,
  world: null,
  inspected: null,
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401 && path !== "/api/auth/login") showLogin("Your session ended: log in again.");
    throw new ApiError(resp.status, data);
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function say(text) {
  $("status-line").textContent = text;
}

function factionColor(name) {
  const i = state.factions.indexOf(name);
  return i < 0 ? UNCLAIMED : PALETTE[i % PALETTE.length];
}

// -- login ---------------------------------------------------------------------------------

function showLogin(message) {
  stopRefresh();
  state.token = null;
  sessionStorage.removeItem("shards-admin-token");
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("login-panel").hidden = false;
  $("login-error").textContent = message || "";
}

function showDashboard() {
  $("login-panel").hidden = true;
  $("dashboard").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.username || "";
  startRefresh();
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  try {
    const out = await api("POST", "/api/auth/login", { username, password });
    if (!out.is_admin) {
      // not ours to keep: end the session this login just opened
      await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${out.token}` } });
      $("login-error").textContent = "This account is not an admin (SHARDS_ADMIN_ACCOUNTS).";
      return;
    }
    state.token = out.token;
    state.username = out.username;
    sessionStorage.setItem("shards-admin-token", out.token);
    sessionStorage.setItem("shards-admin-user", out.username);
    $("login-password").value = "";
    showDashboard();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
}

async function logout() {
  try {
    await api("POST", "/api/auth/logout");
  } catch (err) {
    /* the token may already be gone */
  }
  showLogin("");
}

// -- refresh -------------------------------------------------------------------------------

function startRefresh() {
  stopRefresh();
  refresh();
  state.timer = setInterval(refresh, REFRESH_MS);
}

function stopRefresh() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
}

async function refresh() {
  if (state.busy || !state.token) return;
  state.busy = true;
  try {
    const [players, world, bans] = await Promise.all([
      api("GET", "/api/admin/players"),
      api("GET", "/api/admin/world"),
      api("GET", "/api/admin/bans"),
    ]);
    state.clockSkew = world.now * 1000 - Date.now();
    state.world = world.world;
    state.factions = players.factions;
    renderStats(players, world.world);
    renderMap(players);
    renderPlayers(players);
    renderShards(world.world, players);
    renderBans(bans.bans);
    $("stat-updated").textContent = new Date().toLocaleTimeString();
    document.body.dataset.refreshed = String(Date.now());
  } catch (err) {
    if (err.status !== 401) say(`Refresh failed: ${err.message}`);
  } finally {
    state.busy = false;
  }
}

function renderStats(players, world) {
  $("stat-players").textContent = players.players_online;
  $("stat-connections").textContent = players.connections;
  $("stat-reality").textContent = world ? world.current_reality : "–";
  tickAetherfall();
}

function tickAetherfall() {
  const world = state.world;
  if (!world) return;
  const now = (Date.now() + state.clockSkew) / 1000;
  const active = world.aetherfall_active && world.aetherfall;
  const until = active ? world.aetherfall.ends_at : world.next_aetherfall_at;
  $("stat-aetherfall-label").textContent = active
    ? `Aetherfall at ${world.aetherfall.epicentre_name}, ends in`
    : "next Aetherfall in";
  $("stat-aetherfall").textContent = duration(until - now);
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

// -- the map -------------------------------------------------------------------------------

// A deterministic force-directed layout (spring edges, repelling nodes), computed once per
// set of locations: the same world always draws the same map.
function layout(locations, width, height) {
  const n = locations.length;
  const pos = locations.map((_, i) => ({
    x: width / 2 + (width / 3) * Math.cos((2 * Math.PI * i) / n),
    y: height / 2 + (height / 3) * Math.sin((2 * Math.PI * i) / n),
  }));
  const index = new Map(locations.map((l, i) => [l.id, i]));
  const edges = [];
  locations.forEach((l, i) =>
    l.neighbours.forEach((nb) => {
      const j = index.get(nb);
      if (j !== undefined && i < j) edges.push([i, j]);
    }),
  );
  const k = Math.sqrt((width * height) / Math.max(n, 1)) * 0.9;
  for (let step = 0; step < 400; step++) {
    const temp = 30 * (1 - step / 400) + 0.5;
    const disp = pos.map(() => ({ x: 0, y: 0 }));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const dx = pos[i].x - pos[j].x;
        const dy = pos[i].y - pos[j].y;
        const d = Math.max(Math.hypot(dx, dy), 0.01);
        const f = (k * k) / d;
        disp[i].x += (dx / d) * f;
        disp[i].y += (dy / d) * f;
        disp[j].x -= (dx / d) * f;
        disp[j].y -= (dy / d) * f;
      }
    }
    for (const [i, j] of edges) {
      const dx = pos[i].x - pos[j].x;
      const dy = pos[i].y - pos[j].y;
      const d = Math.max(Math.hypot(dx, dy), 0.01);
      const f = (d * d) / k;
      disp[i].x -= (dx / d) * f;
      disp[i].y -= (dy / d) * f;
      disp[j].x += (dx / d) * f;
      disp[j].y += (dy / d) * f;
    }
    for (let i = 0; i < n; i++) {
      const d = Math.max(Math.hypot(disp[i].x, disp[i].y), 0.01);
      pos[i].x += (disp[i].x / d) * Math.min(d, temp);
      pos[i].y += (disp[i].y / d) * Math.min(d, temp);
    }
  }
  // fit into the view box with a margin for the labels
  const margin = { x: 70, y: 45 };
  const xs = pos.map((p) => p.x);
  const ys = pos.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (width - 2 * margin.x) / Math.max(x1 - x0, 1);
  const sy = (height - 2 * margin.y) / Math.max(y1 - y0, 1);
  const fitted = pos.map((p) => ({ x: margin.x + (p.x - x0) * sx, y: margin.y + (p.y - y0) * sy }));
  return { pos: fitted, edges, index };
}

function renderMap(players) {
  const map = $("map");
  const [, , width, height] = map.getAttribute("viewBox").split(" ").map(Number);
  const key = players.locations.map((l) => `${l.id}:${l.neighbours.join(",")}`).join(";");
  if (state.layoutKey !== key) {
    state.layout = layout(players.locations, width, height);
    state.layoutKey = key;
  }
  const { pos, edges } = state.layout;
  map.replaceChildren();
  for (const [i, j] of edges) {
    map.append(svg("line", { class: "edge", x1: pos[i].x, y1: pos[i].y, x2: pos[j].x, y2: pos[j].y }));
  }
  players.locations.forEach((loc, i) => {
    const count = loc.players.length;
    const r = 16 + Math.min(count, 20) * 1.5;
    const g = svg("g", {
      class: `node${count ? " busy" : ""}${loc.safe ? " safe" : ""}`,
      transform: `translate(${pos[i].x.toFixed(1)},${pos[i].y.toFixed(1)})`,
      "data-location-id": loc.id,
      "data-players": count,
    });
    const title = svg("title", {}, `${loc.name}: ${count} player(s)${loc.safe ? ", safe" : ""}`);
    g.append(title, svg("circle", { class: "body", r }));
    g.append(svg("text", { class: "count", y: 0 }, count));
    g.append(svg("text", { class: "name", y: r + 14 }, loc.name));
    const shards = Object.entries(loc.shard_owners);
    shards.forEach(([shard, owner], s) => {
      const angle = -Math.PI / 4 + s * 0.5;
      const cx = Math.cos(angle) * r;
      const cy = Math.sin(angle) * r - 2;
      const d = svg("rect", {
        class: "shard",
        x: cx - 6,
        y: cy - 6,
        width: 12,
        height: 12,
        fill: owner ? factionColor(owner) : UNCLAIMED,
        transform: `rotate(45 ${cx} ${cy})`,
      });
      d.append(svg("title", {}, `${shard}: ${owner || "unclaimed"}`));
      g.append(d);
    });
    map.append(g);
  });
  const legend = $("legend");
  legend.replaceChildren(
    ...state.factions.map((f) => el("span", {}, swatch(factionColor(f)), f)),
    el("span", {}, swatch(UNCLAIMED), "unclaimed shard"),
    el("span", {}, "circle size and number: players there; dashed: safe"),
  );
}

function swatch(color) {
  const i = el("i");
  i.style.background = color;
  return i;
}

// -- players, inspect, kick, ban --------------------------------------------------------------

function renderPlayers(players) {
  const names = new Map(players.locations.map((l) => [l.id, l.name]));
  const rows = [];
  for (const loc of players.locations) {
    for (const p of loc.players) {
      const kick = el("button", { class: "danger small kick", type: "button", title: "Revoke the sessions playing this character" }, "Kick");
      armed(kick, "Confirm kick", () => act(`/api/admin/characters/${p.character_id}/kick`, "POST", `${p.character_name} kicked`));
      const inspect = el("button", { class: "small inspect-btn", type: "button", onclick: () => inspectCharacter(p.character_id) }, "Inspect");
      const dot = el("span", { class: "dot" });
      dot.style.background = factionColor(p.faction);
      const name = el("td", {}, dot, p.character_name);
      if (!p.connected) name.append(el("span", { class: "grace" }, "(reconnecting)"));
      rows.push(
        el(
          "tr",
          { "data-character-id": p.character_id, "data-account-id": p.account_id },
          name,
          el("td", {}, p.username),
          el("td", {}, p.faction),
          el("td", {}, names.get(p.location_id) || p.location_id),
          el("td", {}, inspect, " ", kick),
        ),
      );
    }
  }
  $("players").querySelector("tbody").replaceChildren(...rows);
  $("players-empty").hidden = rows.length > 0;
  $("players-count").textContent = rows.length ? `(${rows.length})` : "";
}

// A destructive button needs two clicks: the first arms it for four seconds.
function armed(button, armedText, action) {
  const text = button.textContent;
  let timer = null;
  button.addEventListener("click", async () => {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = armedText;
      timer = setTimeout(() => {
        button.classList.remove("armed");
        button.textContent = text;
      }, 4000);
      return;
    }
    clearTimeout(timer);
    button.disabled = true;
    await action();
  });
}

async function act(path, method, done, body) {
  try {
    await api(method, path, body);
    say(done);
  } catch (err) {
    say(`Failed: ${err.message}`);
  }
  await refresh();
  if (state.inspected !== null) await inspectCharacter(state.inspected);
}

async function inspectCharacter(characterId) {
  const box = $("inspect");
  try {
    const out = await api("GET", `/api/admin/characters/${characterId}`);
    state.inspected = characterId;
    const c = out.character;
    const facts = [
      ["Character", `${c.name} (#${c.id})`],
      ["Account", `${out.username} (#${out.account_id})${out.banned ? " · BANNED" : ""}`],
      ["Class", `${c.character_class}, level ${c.level} (${c.experience} xp)`],
      ["Faction", c.faction],
      ["Health / mana", `${c.health}/${c.max_health} · ${c.mana}/${c.max_mana}`],
      ["Gold", c.gold],
      ["Location", out.location_name || c.location_id],
      ["Online", out.online ? "yes" : "no"],
      ["Sessions", out.sessions.map((s) => `#${s.session_id}${s.connected ? " (connected)" : ""}`).join(", ") || "none"],
    ];
    const dl = el("dl");
    for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", {}, v));
    const revoke = el("button", { class: "danger small", type: "button" }, "Revoke sessions");
    armed(revoke, "Confirm revoke", () => act(`/api/admin/accounts/${out.account_id}/revoke`, "POST", `sessions of ${out.username} revoked`));
    const reason = el("input", { placeholder: "ban reason", maxlength: "200", value: "" });
    const ban = el("button", { class: "danger small", type: "button" }, out.banned ? "Unban" : "Ban account");
    if (out.banned) {
      ban.addEventListener("click", () => act(`/api/admin/accounts/${out.account_id}/ban`, "DELETE", `${out.username} unbanned`));
    } else {
      armed(ban, "Confirm ban", () =>
        act(`/api/admin/accounts/${out.account_id}/ban`, "POST", `${out.username} banned`, {
          reason: reason.value.trim() || "banned from the admin page",
        }),
      );
    }
    const close = el("button", { class: "small", type: "button", onclick: () => { box.hidden = true; state.inspected = null; } }, "Close");
    box.replaceChildren(dl, el("div", { class: "row" }, out.banned ? "" : reason, ban, revoke, close));
    box.hidden = false;
  } catch (err) {
    say(`Inspect failed: ${err.message}`);
  }
}

function renderShards(world, players) {
  const list = $("shards");
  if (!world) {
    list.replaceChildren(el("li", { class: "muted" }, "The world service is not running."));
    return;
  }
  const names = new Map(players.locations.map((l) => [l.id, l.name]));
  list.replaceChildren(
    ...world.shards.map((s) =>
      el(
        "li",
        { "data-shard-id": s.shard_id },
        el("span", {}, swatch(s.owner ? factionColor(s.owner) : UNCLAIMED), s.name, el("span", { class: "muted" }, ` · ${names.get(s.location_id) || ""}`)),
        el("span", {}, s.owner || "unclaimed"),
      ),
    ),
  );
}

function renderBans(bans) {
  const list = $("bans");
  if (!bans.length) {
    list.replaceChildren(el("li", { class: "muted" }, "No account is banned."));
    return;
  }
  list.replaceChildren(
    ...bans.map((b) => {
      const unban = el("button", { class: "small", type: "button" }, "Unban");
      unban.addEventListener("click", () => act(`/api/admin/accounts/${b.account_id}/ban`, "DELETE", `account #${b.account_id} unbanned`));
      return el("li", { "data-account-id": b.account_id }, el("span", {}, `#${b.account_id}: ${b.reason}`, el("span", { class: "muted" }, ` (by ${b.banned_by})`)), unban);
    }),
  );
}

async function announce(event) {
  event.preventDefault();
  const content = $("announce-text").value.trim();
  if (!content) return;
  try {
    const out = await api("POST", "/api/admin/announcements", { content, priority: $("announce-priority").value });
    $("announce-text").value = "";
    say(`Announcement sent to ${out.recipients} player(s).`);
  } catch (err) {
    say(`Announcement failed: ${err.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("announce-form").addEventListener("submit", announce);
  setInterval(tickAetherfall, 1000);
  if (state.token) showDashboard();
  else showLogin("");
});
