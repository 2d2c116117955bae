// The explorer page (functionary/explorer.py): polls this member's JSON API
// and renders it. Every value from the API reaches the page as text
// (textContent, or an attribute set with setAttribute); links are built only
// from values that match a strict pattern. No markup is ever made from data.
"use strict";

(() => {
  const POLL_MS = 1500;
  const BACKOFF_MS = [1500, 2000, 3000, 5000];
  const FEDERATION_EVERY_MS = 30000;
  const REQUEST_TIMEOUT_MS = 5000;
  const HEX64 = /^[0-9a-f]{64}$/;
  const OUTPOINT = /^[0-9a-f]{64}:[0-9]{1,10}$/;
  const COIN = 100000000;

  const state = {
    federation: null,
    federationAt: 0,
    status: null,
    blocks: [], // newest first, as /blocks gives them
    blocksTip: null, // the /status tip hash the block list was fetched for
    signatures: new Map(), // block hash -> /block/:hash/signatures
    peg: null, // {ok: body} | {notRunning: message} | {unavailable: message}
    failures: 0,
    retryAt: 0,
    lastOk: 0,
    lastError: "",
    failureKind: "",
  };

  // --- fetching ------------------------------------------------------------

  class HttpError extends Error {
    constructor(path, status, body) {
      const detail = body && typeof body.message === "string" ? body.message : "";
      super(`${path}: HTTP ${status}${detail ? " " + detail : ""}`);
      this.status = status;
      this.code = body && typeof body.code === "string" ? body.code : "";
      this.detail = detail;
    }
  }

  // The member could not be reached at all (refused, reset, timed out).
  class Unreachable extends Error {}

  async function getJson(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    try {
      let r;
      try {
        // Relative: the page works behind a proxy that mounts the member under a prefix.
        r = await fetch(path, { signal: ctl.signal, cache: "no-store", headers: { Accept: "application/json" } });
      } catch (e) {
        const timedOut = e.name === "AbortError";
        throw new Unreachable(
          timedOut ? `${path}: no answer in ${REQUEST_TIMEOUT_MS / 1000} s` : "the member does not answer",
        );
      }
      let body = null;
      try {
        body = await r.json();
      } catch (_) {
        body = null;
      }
      if (!r.ok) throw new HttpError(path, r.status, body);
      if (body === null || typeof body !== "object") throw new Error(`${path}: not a JSON object`);
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // A member without a peg answers /peg/status with 503 PegNotRunning: that
  // is a state to show, not a lost connection. Any other HTTP refusal is shown
  // in the peg card too; only a failed connection makes the page "disconnected"
  // (and /status, asked at the same time, tells that anyway).
  async function getPeg() {
    try {
      return { ok: await getJson("peg/status") };
    } catch (e) {
      if (!(e instanceof HttpError)) throw e;
      if (e.status === 503 && e.code === "PegNotRunning") return { notRunning: e.detail };
      return { unavailable: e.message };
    }
  }

  async function refresh() {
    const now = Date.now();
    const wantFederation = state.federation === null || now - state.federationAt > FEDERATION_EVERY_MS;
    const [status, federation, peg] = await Promise.all([
      getJson("status"),
      wantFederation ? getJson("federation") : Promise.resolve(null),
      getPeg(),
    ]);
    let blocks = state.blocks;
    let signatures = state.signatures;
    const tip = status.tip && status.tip.hash;
    if (tip !== state.blocksTip) {
      const list = await getJson("blocks");
      if (!Array.isArray(list)) throw new Error("blocks: not a list");
      blocks = list;
      // Signatures never change for a block hash: fetch each block's once.
      const wanted = blocks.filter((b) => b.height > 0 && HEX64.test(b.id) && !state.signatures.has(b.id));
      const fetched = await Promise.all(wanted.map((b) => getJson(`block/${b.id}/signatures`)));
      signatures = new Map();
      for (const b of blocks) if (state.signatures.has(b.id)) signatures.set(b.id, state.signatures.get(b.id));
      wanted.forEach((b, i) => signatures.set(b.id, fetched[i]));
    }
    // Everything arrived: only now replace what is shown.
    state.status = status;
    if (federation !== null) {
      state.federation = federation;
      state.federationAt = now;
    }
    state.peg = peg;
    state.blocks = blocks;
    state.signatures = signatures;
    state.blocksTip = tip;
    render();
  }

  async function loop() {
    try {
      await refresh();
      state.failures = 0;
      state.lastOk = Date.now();
      state.lastError = "";
    } catch (e) {
      state.failures += 1;
      state.federationAt = 0; // ask for the federation again once the member answers
      // Unreachable, or a 5xx (a proxy in front of a member that is down):
      // "disconnected". Anything else (a 4xx, an answer of the wrong shape)
      // is an error of this page or the API: shown as such, still retried.
      const down = e instanceof Unreachable || (e instanceof HttpError && e.status >= 500);
      state.failureKind = down ? "disconnected" : "error";
      state.lastError = String((e && e.message) || e);
      console.warn("explorer:", state.lastError);
    }
    const delay = state.failures === 0 ? POLL_MS : BACKOFF_MS[Math.min(state.failures, BACKOFF_MS.length) - 1];
    state.retryAt = Date.now() + delay;
    renderConnection();
    setTimeout(loop, delay);
  }

  // --- building nodes (text only) ---------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text === null || text === undefined ? "—" : String(text);
  }

  function shortHash(h) {
    return typeof h === "string" && h.length > 20 ? `${h.slice(0, 8)}…${h.slice(-8)}` : String(h);
  }

  function btc(sats) {
    if (typeof sats !== "number" || !Number.isSafeInteger(sats)) return "—";
    const sign = sats < 0 ? "-" : "";
    const a = Math.abs(sats);
    return `${sign}${Math.floor(a / COIN)}.${String(a % COIN).padStart(8, "0")}`;
  }

  function plural(count, noun) {
    return `${count} ${noun}${count === 1 ? "" : "s"}`;
  }

  function ago(seconds) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function isoTime(seconds) {
    return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
  }

  function timeNode(seconds) {
    if (typeof seconds !== "number") return el("span", {}, "—");
    return el("time", { datetime: isoTime(seconds), title: isoTime(seconds), "data-ts": seconds }, ago(seconds));
  }

  function hashLink(hash, prefix) {
    const label = shortHash(hash);
    if (!HEX64.test(hash)) return el("span", { class: "mono" }, label);
    return el("a", { href: prefix + hash, title: hash, class: "mono" }, label);
  }

  function fact(dl, term, value, attrs) {
    dl.append(el("dt", {}, term), el("dd", attrs || {}, value === null || value === undefined ? "—" : value));
  }

  function members() {
    const fed = state.federation;
    return fed && Array.isArray(fed.members) ? fed.members : [];
  }

  function memberName(index) {
    const m = members().find((x) => x.index === index);
    return m && typeof m.name === "string" ? m.name : `member ${index}`;
  }

  // --- rendering ---------------------------------------------------------------

  function render() {
    renderTip();
    renderBlocks();
    renderFederation();
    renderPeg();
    renderConnection();
  }

  function renderTip() {
    const s = state.status;
    const newest = state.blocks[0];
    setText("tip-height", s.tip ? s.tip.height : null);
    $("tip-age").replaceChildren(newest ? timeNode(newest.timestamp) : "—");
    setText("tip-round", s.round ? `height ${s.round.height}, round ${s.round.round}` : null);
    const peers = Array.isArray(s.peers_connected) ? s.peers_connected.length : null;
    const others = members().length ? members().length - 1 : null;
    setText("tip-peers", peers === null ? null : others === null ? peers : `${peers} of ${others}`);
    setText("tip-mempool", s.mempool ? `${s.mempool.count} tx` : null);
    setText("member", typeof s.member === "number" ? `${memberName(s.member)} (#${s.member})` : null);
  }

  function renderBlocks() {
    const fed = state.federation;
    const n = members().length;
    const rows = state.blocks.map((b) => {
      const tr = el("tr", { "data-height": b.height, "data-hash": b.id });
      tr.append(
        el("td", { class: "num" }, b.height),
        el("td", {}, hashLink(b.id, "block/")),
        el("td", {}, timeNode(b.timestamp)),
        el("td", { class: "num" }, b.tx_count),
        el("td", { class: "signers" }, ...signerBadges(b, state.signatures.get(b.id), fed, n)),
      );
      return tr;
    });
    if (rows.length === 0) rows.push(el("tr", { class: "empty" }, el("td", { colspan: 5 }, "no blocks yet")));
    $("blocks-body").replaceChildren(...rows);
  }

  function signerBadges(block, sig, fed, n) {
    if (block.height === 0) return [el("span", { class: "muted" }, "genesis: no signatures")];
    if (!sig || !fed) return [el("span", { class: "muted" }, "…")];
    if (sig.error) return [el("span", { class: "bad" }, `signatures unreadable: ${sig.error}`)];
    const signed = new Set((sig.signers || []).map((s) => s.index));
    const badges = [];
    for (let i = 0; i < n; i++) {
      const yes = signed.has(i);
      badges.push(
        el(
          "span",
          {
            class: yes ? "badge signed" : "badge missing",
            "data-member": i,
            title: `${memberName(i)}: ${yes ? "signed" : "did not sign"}`,
          },
          i,
        ),
      );
    }
    const ok = signed.size >= fed.threshold;
    badges.push(
      el(
        "span",
        { class: ok ? "count ok" : "count bad", title: `${fed.threshold} of ${n} signatures make a block final` },
        `${signed.size} of ${n}`,
      ),
    );
    return badges;
  }

  function renderFederation() {
    const fed = state.federation;
    if (!fed) return;
    const s = state.status;
    const bounds = fed.fault_bounds || {};
    setText(
      "fed-summary",
      `${fed.threshold}-of-${fed.n}: ` +
        `blocks continue with up to ${plural(bounds.offline_tolerance, "member")} offline; ` +
        `no fork with up to ${bounds.equivocation_tolerance} equivocating.`,
    );
    // How many of the listed blocks each member signed: computed here from the
    // signatures already fetched, no extra request.
    const listed = state.blocks.filter((b) => b.height > 0 && state.signatures.has(b.id));
    const signedCount = new Map();
    for (const b of listed) {
      for (const x of state.signatures.get(b.id).signers || []) {
        signedCount.set(x.index, (signedCount.get(x.index) || 0) + 1);
      }
    }
    const peers = new Set(s && Array.isArray(s.peers_connected) ? s.peers_connected : []);
    const rows = members().map((m) => {
      const self = s && s.member === m.index;
      const link = self ? "this member" : peers.has(m.index) ? "connected" : "not connected";
      return el(
        "tr",
        { "data-member": m.index },
        el("td", {}, el("span", { class: "badge signed" }, m.index)),
        el("td", { class: "name" }, m.name),
        el("td", { class: "mono", title: m.signing_pubkey }, shortHash(m.signing_pubkey)),
        el("td", { class: "num" }, listed.length ? `${signedCount.get(m.index) || 0}/${listed.length}` : "—"),
        el("td", { class: self || peers.has(m.index) ? "ok" : "bad" }, link),
      );
    });
    $("members-body").replaceChildren(...rows);

    const dl = el("dl", { id: "fed-facts", class: "facts" });
    fact(dl, "chain id", shortHash(fed.chain_id), { class: "mono", title: fed.chain_id });
    const peg = fed.peg;
    if (peg) {
      fact(dl, "mainchain", peg.parent);
      fact(dl, "peg keys", `${peg.threshold}-of-${(peg.watchman_keys || []).length} watchmen`);
      const emergency = (peg.emergency_keys || []).length;
      fact(dl, "emergency keys", `${peg.emergency_threshold}-of-${emergency} after ${peg.csv_delay} blocks`);
      fact(dl, "peg-in depth", `${peg.pegin_min_depth} blocks`);
      fact(dl, "PAK", `${plural((peg.pak || []).length, "exchange key")}${peg.enforce_pak ? ", enforced" : ""}`);
    } else {
      fact(dl, "peg", "not configured");
    }
    $("fed-facts").replaceWith(dl);
  }

  function renderPeg() {
    const p = state.peg;
    const dl = el("dl", { id: "peg-facts", class: "facts" });
    const body = [];
    const reserves = $("reserves");
    const stateLine = $("peg-state");
    if (!p || !p.ok) {
      stateLine.textContent = p && p.notRunning !== undefined ? "peg not running" : "peg status unavailable";
      stateLine.className = "lead muted";
      stateLine.setAttribute("title", p ? p.notRunning || p.unavailable || "" : "");
      reserves.hidden = true;
      for (const term of ["mainchain tip", "pegged in", "paid out", "sidechain supply", "federation coins"]) {
        fact(dl, term, "—");
      }
      body.push(el("tr", { class: "empty" }, el("td", { colspan: 4 }, "—")));
    } else {
      const peg = p.ok;
      const r = peg.reserves || {};
      stateLine.textContent = r.balanced ? "running; reserves balanced" : "running; reserves NOT balanced";
      stateLine.className = r.balanced ? "lead ok" : "lead bad";
      stateLine.removeAttribute("title");
      fact(dl, "mainchain tip", peg.mainchain_tip, { "data-field": "mainchain_tip" });
      fact(dl, "ledger at sidechain height", peg.sidechain_height);
      fact(dl, "pegged in", btc(r.pegged_in));
      fact(dl, "burned for peg-outs", btc(r.burned));
      fact(dl, "paid out", btc(r.paid_out));
      fact(dl, "mainchain fees", btc(r.fees));
      fact(dl, "sidechain supply", btc(r.sidechain_supply));
      fact(dl, "peg-outs owed", btc(r.owed));
      fact(dl, "federation coins", `${btc(r.federation_utxo_sum)} in ${plural(r.federation_utxo_count, "output")}`);
      fact(dl, "surplus", btc(r.surplus));
      fact(dl, "payouts in flight", Array.isArray(peg.live_payouts) ? peg.live_payouts.length : null);
      renderReserves(r);
      reserves.hidden = false;
      const tip = state.status && state.status.tip ? state.status.tip.height : null;
      for (const e of Array.isArray(peg.pending) ? peg.pending : []) {
        const id = typeof e.id === "string" ? e.id : String(e.id);
        const idCell = OUTPOINT.test(id)
          ? el("a", { href: `pegouts/${id}`, title: id, class: "mono" }, shortHash(id))
          : el("span", { class: "mono", title: id }, shortHash(id));
        const known = typeof tip === "number" && typeof e.sidechain_height === "number";
        const depth = known ? tip - e.sidechain_height + 1 : null;
        body.push(
          el(
            "tr",
            { "data-pegout": id },
            el("td", {}, idCell),
            el("td", { class: "num" }, btc(e.amount)),
            el("td", { class: "num" }, e.sidechain_height),
            el("td", { class: "num" }, depth === null ? "—" : depth),
          ),
        );
      }
      if (body.length === 0) body.push(el("tr", { class: "empty" }, el("td", { colspan: 4 }, "none pending")));
    }
    $("peg-facts").replaceWith(dl);
    $("pegouts-body").replaceChildren(...body);
  }

  function renderReserves(r) {
    const coins = Math.max(0, r.federation_utxo_sum || 0);
    const claims = Math.max(0, (r.sidechain_supply || 0) + (r.owed || 0));
    const top = Math.max(coins, claims, 1);
    $("bar-coins").style.width = `${(100 * coins) / top}%`;
    $("bar-claims").style.width = `${(100 * claims) / top}%`;
    setText("amt-coins", btc(coins));
    setText("amt-claims", btc(claims));
  }

  function renderConnection() {
    const conn = $("conn");
    let stateName = "connecting";
    let retry = "";
    if (state.failures > 0) {
      // The state is the live region; the countdown beside it is not, so a
      // screen reader hears "disconnected" once, not every second.
      const wait = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      stateName = state.failureKind;
      retry = ` · retrying ${wait > 0 ? `in ${wait} s` : "now"}`;
      conn.setAttribute("title", state.lastError);
    } else if (state.lastOk) {
      stateName = "live";
      conn.removeAttribute("title");
    }
    conn.dataset.state = stateName;
    const label = stateName === "connecting" ? "connecting…" : stateName;
    if ($("conn-state").textContent !== label) $("conn-state").textContent = label;
    $("conn-retry").textContent = retry;
    $("main").classList.toggle("stale", state.failures > 0 && state.lastOk > 0);
    setText(
      "updated",
      state.lastOk
        ? `last updated ${new Date(state.lastOk).toLocaleTimeString()}${state.failures ? ` (${state.lastError})` : ""}`
        : "not updated yet",
    );
  }

  // Once a second: relative times and the retry countdown, without a request.
  function tick() {
    for (const t of document.querySelectorAll("time[data-ts]")) t.textContent = ago(Number(t.dataset.ts));
    renderConnection();
  }

  setInterval(tick, 1000);
  loop();
})();
