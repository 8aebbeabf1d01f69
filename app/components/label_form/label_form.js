// The Label page's form (a Streamlit components-v2 component, mounted without a shadow root).
//
// Everything a reviewer does between two saves happens here, without a server round trip:
// picking a value (1..9), writing the rationale, keeping a draft in localStorage. Python
// hears of one action at a time, as one trigger {action, trace_id, n, ...}: submit, skip,
// prev, next, next_pending, flag. So picking a value can never change what Python renders
// (blind mode cannot leak through it), and Ctrl+Enter sends the textarea's own value (no
// keystroke is lost to a debounce).
//
// Streamlit calls this function again with new `data` on every rerun that changed it; the
// DOM and `state` below persist between calls, so the form is reset only when `form_key`
// (trace id + a counter the page bumps after a save) changes.

const TEXT_FIELDS = new Set(["INPUT", "TEXTAREA", "SELECT"]);

function isTextField(el) {
  return !!el && (TEXT_FIELDS.has(el.tagName) || el.isContentEditable);
}

// How long after a click or Tab a focus change counts as the user's own.
const USER_MOVE_MS = 1000;
// How long after a new form the reviewer box's own focus grabs are undone.
const REFOCUS_WINDOW_MS = 5000;

function inNameBox(el) {
  return !!(el && el.closest && el.closest(".st-key-shell_reviewer"));
}

// Enter in the reviewer box chose a name (the same one again, too, which reruns
// nothing): once the box has taken it, the keyboard is the form's, as after a new form.
function leaveNameBox(root, state) {
  state.freshAt = Date.now(); // and undo the box's own focus grabs for a while (onFocusIn)
  state.userMovedAt = 0; // the click that went there is spent: the user has left the box
  for (const ms of [0, 150]) {
    setTimeout(() => {
      const now = document.activeElement;
      if (!root.isConnected || state.typingElsewhere || !inNameBox(now)) return;
      now.blur();
      root.focus({ preventScroll: true });
    }, ms);
  }
}

// A key that picks a value in the form (1..9 for choices, a digit for a number).
function isValueKey(e, d) {
  if (e.ctrlKey || e.metaKey || e.altKey || !d) return false;
  if (d.kind === "numeric") return /^[0-9]$/.test(e.key);
  return /^[1-9]$/.test(e.key) && Number(e.key) <= (d.options || []).length;
}

function draftGet(key) {
  try {
    const raw = window.localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch (e) {
    return null;
  }
}

function draftSet(key, draft) {
  try {
    if (draft) window.localStorage.setItem(key, JSON.stringify(draft));
    else window.localStorage.removeItem(key);
  } catch (e) {
    /* storage full or disabled: drafts are a convenience */
  }
}

export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  const root = parentElement.querySelector(".ab-lf");
  let state = root.__abState;
  if (!state) {
    state = root.__abState = {
      formKey: null,
      value: null,
      busy: false,
      ack: null,
      cleared: null,
      flagKind: "unsure",
      data: null,
    };
    setup(root, state, setTriggerValue);
  }
  state.data = data;
  render(root, state, data);
  return state.cleanup;
}

function el(root, sel) {
  return root.querySelector(sel);
}

function draftKey(data, traceId) {
  return data.draft_prefix + traceId;
}

function setMessage(root, text, kind) {
  const m = el(root, ".ab-lf-message");
  m.textContent = text || "";
  if (kind) m.dataset.kind = kind;
  else delete m.dataset.kind;
}

function showValue(root, state) {
  root.querySelectorAll(".ab-lf-values .ab-lf-btn").forEach((b, i) => {
    b.setAttribute("aria-pressed", String(state.value === i));
  });
}

function saveDraft(root, state) {
  const d = state.data;
  if (!d) return;
  const rationale = el(root, ".ab-lf-rationale").value;
  const number = el(root, ".ab-lf-number").value;
  const value = d.kind === "numeric" ? (number === "" ? null : Number(number)) : state.value;
  draftSet(draftKey(d, d.trace_id), { value, rationale });
}

function send(root, state, payload) {
  const d = state.data;
  if (state.busy || !d) return;
  state.busy = true;
  state.n = (state.n || 0) + 1;
  root.dataset.state = "busy";
  // A sent action is answered by a rerun carrying `ack`; if none comes (a lost
  // connection), the form unlocks again rather than ignoring the reviewer forever.
  clearTimeout(state.busyTimer);
  state.busyTimer = setTimeout(() => {
    state.busy = false;
    root.dataset.state = "ready";
  }, 15000);
  state.setTriggerValue("action", { ...payload, trace_id: d.trace_id, n: `${Date.now()}-${state.n}` });
}

function submit(root, state) {
  const d = state.data;
  const rationale = el(root, ".ab-lf-rationale").value;
  let value = state.value;
  if (d.kind === "numeric") {
    const raw = el(root, ".ab-lf-number").value;
    value = raw === "" ? null : Number(raw);
  }
  if (value === null || value === undefined || Number.isNaN(value)) {
    // Nothing is sent, so nothing is saved, and the rationale stays as typed.
    setMessage(root, "Choose a value first", "error");
    saveDraft(root, state);
    return;
  }
  if (d.policy === "always" && !rationale.trim()) {
    setMessage(root, "A rationale is required for every label: say why.", "error");
    el(root, ".ab-lf-rationale").focus();
    return;
  }
  saveDraft(root, state);
  const payload = { action: "submit", rationale };
  if (d.kind === "numeric") payload.number = value;
  else payload.index = value;
  send(root, state, payload);
}

function choose(root, state, index) {
  state.value = index;
  showValue(root, state);
  saveDraft(root, state);
  // Typing goes on into the rationale (no Tab, no mouse).
  el(root, ".ab-lf-rationale").focus();
}

function openFlag(root, state, open) {
  const panel = el(root, ".ab-lf-flag");
  panel.hidden = !open;
  if (open) {
    showFlagKind(root, state);
    el(root, ".ab-lf-flag-comment").focus();
  } else {
    root.focus({ preventScroll: true });
  }
}

function showFlagKind(root, state) {
  root.querySelectorAll(".ab-lf-flag-kinds .ab-lf-btn").forEach((b) => {
    b.setAttribute("aria-pressed", String(b.dataset.kind === state.flagKind));
  });
}

function sendFlag(root, state) {
  const comment = el(root, ".ab-lf-flag-comment").value;
  if (state.flagKind === "broken" && !comment.trim()) {
    setMessage(root, "Say what is broken about this trace (a short comment).", "error");
    return;
  }
  send(root, state, { action: "flag", kind: state.flagKind, comment });
}

function act(root, state, name) {
  const d = state.data;
  if (!d) return;
  if (name === "submit") return submit(root, state);
  if (name === "flag_open") return openFlag(root, state, true);
  if (name === "flag_close") return openFlag(root, state, false);
  if (name === "flag") return sendFlag(root, state);
  if (name === "prev" && !d.can_prev) return;
  if (name === "next" && !d.can_next) return;
  if (name === "next_pending" && !d.can_next_pending) return;
  send(root, state, { action: name });
}

function setup(root, state, setTriggerValue) {
  const rationale = el(root, ".ab-lf-rationale");
  const number = el(root, ".ab-lf-number");
  const comment = el(root, ".ab-lf-flag-comment");
  state.setTriggerValue = setTriggerValue;

  root.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b || !root.contains(b)) return;
    if (b.dataset.index !== undefined) choose(root, state, Number(b.dataset.index));
    else if (b.dataset.kind) {
      state.flagKind = b.dataset.kind;
      showFlagKind(root, state);
      comment.focus();
    } else if (b.dataset.act) act(root, state, b.dataset.act);
  });
  rationale.addEventListener("input", () => saveDraft(root, state));
  number.addEventListener("input", () => saveDraft(root, state));

  const onKey = (e) => {
    if (!root.isConnected || !state.data) return;
    let target = e.target;
    const ctrl = e.ctrlKey || e.metaKey;
    let inOurs = root.contains(target);
    if (e.key === "Tab") state.userMovedAt = Date.now(); // the user moves the focus
    if (!inOurs && inNameBox(target) && !state.typingElsewhere && isValueKey(e, state.data)) {
      // The name was just chosen (Enter) and its box still holds the focus, or took it
      // back while its rerun settled: a value key means the value, not a new name.
      target.blur();
      root.focus({ preventScroll: true });
      target = root;
      inOurs = true;
    }
    // Another widget's text field (the sidebar, a filter) keeps its keys. While the user
    // types there (a new reviewer name), a redraw of the form must not take the focus;
    // Enter or Escape ends the typing (the name is chosen), and then it may.
    if (isTextField(target) && !inOurs) {
      state.typingElsewhere = e.key !== "Enter" && e.key !== "Escape" && e.key !== "Tab";
      if (e.key === "Enter" && inNameBox(target)) leaveNameBox(root, state);
      return;
    }
    const handled = () => {
      e.preventDefault();
      e.stopPropagation();
    };
    if (ctrl && e.key === "Enter") {
      handled();
      if (e.repeat) return;
      if (!el(root, ".ab-lf-flag").hidden && (target === comment || !inOurs || target === root)) {
        return sendFlag(root, state);
      }
      return submit(root, state);
    }
    if (e.altKey && !ctrl && !el(root, ".ab-lf-flag").hidden) {
      const k = e.code === "KeyU" ? "unsure" : e.code === "KeyB" ? "broken" : null;
      if (k) {
        handled();
        state.flagKind = k;
        showFlagKind(root, state);
        return;
      }
    }
    if (e.key === "Escape") {
      if (!el(root, ".ab-lf-flag").hidden) {
        handled();
        return openFlag(root, state, false);
      }
      if (isTextField(target)) {
        handled();
        root.focus({ preventScroll: true });
      }
      return;
    }
    if (isTextField(target) || ctrl || e.altKey) return; // typing, or the browser's own keys
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const d = state.data;
    if (/^[1-9]$/.test(key) && d.kind !== "numeric") {
      const i = Number(key) - 1;
      if (i < d.options.length) {
        handled();
        choose(root, state, i);
      }
      return;
    }
    if (d.kind === "numeric" && /^[0-9.\-]$/.test(key)) {
      number.focus(); // the digit then types into the number field
      return;
    }
    const names = { j: "next", k: "prev", n: "next_pending", s: "skip", f: "flag_open" };
    if (names[key]) {
      handled();
      if (!e.repeat) act(root, state, names[key]);
      return;
    }
    if (key === "Enter" && (target === root || target === document.body || !inOurs)) {
      handled();
      rationale.focus();
    }
  };
  // Capture phase: the form sees its keys before Streamlit's own page shortcuts do.
  window.addEventListener("keydown", onKey, true);
  // A click into a text field outside the form starts typing there (see onKey).
  const onPointer = (e) => {
    const t = e.target;
    const field = t && t.closest ? t.closest("input, textarea") || t : t;
    state.typingElsewhere = !root.contains(t) && isTextField(field);
    state.userMovedAt = Date.now();
  };
  window.addEventListener("pointerdown", onPointer, true);
  // Streamlit's reviewer box can take the focus back after the form has taken it (its
  // own rerun settles later than the form's, by seconds on a loaded machine). Focus that
  // arrives there soon after a new form, with no click or Tab of the user's, goes back.
  const onFocusIn = (e) => {
    const t = e.target;
    if (!root.isConnected || state.typingElsewhere || !inNameBox(t)) return;
    const now = Date.now();
    if (now - (state.userMovedAt || 0) < USER_MOVE_MS) {
      state.typingElsewhere = isTextField(t); // the user went there: their keys
      return;
    }
    if (now - (state.freshAt || 0) < REFOCUS_WINDOW_MS) {
      t.blur();
      root.focus({ preventScroll: true });
    }
  };
  window.addEventListener("focusin", onFocusIn, true);
  state.cleanup = () => {
    window.removeEventListener("keydown", onKey, true);
    window.removeEventListener("pointerdown", onPointer, true);
    window.removeEventListener("focusin", onFocusIn, true);
  };
}

function render(root, state, d) {
  root.dataset.traceId = d.trace_id;
  if (d.ack !== state.ack) {
    state.ack = d.ack;
    state.busy = false;
    clearTimeout(state.busyTimer);
  }
  const clear = d.clear_draft;
  if (clear && clear.n !== state.cleared) {
    state.cleared = clear.n;
    draftSet(draftKey(d, clear.trace_id), null);
  }
  const values = el(root, ".ab-lf-values");
  const number = el(root, ".ab-lf-number");
  const rationale = el(root, ".ab-lf-rationale");
  if (values.dataset.options !== JSON.stringify(d.options)) {
    values.dataset.options = JSON.stringify(d.options);
    values.replaceChildren(
      ...d.options.map((text, i) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "ab-lf-btn";
        b.dataset.index = String(i);
        b.textContent = text; // trace-independent schema text, still never markup
        if (i < 9) {
          const k = document.createElement("kbd");
          k.textContent = String(i + 1);
          b.appendChild(k);
        }
        return b;
      }),
    );
  }
  values.hidden = d.kind === "numeric";
  number.hidden = d.kind !== "numeric";
  if (d.min !== null && d.min !== undefined) number.min = String(d.min);
  if (d.max !== null && d.max !== undefined) number.max = String(d.max);

  const fresh = d.form_key !== state.formKey;
  if (fresh) {
    state.formKey = d.form_key;
    // A draft (unsaved work on this trace, from before a J/K or a reload) wins over the
    // saved label; a saved label pre-fills the form; else it starts empty.
    const draft = draftGet(draftKey(d, d.trace_id));
    const saved = d.saved || {};
    const pick = draft || saved;
    if (d.kind === "numeric") {
      number.value = pick.value === null || pick.value === undefined ? "" : String(pick.value);
      state.value = null;
    } else {
      state.value = Number.isInteger(pick.value) && pick.value < d.options.length ? pick.value : null;
    }
    rationale.value = pick.rationale || "";
    showValue(root, state);
    el(root, ".ab-lf-flag").hidden = true;
    el(root, ".ab-lf-flag-comment").value = "";
    state.flagKind = "unsure";
  }
  root.querySelector('[data-act="prev"]').disabled = !d.can_prev;
  root.querySelector('[data-act="next"]').disabled = !d.can_next;
  root.querySelector('[data-act="next_pending"]').disabled = !d.can_next_pending;
  el(root, ".ab-lf-keys").textContent = d.keys_text || "";
  if (d.error) setMessage(root, d.error, "error");
  else if (d.ask) setMessage(root, d.ask, "ask");
  else if (d.flash) setMessage(root, d.flash, "ok");
  else if (fresh) setMessage(root, "", null);
  root.dataset.state = state.busy ? "busy" : "ready";
  if (fresh || d.ask || d.error) {
    // Never leave the focus in an input after a save or after choosing the reviewer: the
    // value keys must work at once. Asked for a rationale, the reviewer types it at once.
    const target = d.ask || (d.error && state.value !== null) ? rationale : root;
    const active = document.activeElement;
    const elsewhere = isTextField(active) && !root.contains(active);
    if ((fresh && !(elsewhere && state.typingElsewhere)) || !elsewhere) {
      target.focus({ preventScroll: true });
    }
  }
  if (fresh) {
    state.freshAt = Date.now(); // see onFocusIn
    // The sidebar's name box can take the focus back while its own rerun settles (after
    // Enter on a new name); the value keys must still work at once, so take it back.
    for (const ms of [50, 200, 600]) {
      setTimeout(() => {
        const now = document.activeElement;
        if (state.typingElsewhere) return; // the user is typing a name: leave it
        if (now && now.closest && now.closest(".st-key-shell_reviewer")) {
          now.blur();
          root.focus({ preventScroll: true });
        }
      }, ms);
    }
  }
}
