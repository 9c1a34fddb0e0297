// The web client: sign-in (with the MFA step), chats in real time, security
// settings and notifications, using only the public API of api.md. User
// text is always put in the page as text (see dom.ts).

import { Api, ApiError, Chat, GroupAdds, Me, Message, Notification, Preferences, Profile, Session, Tokens, newClientMsgId } from "./api.js";
import { append, clear, formValues, h, svgImage, time } from "./dom.js";
import { ChatSocket, Frame } from "./socket.js";

const api = new Api();
const root = document.getElementById("app") as HTMLElement;

interface ChatState { messages: Message[]; hasMore: boolean; loaded: boolean }

let me: Me | null = null;
let socket: ChatSocket | null = null;
const chats = new Map<string, Chat>();
const history = new Map<string, ChatState>();
const online = new Set<string>();
const typing = new Map<string, Map<string, number>>(); // chat -> user -> timer
const seen = new Map<string, Map<string, string>>(); // chat -> user -> message id
/** People the user blocked (GET /api/chat/blocks), by id. */
const blocked = new Map<string, Profile>();
let current: string | null = null;
let unreadNotifications = 0;
/** The notifications view is open: it follows new notifications. */
let notificationsOpen = false;
let badgeTimers = false;

// Layout elements of the signed-in view.
let listEl: HTMLElement;
let mainEl: HTMLElement;
let statusEl: HTMLElement;
let badgeEl: HTMLElement;

function errorText(e: unknown, shown: Set<string> = new Set()): string {
  if (e instanceof ApiError) {
    const fields = Object.entries(e.fields).filter(([f]) => !shown.has(f)).map(([f, m]) => `${f}: ${m}`);
    return fields.length ? `${e.message} (${fields.join("; ")})` : e.message;
  }
  return "Something went wrong. Try again.";
}

function errorBox(): HTMLElement {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(box: HTMLElement, e: unknown): void {
  box.textContent = errorText(e);
  box.hidden = false;
}

/** A 422's field messages next to the form's inputs of those names (as text); returns the fields shown. */
function showFieldErrors(form: HTMLFormElement, e: unknown): Set<string> {
  const shown = new Set<string>();
  form.querySelectorAll(".field-error").forEach((el) => el.remove());
  form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  if (!(e instanceof ApiError)) return shown;
  for (const [name, message] of Object.entries(e.fields)) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input || (input.closest("[hidden]") !== null)) continue;
    input.setAttribute("aria-invalid", "true");
    input.insertAdjacentElement("afterend", h("small", { class: "field-error error" }, message));
    shown.add(name);
  }
  return shown;
}

/** Runs `work` for a form: disables it meanwhile, shows errors in `box`. */
function submit(form: HTMLFormElement, box: HTMLElement, work: (v: Record<string, string>) => Promise<void>): void {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    box.hidden = true;
    showFieldErrors(form, null);
    const button = form.querySelector("button[type=submit]") as HTMLButtonElement | null;
    if (button) button.disabled = true;
    try {
      await work(formValues(form));
    } catch (e) {
      // Field messages go next to their inputs; the box has the rest.
      box.textContent = errorText(e, showFieldErrors(form, e));
      box.hidden = false;
    } finally {
      if (button) button.disabled = false;
    }
  });
}

function field(label: string, name: string, type = "text", extra: Record<string, string | boolean> = {}): HTMLElement {
  return h("label", {}, label, h("input", { name, type, required: true, ...extra }));
}

// ---------------------------------------------------------------- sign-in

function renderAuth(mode: "signin" | "signup" = "signin", notice = "", noticeIsError = false): void {
  socket?.stop();
  socket = null;
  document.title = "Chat: sign in";
  clear(root);
  const box = errorBox();
  const form = h("form", { class: "card auth", "aria-label": mode === "signin" ? "Sign in" : "Sign up" });
  if (mode === "signin") {
    append(form,
      h("h1", {}, "Sign in"),
      notice ? h("p", { class: noticeIsError ? "error" : "notice", role: noticeIsError ? "alert" : "status" }, notice) : null,
      field("Username or email", "login", "text", { autocomplete: "username" }),
      field("Password", "password", "password", { autocomplete: "current-password" }),
      box,
      h("button", { type: "submit" }, "Sign in"),
      h("p", {}, "New here? ", h("a", { href: "#", onclick: (e: Event) => { e.preventDefault(); renderAuth("signup"); } }, "Create an account")),
    );
    submit(form, box, async (v) => {
      // This device's token for the account: strangers' wrong guesses do
      // not lock it out (api.md, login).
      const deviceToken = api.deviceTokenFor(v.login);
      const login = (withDevice: boolean) => api.post<{ mfaRequired?: boolean; mfaToken?: string } & Partial<Tokens>>(
        "/api/auth/login", withDevice && deviceToken ? { login: v.login, password: v.password, deviceToken } : { login: v.login, password: v.password });
      let r;
      try {
        r = await login(true);
      } catch (e) {
        // A device token the server refuses as malformed: forget it, try once without.
        if (!(deviceToken && e instanceof ApiError && (e.status === 400 || e.status === 422) && "deviceToken" in e.fields)) throw e;
        api.forgetDevice(deviceToken);
        r = await login(false);
      }
      if (r.mfaRequired && r.mfaToken) renderMfaStep(r.mfaToken, false, api.deviceTokenFor(v.login));
      else { api.setTokens(r as Tokens); await start(); }
    });
  } else {
    append(form,
      h("h1", {}, "Create an account"),
      field("Username", "username", "text", { autocomplete: "username", minlength: "3", maxlength: "32" }),
      field("Email", "email", "email", { autocomplete: "email" }),
      h("label", {}, "Display name (optional)", h("input", { name: "displayName", maxlength: "64" })),
      field("Password", "password", "password", { autocomplete: "new-password", minlength: "8", maxlength: "128" }),
      h("p", { class: "hint" }, "Use a long passphrase; common or guessable passwords are refused."),
      box,
      h("button", { type: "submit" }, "Create account"),
      h("p", {}, "Have an account? ", h("a", { href: "#", onclick: (e: Event) => { e.preventDefault(); renderAuth("signin"); } }, "Sign in")),
    );
    submit(form, box, async (v) => {
      const body: Record<string, string> = { username: v.username, email: v.email, password: v.password };
      if (v.displayName.trim()) body.displayName = v.displayName.trim();
      api.setTokens(await api.post<Tokens>("/api/auth/register", body));
      await start();
    });
  }
  append(root, h("main", { class: "center" }, form));
  (form.querySelector("input") as HTMLInputElement).focus();
}

function renderMfaStep(mfaToken: string, useRecovery = false, deviceToken?: string): void {
  clear(root);
  const box = errorBox();
  const form = h("form", { class: "card auth", "aria-label": "Two-factor authentication" },
    h("h1", {}, "Two-factor authentication"),
    useRecovery
      ? field("Recovery code", "recoveryCode", "text", { autocomplete: "off" })
      : field("Code from your authenticator app", "code", "text", { inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxlength: "6" }),
    box,
    h("button", { type: "submit" }, "Verify"),
    h("p", {}, h("a", { href: "#", onclick: (e: Event) => { e.preventDefault(); renderMfaStep(mfaToken, !useRecovery, deviceToken); } },
      useRecovery ? "Use a code from your app instead" : "Use a recovery code instead")),
  );
  submit(form, box, async (v) => {
    const body: Record<string, string> = useRecovery ? { mfaToken, recoveryCode: v.recoveryCode.trim() } : { mfaToken, code: v.code.trim() };
    if (deviceToken) body.deviceToken = deviceToken;
    try {
      api.setTokens(await api.post<Tokens>("/api/auth/login/mfa", body));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        throw new ApiError(401, "That code did not work. Codes are single use; after 5 wrong codes, sign in again.");
      }
      throw e;
    }
    await start();
  });
  append(root, h("main", { class: "center" }, form));
  (form.querySelector("input") as HTMLInputElement).focus();
}

// ---------------------------------------------------------------- app shell

async function start(notice = "", noticeIsError = false): Promise<void> {
  try {
    me = await api.get<Me>("/api/users/me");
  } catch {
    api.setTokens(null);
    renderAuth("signin", notice, noticeIsError);
    return;
  }
  api.signedInAs(me);
  renderShell();
  if (notice) {
    clear(mainEl);
    append(mainEl, h("p", { class: `empty ${noticeIsError ? "error" : "notice"}`, role: noticeIsError ? "alert" : "status" }, notice));
  }
  socket?.stop();
  socket = new ChatSocket({
    token: () => api.accessToken,
    expiresAt: () => api.expiresAt,
    renew: () => api.refresh(),
    // Before each connection: a fresh token after a 4001 close (or when it
    // is about to expire), and a REST call that refreshes an expired one or
    // signs out when the session is gone.
    prepare: async (fresh) => {
      if (fresh) await api.refresh();
      await api.get("/api/users/me");
    },
  });
  api.onTokens = () => socket?.tokenChanged();
  socket.onFrame = onFrame;
  socket.onState = (s) => {
    statusEl.textContent = s === "online" ? "Connected" : s === "connecting" ? "Connecting…" : "Offline, reconnecting…";
    statusEl.className = `status ${s}`;
  };
  socket.onResync = () => {
    history.clear();
    void loadChats().then(() => { if (current) void openChat(current); });
  };
  socket.start();
  void loadBlocks();
  await loadChats();
  void refreshBadge();
  if (!badgeTimers) {
    badgeTimers = true;
    window.setInterval(() => { if (me) void refreshBadge(); }, 30_000);
    window.setInterval(() => { if (me && notificationsOpen) void refreshBadge(); }, 3_000);
  }
}

api.onSignedOut = () => renderAuth("signin", "Your session ended. Sign in again.");

function renderShell(): void {
  clear(root);
  document.title = "Chat";
  statusEl = h("span", { class: "status connecting", "aria-live": "polite" }, "Connecting…");
  badgeEl = h("span", { class: "badge", hidden: true });
  const header = h("header", { class: "top" },
    h("strong", { class: "brand" }, "Chat"),
    statusEl,
    h("span", { class: "spacer" }),
    h("button", { class: "link", onclick: () => renderNotifications(), "aria-label": "Notifications" }, "Notifications ", badgeEl),
    h("button", { class: "link", onclick: () => renderSettings() }, "Settings"),
    h("span", { class: "me" }, me?.displayName ?? ""),
    h("button", { class: "link", onclick: () => void signOut() }, "Sign out"),
  );
  listEl = h("ul", { class: "chats", "aria-label": "Chats" });
  const aside = h("aside", {}, startChatBox(), h("button", { onclick: () => renderNewGroup() }, "New group"), listEl);
  mainEl = h("section", { class: "main" }, h("p", { class: "empty" }, "Pick a chat, or start one by searching for a person."));
  append(root, header, h("div", { class: "layout" }, aside, mainEl));
}

async function signOut(): Promise<void> {
  try { await api.post("/api/auth/logout"); } catch { /* signing out locally anyway */ }
  api.setTokens(null);
  me = null;
  notificationsOpen = false;
  blocked.clear();
  chats.clear();
  history.clear();
  current = null;
  renderAuth("signin", "You are signed out.");
}

function startChatBox(): HTMLElement {
  const results = h("ul", { class: "results" });
  const input = h("input", { type: "search", placeholder: "Find people to chat with", "aria-label": "Find people" });
  let timer: number | undefined;
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      clear(results);
      const q = input.value.trim();
      if (!q) return;
      try {
        const found = await api.get<Profile[]>(`/api/users?search=${encodeURIComponent(q)}&limit=10`);
        for (const p of found.filter((p) => p.id !== me?.id)) {
          append(results, h("li", {}, h("button", {
            class: "person",
            onclick: async () => {
              let chat: Chat;
              try {
                chat = await api.post<Chat>("/api/chat", { userId: p.id });
              } catch (e) {
                // E.g. a 403: that person blocked you.
                results.querySelectorAll("li.error").forEach((el) => el.remove());
                append(results, h("li", { class: "error", role: "alert" }, errorText(e)));
                return;
              }
              chats.set(chat.id, chat);
              input.value = "";
              clear(results);
              renderList();
              await openChat(chat.id);
            },
          }, p.displayName, h("small", {}, ` @${p.username}`))));
        }
        if (!found.length) append(results, h("li", { class: "muted" }, "Nobody found"));
      } catch (e) {
        append(results, h("li", { class: "error" }, errorText(e)));
      }
    }, 250);
  });
  return h("div", { class: "search" }, input, results);
}

// ---------------------------------------------------------------- chats

function title(chat: Chat): string {
  if (chat.isGroup) return chat.name ?? "Group";
  const other = chat.members.find((m) => m.id !== me?.id);
  return other?.displayName ?? "Direct chat";
}

function otherMember(chat: Chat): Profile | undefined {
  return chat.isGroup ? undefined : chat.members.find((m) => m.id !== me?.id);
}

async function loadChats(): Promise<void> {
  const list = await api.get<Chat[]>("/api/chat");
  chats.clear();
  for (const c of list) chats.set(c.id, c);
  renderList();
}

function sortedChats(): Chat[] {
  return [...chats.values()].sort((a, b) =>
    (b.latestMessage?.createdAt ?? b.updatedAt).localeCompare(a.latestMessage?.createdAt ?? a.updatedAt));
}

function renderList(): void {
  clear(listEl);
  for (const chat of sortedChats()) {
    const other = otherMember(chat);
    const last = chat.latestMessage;
    append(listEl, h("li", {},
      h("button", {
        class: `chat${chat.id === current ? " active" : ""}`,
        onclick: () => void openChat(chat.id),
        "data-chat": chat.id,
      },
      h("span", { class: "title" },
        other ? h("span", { class: `dot${online.has(other.id) ? " on" : ""}`, title: online.has(other.id) ? "online" : "offline" }) : null,
        title(chat)),
      chat.unreadCount > 0 ? h("span", { class: "badge" }, String(chat.unreadCount)) : null,
      h("span", { class: "last" }, last ? (last.deleted ? "Message deleted" : `${last.sender.displayName}: ${last.content}`) : "No messages yet"),
      )));
  }
}

async function openChat(id: string): Promise<void> {
  notificationsOpen = false;
  current = id;
  const chat = chats.get(id);
  if (!chat) return;
  let state = history.get(id);
  if (!state || !state.loaded) {
    const page = await api.get<{ messages: Message[]; hasMore: boolean }>(`/api/chat/${id}/messages?limit=50`);
    state = { messages: page.messages.reverse(), hasMore: page.hasMore, loaded: true };
    history.set(id, state);
  }
  renderList();
  renderChat(chat, state);
  void markRead(chat);
}

async function markRead(chat: Chat): Promise<void> {
  const state = history.get(chat.id);
  const last = state?.messages[state.messages.length - 1];
  if (!last || !document.hasFocus() && document.visibilityState !== "visible") return;
  if (chat.unreadCount === 0 && seen.get(chat.id)?.get(me?.id ?? "") === last.id) return;
  try {
    await api.post(`/api/chat/${chat.id}/read`, { messageId: last.id });
    chat.unreadCount = 0;
    seen.set(chat.id, (seen.get(chat.id) ?? new Map()).set(me?.id ?? "", last.id));
    renderList();
  } catch { /* retried on the next view */ }
}

let messagesEl: HTMLElement | null = null;
let typingEl: HTMLElement | null = null;

function chatHeader(chat: Chat): HTMLElement {
  const other = otherMember(chat);
  return h("div", { class: "chat-header" },
    h("h2", {}, title(chat)),
    other ? h("span", { class: "presence" }, online.has(other.id) ? "online" : "") : h("span", { class: "muted" }, `${chat.members.length} members`),
    other && blocked.has(other.id) ? h("span", { class: "muted blocked-note" }, "You blocked them: they cannot write to you here.") : null,
    h("span", { class: "spacer" }),
    other ? blockButton(other, () => refreshOpenChat(chat.id)) : null,
    chat.isGroup ? h("button", { class: "link", onclick: () => renderMembers(chat) }, "Members") : null,
  );
}

// ---------------------------------------------------------------- blocking

async function loadBlocks(): Promise<void> {
  try {
    const list = await api.get<Profile[]>("/api/chat/blocks");
    blocked.clear();
    for (const p of list) blocked.set(p.id, p);
    const chat = current ? chats.get(current) : undefined;
    if (chat && !chat.isGroup) refreshOpenChat(chat.id);
  } catch { /* shown as not blocked; the settings page says why */ }
}

/** PUT or DELETE /api/chat/blocks/{id}; the local list follows. */
async function setBlocked(p: Profile, block: boolean): Promise<void> {
  if (block) {
    await api.put(`/api/chat/blocks/${encodeURIComponent(p.id)}`, {});
    blocked.set(p.id, p);
  } else {
    await api.del(`/api/chat/blocks/${encodeURIComponent(p.id)}`);
    blocked.delete(p.id);
  }
}

/** A Block / Unblock button for a person; errors show in `box` or as the button's title. */
function blockButton(p: Profile, after: () => void, box?: HTMLElement): HTMLButtonElement {
  const isBlocked = blocked.has(p.id);
  const button = h("button", {
    class: isBlocked ? "link" : "link danger-text",
    "aria-label": `${isBlocked ? "Unblock" : "Block"} ${p.displayName}`,
    "aria-pressed": isBlocked ? "true" : "false",
    onclick: async () => {
      button.disabled = true;
      try {
        await setBlocked(p, !isBlocked);
        after();
      } catch (e) {
        button.disabled = false;
        if (box) showError(box, e); else button.title = errorText(e);
      }
    },
  }, isBlocked ? "Unblock" : "Block");
  return button;
}

/** Re-renders the open chat's header only (a draft being typed stays). */
function refreshOpenChat(chatId: string): void {
  const chat = chats.get(chatId);
  const header = current === chatId ? mainEl.querySelector(".chat-header") : null;
  if (chat && header && messagesEl) header.replaceWith(chatHeader(chat));
}

function renderChat(chat: Chat, state: ChatState): void {
  clear(mainEl);
  const header = chatHeader(chat);
  messagesEl = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  messagesEl.addEventListener("scroll", () => {
    if (messagesEl && messagesEl.scrollTop < 40 && state.hasMore) void loadOlder(chat.id, state);
  });
  for (const m of state.messages) append(messagesEl, messageEl(chat, m));
  typingEl = h("p", { class: "typing", "aria-live": "polite" });
  append(mainEl, header, messagesEl, typingEl, composer(chat));
  renderTyping(chat.id);
  renderSeen(chat);
  messagesEl.scrollTop = messagesEl.scrollHeight;
}

let loadingOlder = false;
async function loadOlder(chatId: string, state: ChatState): Promise<void> {
  if (loadingOlder || !state.messages.length) return;
  loadingOlder = true;
  try {
    const oldest = state.messages[0];
    const page = await api.get<{ messages: Message[]; hasMore: boolean }>(
      `/api/chat/${chatId}/messages?before=${encodeURIComponent(oldest.id)}&limit=50`);
    state.hasMore = page.hasMore;
    const older = page.messages.reverse();
    state.messages = [...older, ...state.messages];
    const chat = chats.get(chatId);
    if (chat && current === chatId && messagesEl) {
      const before = messagesEl.scrollHeight;
      const first = messagesEl.firstChild;
      for (const m of older) messagesEl.insertBefore(messageEl(chat, m), first);
      messagesEl.scrollTop += messagesEl.scrollHeight - before;
    }
  } finally {
    loadingOlder = false;
  }
}

function messageEl(chat: Chat, m: Message): HTMLElement {
  const mine = m.sender.id === me?.id;
  const li = h("li", { class: `message${mine ? " mine" : ""}${m.deleted ? " deleted" : ""}`, "data-id": m.id },
    h("span", { class: "meta" }, h("b", {}, m.sender.displayName), ` ${time(m.createdAt)}`, m.editedAt && !m.deleted ? " (edited)" : ""),
    h("span", { class: "content" }, m.deleted ? "Message deleted" : m.content),
  );
  const isAdmin = chat.isGroup && chat.admins.includes(me?.id ?? "");
  if (!m.deleted && (mine || isAdmin)) {
    const actions = h("span", { class: "actions" });
    if (mine) append(actions, h("button", { class: "link", onclick: () => editMessage(chat, m, li) }, "Edit"));
    append(actions, h("button", {
      class: "link",
      onclick: async () => {
        if (!confirm("Delete this message for everyone?")) return;
        try { applyMessage(await api.del<Message>(`/api/chat/${chat.id}/messages/${m.id}`)); } catch (e) { alert(errorText(e)); }
      },
    }, "Delete"));
    append(li, actions);
  }
  return li;
}

function editMessage(chat: Chat, m: Message, li: HTMLElement): void {
  const input = h("textarea", { "aria-label": "Edit message", maxlength: "4000" });
  input.value = m.content;
  const box = errorBox();
  const form = h("form", { class: "edit" }, input, box,
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "link", onclick: () => li.replaceWith(messageEl(chat, m)) }, "Cancel"));
  submit(form, box, async () => {
    applyMessage(await api.patch<Message>(`/api/chat/${chat.id}/messages/${m.id}`, { content: input.value }));
  });
  li.replaceChildren(form);
  input.focus();
}

/** A message created, edited or deleted: into the history and the page. */
function applyMessage(m: Message): void {
  const state = history.get(m.chatId);
  const chat = chats.get(m.chatId);
  if (state) {
    const i = state.messages.findIndex((x) => x.id === m.id);
    if (i >= 0) state.messages[i] = m;
    else state.messages.push(m);
  }
  if (chat && (!chat.latestMessage || chat.latestMessage.id <= m.id)) chat.latestMessage = m;
  if (chat && current === m.chatId && messagesEl) {
    const existing = messagesEl.querySelector(`[data-id="${CSS.escape(m.id)}"]`);
    const el = messageEl(chat, m);
    if (existing) existing.replaceWith(el);
    else {
      const atBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 80;
      append(messagesEl, el);
      if (atBottom || m.sender.id === me?.id) messagesEl.scrollTop = messagesEl.scrollHeight;
    }
  }
}

function composer(chat: Chat): HTMLElement {
  const input = h("textarea", { placeholder: "Write a message", "aria-label": "Message", maxlength: "4000", rows: "2" });
  const box = errorBox();
  let typingSince = 0;
  let stopTimer: number | undefined;
  const stopTyping = () => {
    if (typingSince) socket?.send({ type: "typing", chatId: chat.id, state: "stop" });
    typingSince = 0;
  };
  input.addEventListener("input", () => {
    if (Date.now() - typingSince > 3000) {
      socket?.send({ type: "typing", chatId: chat.id, state: "start" });
      typingSince = Date.now();
    }
    window.clearTimeout(stopTimer);
    stopTimer = window.setTimeout(stopTyping, 4000);
  });
  const form = h("form", { class: "composer" }, input, h("button", { type: "submit" }, "Send"), box);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  submit(form, box, async () => {
    const content = input.value;
    if (!content.trim()) return;
    stopTyping();
    // One id for every attempt: a retry after a lost answer never duplicates.
    const clientMsgId = newClientMsgId();
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const m = await api.post<Message>(`/api/chat/${chat.id}/messages`, { content, clientMsgId });
        input.value = "";
        applyMessage(m);
        renderList();
        return;
      } catch (e) {
        lastError = e;
        if (!(e instanceof ApiError) || (e.status !== 0 && e.status < 500)) break;
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
    throw lastError;
  });
  return form;
}

function renderTyping(chatId: string): void {
  if (!typingEl || current !== chatId) return;
  const chat = chats.get(chatId);
  const who = [...(typing.get(chatId)?.keys() ?? [])]
    .map((id) => chat?.members.find((m) => m.id === id)?.displayName ?? "Someone");
  typingEl.textContent = who.length === 0 ? "" : `${who.join(", ")} ${who.length === 1 ? "is" : "are"} typing…`;
}

function renderSeen(chat: Chat): void {
  if (!messagesEl || current !== chat.id) return;
  messagesEl.querySelectorAll(".seen").forEach((e) => e.remove());
  const markers = seen.get(chat.id);
  if (!markers) return;
  const readers = [...markers.entries()].filter(([u]) => u !== me?.id);
  for (const [user, messageId] of readers) {
    const el = messagesEl.querySelector(`[data-id="${CSS.escape(messageId)}"]`);
    const name = chat.members.find((m) => m.id === user)?.displayName ?? "Someone";
    if (el) append(el, h("span", { class: "seen" }, `Seen by ${name}`));
  }
}

function renderMembers(chat: Chat): void {
  const isAdmin = chat.admins.includes(me?.id ?? "");
  const box = errorBox();
  const list = h("ul", { class: "members" });
  for (const m of chat.members) {
    append(list, h("li", {}, h("span", { class: `dot${online.has(m.id) ? " on" : ""}` }), m.displayName, ` @${m.username}`,
      chat.admins.includes(m.id) ? h("small", {}, " admin") : null,
      blocked.has(m.id) ? h("small", {}, " (blocked)") : null,
      m.id !== me?.id ? blockButton(m, () => renderMembers(chats.get(chat.id) ?? chat), box) : null,
      isAdmin && m.id !== me?.id ? h("button", {
        class: "link",
        onclick: async () => {
          try { const c = await api.del<Chat>(`/api/chat/${chat.id}/members/${m.id}`); chats.set(c.id, c); renderMembers(c); } catch (e) { showError(box, e); }
        },
      }, "Remove") : null));
  }
  const rename = h("form", { class: "inline" }, h("input", { name: "name", value: chat.name ?? "", "aria-label": "Group name", maxlength: "100", required: true }),
    h("button", { type: "submit" }, "Rename"));
  submit(rename, box, async (v) => { const c = await api.patch<Chat>(`/api/chat/${chat.id}`, { name: v.name }); chats.set(c.id, c); renderList(); renderMembers(c); });
  const add = h("form", { class: "inline" }, h("input", { name: "username", placeholder: "username to add", "aria-label": "Add member by username", required: true }),
    h("button", { type: "submit" }, "Add"));
  submit(add, box, async (v) => {
    const found = await api.get<Profile[]>(`/api/users?search=${encodeURIComponent(v.username.trim())}&limit=20`);
    const p = found.find((f) => f.username.toLowerCase() === v.username.trim().toLowerCase());
    if (!p) throw new ApiError(404, `Nobody is called @${v.username.trim()}.`);
    const c = await api.post<Chat>(`/api/chat/${chat.id}/members`, { userId: p.id });
    chats.set(c.id, c);
    renderMembers(c);
  });
  clear(mainEl);
  append(mainEl,
    h("div", { class: "chat-header" }, h("h2", {}, `${title(chat)}: members`), h("span", { class: "spacer" }),
      h("button", { class: "link", onclick: () => void openChat(chat.id) }, "Back to chat")),
    list, box,
    isAdmin ? rename : null,
    isAdmin ? add : null,
    h("button", {
      class: "danger",
      onclick: async () => {
        if (!confirm("Leave this group?")) return;
        try {
          await api.del(`/api/chat/${chat.id}/members/${me?.id}`);
          chats.delete(chat.id); current = null; renderList();
          clear(mainEl); append(mainEl, h("p", { class: "empty" }, "You left the group."));
        } catch (e) { showError(box, e); }
      },
    }, "Leave group"));
}

function renderNewGroup(): void {
  notificationsOpen = false;
  const box = errorBox();
  const form = h("form", { class: "card" },
    h("h2", {}, "New group"),
    field("Name", "name", "text", { maxlength: "100" }),
    h("label", {}, "Members (usernames, separated by commas)", h("input", { name: "members", required: true })),
    box, h("button", { type: "submit" }, "Create group"));
  submit(form, box, async (v) => {
    const ids: string[] = [];
    for (const name of v.members.split(",").map((s) => s.trim().replace(/^@/, "")).filter(Boolean)) {
      const found = await api.get<Profile[]>(`/api/users?search=${encodeURIComponent(name)}&limit=20`);
      const p = found.find((f) => f.username.toLowerCase() === name.toLowerCase());
      if (!p) throw new ApiError(404, `Nobody is called @${name}.`);
      ids.push(p.id);
    }
    const chat = await api.post<Chat>("/api/chat/group", { name: v.name, memberIds: ids });
    chats.set(chat.id, chat);
    await openChat(chat.id);
  });
  current = null;
  renderList();
  clear(mainEl);
  append(mainEl, form);
}

// ---------------------------------------------------------------- live frames

function onFrame(f: Frame): void {
  switch (f.type) {
    case "message.created":
    case "message.updated":
    case "message.deleted": {
      const m = f.message as Message;
      const chat = chats.get(m.chatId);
      if (!chat) { void loadChats(); return; }
      const isNew = f.type === "message.created" && !history.get(m.chatId)?.messages.some((x) => x.id === m.id)
        && chat.latestMessage?.id !== m.id;
      applyMessage(m);
      if (isNew && m.sender.id !== me?.id) {
        clearTyping(m.chatId, m.sender.id);
        if (current === m.chatId && document.visibilityState === "visible") void markRead(chat);
        else chat.unreadCount += 1;
        window.setTimeout(() => void refreshBadge(), 1000);
      }
      renderList();
      break;
    }
    case "chat.created":
    case "chat.updated": {
      const c = f.chat as Chat;
      void api.get<Chat>(`/api/chat/${c.id}`).then((full) => {
        chats.set(full.id, full);
        renderList();
        // Only the header: re-rendering the view would drop a draft being typed.
        const header = current === full.id ? mainEl.querySelector(".chat-header") : null;
        if (header && messagesEl) header.replaceWith(chatHeader(full));
      }).catch(() => undefined);
      break;
    }
    case "chat.member.added":
    case "chat.member.removed": {
      const chatId = String(f.chatId);
      if (f.type === "chat.member.removed" && f.userId === me?.id) {
        chats.delete(chatId);
        history.delete(chatId);
        if (current === chatId) { current = null; clear(mainEl); append(mainEl, h("p", { class: "empty" }, "You are no longer a member of that chat.")); }
        renderList();
        return;
      }
      void api.get<Chat>(`/api/chat/${chatId}`).then((c) => { chats.set(c.id, c); renderList(); }).catch(() => void loadChats());
      break;
    }
    case "typing": {
      const chatId = String(f.chatId);
      const user = String(f.userId);
      if (f.state === "start") {
        const timers = typing.get(chatId) ?? new Map<string, number>();
        window.clearTimeout(timers.get(user));
        timers.set(user, window.setTimeout(() => clearTyping(chatId, user), 6000));
        typing.set(chatId, timers);
        renderTyping(chatId);
      } else clearTyping(chatId, user);
      break;
    }
    case "read": {
      const chatId = String(f.chatId);
      seen.set(chatId, (seen.get(chatId) ?? new Map()).set(String(f.userId), String(f.messageId)));
      const chat = chats.get(chatId);
      if (chat && f.userId === me?.id) { chat.unreadCount = 0; renderList(); }
      if (chat) renderSeen(chat);
      break;
    }
    case "presence": {
      if (f.online) online.add(String(f.userId)); else online.delete(String(f.userId));
      renderList();
      const chat = current ? chats.get(current) : undefined;
      const presenceEl = mainEl.querySelector(".presence");
      if (chat && presenceEl && otherMember(chat)?.id === f.userId) presenceEl.textContent = f.online ? "online" : "";
      break;
    }
  }
}

function clearTyping(chatId: string, user: string): void {
  const timers = typing.get(chatId);
  if (!timers) return;
  window.clearTimeout(timers.get(user));
  timers.delete(user);
  renderTyping(chatId);
}

// ---------------------------------------------------------------- notifications

async function refreshBadge(): Promise<void> {
  try {
    const r = await api.get<{ notifications: Notification[] }>("/api/notifications?unreadOnly=true&limit=100");
    const changed = r.notifications.length !== unreadNotifications;
    unreadNotifications = r.notifications.length;
    if (changed && notificationsOpen) void renderNotifications();
    badgeEl.textContent = unreadNotifications >= 100 ? "99+" : String(unreadNotifications);
    badgeEl.hidden = unreadNotifications === 0;
  } catch { /* the badge waits for the next try */ }
}

async function renderNotifications(): Promise<void> {
  notificationsOpen = true;
  current = null;
  renderList();
  clear(mainEl);
  const list = h("ul", { class: "notifications", "aria-label": "Notifications" });
  append(mainEl, h("div", { class: "chat-header" }, h("h2", {}, "Notifications")), list);
  try {
    const r = await api.get<{ notifications: Notification[] }>("/api/notifications?limit=50");
    if (!r.notifications.length) append(list, h("li", { class: "muted" }, "Nothing yet."));
    for (const n of r.notifications) {
      append(list, h("li", { class: n.readAt ? "read" : "unread" },
        h("button", {
          class: "notification",
          onclick: async () => {
            try { await api.post(`/api/notifications/${n.id}/read`); } catch { /* opening anyway */ }
            void refreshBadge();
            if (n.chatId && chats.has(n.chatId)) await openChat(n.chatId); else void renderNotifications();
          },
        }, h("b", {}, n.title), h("span", {}, n.body), h("small", {}, time(n.createdAt)))));
    }
  } catch (e) {
    append(list, h("li", { class: "error" }, errorText(e)));
  }
}

// ---------------------------------------------------------------- settings

async function renderSettings(): Promise<void> {
  notificationsOpen = false;
  current = null;
  renderList();
  clear(mainEl);
  append(mainEl, h("div", { class: "chat-header" }, h("h2", {}, "Settings")));
  const email = h("section", { class: "card", "aria-label": "Email address" });
  const mfa = h("section", { class: "card", "aria-label": "Two-factor authentication" });
  const sessions = h("section", { class: "card", "aria-label": "Sessions" });
  const password = h("section", { class: "card", "aria-label": "Password" });
  const privacy = h("section", { class: "card", "aria-label": "Privacy" });
  const blocks = h("section", { class: "card", "aria-label": "Blocked people" });
  const prefs = h("section", { class: "card", "aria-label": "Notification settings" });
  append(mainEl, email, mfa, sessions, password, privacy, blocks, prefs);
  renderPassword(password);
  await Promise.all([renderEmail(email), renderMfa(mfa), renderSessions(sessions), renderPrivacy(privacy),
    renderBlocks(blocks), renderPreferences(prefs)]);
}

async function renderEmail(section: HTMLElement): Promise<void> {
  clear(section);
  append(section, h("h3", {}, "Email address"));
  const box = errorBox();
  try { me = await api.get<Me>("/api/users/me"); } catch (e) { showError(box, e); append(section, box); return; }
  const verified = me.emailVerified === true;
  append(section, h("p", {}, me.email, " ",
    h("b", { class: verified ? "notice" : "error", id: "email-status" }, verified ? "verified" : "not verified")));
  if (verified) return;
  const sent = h("p", { class: "notice", role: "status", hidden: true }, "Sent. Open the link in the email to verify the address.");
  const resend = h("button", {
    onclick: async () => {
      box.hidden = true;
      sent.hidden = true;
      resend.disabled = true;
      try {
        await api.post("/api/auth/email/verify/resend");
        sent.hidden = false;
      } catch (e) {
        showError(box, e); // a 429 says when to try again
      } finally {
        resend.disabled = false;
      }
    },
  }, "Resend the verification email");
  append(section, h("p", { class: "hint" }, "Digests and security emails go only to a verified address."), resend, sent, box);
}

const GROUP_ADDS: [GroupAdds, string][] = [
  ["everyone", "Everyone"],
  ["contacts", "Only people I have a 1:1 chat with"],
  ["nobody", "Nobody"],
];

async function renderPrivacy(section: HTMLElement): Promise<void> {
  clear(section);
  append(section, h("h3", {}, "Privacy"));
  const box = errorBox();
  let privacy: { groupAdds: GroupAdds };
  try { privacy = await api.get("/api/chat/privacy"); } catch (e) { showError(box, e); append(section, box); return; }
  const form = h("form", { class: "stack", "aria-label": "Who can add me to groups" },
    h("fieldset", {}, h("legend", {}, "Who can add me to groups"),
      ...GROUP_ADDS.map(([value, label]) => h("label", { class: "check" },
        h("input", { type: "radio", name: "groupAdds", value, checked: privacy.groupAdds === value }), label))),
    h("button", { type: "submit" }, "Save privacy"));
  const saved = h("p", { class: "notice", role: "status", hidden: true }, "Saved.");
  submit(form, box, async (v) => {
    saved.hidden = true;
    privacy = await api.put<{ groupAdds: GroupAdds }>("/api/chat/privacy", { groupAdds: v.groupAdds });
    saved.hidden = false;
  });
  append(section, form, box, saved);
}

async function renderBlocks(section: HTMLElement): Promise<void> {
  clear(section);
  append(section, h("h3", {}, "Blocked people"));
  const box = errorBox();
  try {
    const list = await api.get<Profile[]>("/api/chat/blocks");
    blocked.clear();
    for (const p of list) blocked.set(p.id, p);
  } catch (e) { showError(box, e); append(section, box); return; }
  if (!blocked.size) {
    append(section, h("p", { class: "muted" }, "Nobody. Block someone from your 1:1 chat with them or from a group's member list."), box);
    return;
  }
  const ul = h("ul", { class: "blocks", "aria-label": "Blocked people" });
  for (const p of blocked.values()) {
    append(ul, h("li", {}, h("span", {}, p.displayName, h("small", {}, ` @${p.username}`)),
      blockButton(p, () => void renderBlocks(section), box)));
  }
  append(section, h("p", { class: "hint" }, "They cannot start a chat with you, write in your 1:1 chat or add you to groups."), ul, box);
}

function recoveryCodesView(codes: string[]): HTMLElement {
  const blob = new Blob([`Recovery codes for ${me?.username}\n\n${codes.join("\n")}\n`], { type: "text/plain" });
  return h("div", { class: "codes" },
    h("p", {}, "Save these recovery codes somewhere safe. Each works once, and they are shown only now."),
    h("ol", { class: "recovery-codes" }, ...codes.map((c) => h("li", {}, h("code", {}, c)))),
    h("a", { href: URL.createObjectURL(blob), download: "recovery-codes.txt", class: "button" }, "Download codes"));
}

async function renderMfa(section: HTMLElement): Promise<void> {
  clear(section);
  append(section, h("h3", {}, "Two-factor authentication"));
  const box = errorBox();
  let status: { enabled: boolean; recoveryCodesRemaining: number };
  try { status = await api.get("/api/auth/mfa"); } catch (e) { showError(box, e); append(section, box); return; }
  if (!status.enabled) {
    // Changing security settings needs the password again (api.md): a
    // stolen access token alone cannot enrol someone else's authenticator.
    const setupForm = h("form", { class: "stack", "aria-label": "Set up two-factor authentication" },
      field("Your password", "password", "password", { autocomplete: "current-password" }),
      h("button", { type: "submit" }, "Set up"));
    submit(setupForm, box, async (v) => {
      const password = v.password;
      const setup = await api.post<{ secret: string; otpauthUri: string; qrSvg: string }>("/api/auth/mfa/totp/setup", { password });
      clear(section);
      // The password just checked goes with the code; if the server refuses
      // it (changed meanwhile), the form asks for it again.
      const passwordField = h("label", { hidden: true }, "Your password",
        h("input", { name: "password", type: "password", autocomplete: "current-password" }));
      const form = h("form", { class: "inline" },
        field("Code from the app", "code", "text", { inputmode: "numeric", pattern: "[0-9]{6}", maxlength: "6", autocomplete: "one-time-code" }),
        passwordField,
        h("button", { type: "submit" }, "Turn on"));
      const err = errorBox();
      submit(form, err, async (f) => {
        const body = { code: f.code.trim(), password: passwordField.hidden ? password : f.password };
        try {
          const r = await api.post<{ recoveryCodes: string[] }>("/api/auth/mfa/totp/enable", body);
          clear(section);
          append(section, h("h3", {}, "Two-factor authentication is on"), recoveryCodesView(r.recoveryCodes),
            h("button", { onclick: () => void renderMfa(section) }, "Done"));
        } catch (e) {
          if (e instanceof ApiError && "password" in e.fields && passwordField.hidden) {
            passwordField.hidden = false;
            (passwordField.querySelector("input") as HTMLInputElement).required = true;
          }
          throw e;
        }
      });
      append(section, h("h3", {}, "Set up two-factor authentication"),
        h("p", {}, "Scan this code with your authenticator app, or enter the key by hand."),
        svgImage(setup.qrSvg, "QR code for your authenticator app"),
        h("p", {}, "Key: ", h("code", { id: "mfa-secret" }, setup.secret)),
        form, err);
    });
    append(section, h("p", {}, "Off. Turn it on to require a code from an authenticator app when you sign in."), setupForm, box);
    return;
  }
  const regen = h("form", { class: "stack" }, h("h4", {}, "New recovery codes"),
    field("Password", "password", "password", { autocomplete: "current-password" }),
    field("Code from the app", "code", "text", { inputmode: "numeric", maxlength: "6" }),
    h("button", { type: "submit" }, "Replace recovery codes"));
  const regenBox = errorBox();
  submit(regen, regenBox, async (v) => {
    const r = await api.post<{ recoveryCodes: string[] }>("/api/auth/mfa/recovery-codes", { password: v.password, code: v.code.trim() });
    regen.replaceWith(recoveryCodesView(r.recoveryCodes));
  });
  const disable = h("form", { class: "stack" }, h("h4", {}, "Turn off"),
    field("Password", "password", "password", { autocomplete: "current-password" }),
    h("label", {}, "Code from the app, or a recovery code", h("input", { name: "code", required: true, autocomplete: "off" })),
    h("button", { type: "submit", class: "danger" }, "Turn off two-factor authentication"));
  const disableBox = errorBox();
  submit(disable, disableBox, async (v) => {
    const code = v.code.trim();
    await api.post("/api/auth/mfa/disable", /^[0-9]{6}$/.test(code) ? { password: v.password, code } : { password: v.password, recoveryCode: code });
    await renderMfa(section);
  });
  append(section, h("p", {}, `On. ${status.recoveryCodesRemaining} recovery codes left.`), regen, regenBox, disable, disableBox);
}

async function renderSessions(section: HTMLElement): Promise<void> {
  clear(section);
  append(section, h("h3", {}, "Where you are signed in"));
  const box = errorBox();
  try {
    const list = await api.get<Session[]>("/api/auth/sessions");
    const ul = h("ul", { class: "sessions" });
    for (const s of list) {
      append(ul, h("li", {},
        h("span", {}, s.userAgent ?? "Unknown device", h("small", {}, ` ${s.ip ?? ""}, last active ${time(s.lastSeenAt)}`)),
        s.current ? h("b", {}, " (this device)") : h("button", {
          class: "link",
          onclick: async () => {
            try { await api.del(`/api/auth/sessions/${s.id}`); await renderSessions(section); } catch (e) { showError(box, e); }
          },
        }, "Sign out")));
    }
    append(section, ul, box);
  } catch (e) { showError(box, e); append(section, box); }
}

function renderPassword(section: HTMLElement): void {
  const box = errorBox();
  const form = h("form", { class: "stack" }, h("h3", {}, "Password"),
    field("Current password", "currentPassword", "password", { autocomplete: "current-password" }),
    field("New password", "newPassword", "password", { autocomplete: "new-password", minlength: "8" }),
    h("button", { type: "submit" }, "Change password"));
  const done = h("p", { class: "notice", hidden: true }, "Password changed; your other sessions were signed out.");
  submit(form, box, async (v) => {
    await api.post("/api/auth/password", { currentPassword: v.currentPassword, newPassword: v.newPassword });
    form.reset();
    done.hidden = false;
  });
  append(section, form, box, done);
}

async function renderPreferences(section: HTMLElement): Promise<void> {
  clear(section);
  append(section, h("h3", {}, "Notifications"));
  const box = errorBox();
  let p: Preferences;
  try { p = await api.get<Preferences>("/api/notifications/preferences"); } catch (e) { showError(box, e); append(section, box); return; }
  const check = (name: string, label: string, on: boolean) => h("label", { class: "check" }, h("input", { type: "checkbox", name, checked: on }), label);
  const muted = h("fieldset", {}, h("legend", {}, "Muted chats (mentions still notify you)"),
    ...sortedChats().map((c) => check(`mute:${c.id}`, title(c), p.mutedChatIds.includes(c.id))));
  const form = h("form", { class: "stack" },
    check("push", "Push notifications", p.push),
    check("pushPreviews", "Show message text in push notifications", p.pushPreviews !== false),
    check("email", "Email me about unread messages", p.email),
    h("label", {}, "Email after (minutes unread)", h("input", { type: "number", name: "delay", min: "0", max: "1440", value: String(Math.round(p.emailDelaySeconds / 60)) })),
    muted,
    h("button", { type: "submit" }, "Save"));
  const saved = h("p", { class: "notice", hidden: true }, "Saved.");
  submit(form, box, async () => {
    const get = (n: string) => (form.elements.namedItem(n) as HTMLInputElement).checked;
    const mutedIds = sortedChats().filter((c) => get(`mute:${c.id}`)).map((c) => c.id);
    const minutes = Number((form.elements.namedItem("delay") as HTMLInputElement).value);
    await api.put("/api/notifications/preferences", {
      push: get("push"), email: get("email"), pushPreviews: get("pushPreviews"),
      emailDelaySeconds: Math.max(0, Math.min(86400, Math.round(minutes * 60))), mutedChatIds: mutedIds,
    });
    saved.hidden = false;
  });
  append(section, form, box, saved, pushControl());
}

function pushControl(): HTMLElement {
  const out = h("p", { class: "push" });
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    append(out, "This browser cannot receive push notifications.");
    return out;
  }
  const box = errorBox();
  append(out, h("button", {
    onclick: async () => {
      try {
        const permission = await Notification.requestPermission();
        if (permission !== "granted") throw new ApiError(0, "Notifications are blocked for this site in the browser.");
        const registration = await navigator.serviceWorker.register("/sw.js");
        const { publicKey } = await api.get<{ publicKey: string }>("/api/notifications/vapid-public-key");
        const subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64UrlBytes(publicKey) });
        await api.post("/api/notifications/push-subscriptions", subscription.toJSON());
        out.replaceChildren("Push notifications are on for this browser.");
      } catch (e) { showError(box, e instanceof ApiError ? e : new ApiError(0, String(e))); }
    },
  }, "Turn on push for this browser"), box);
  return out;
}

function base64UrlBytes(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=");
  const raw = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// ---------------------------------------------------------------- boot

/**
 * The mailed link `/verify-email?token=…`: the token leaves the address
 * bar (and the history) at once, then is redeemed; the answer is shown on
 * the page that follows.
 */
async function verifyEmailFromLink(): Promise<{ text: string; error: boolean } | null> {
  if (location.pathname !== "/verify-email") return null;
  const token = new URLSearchParams(location.search).get("token");
  window.history.replaceState(null, "", "/");
  if (!token) return { text: "That verification link is incomplete. Copy the whole link from the email.", error: true };
  try {
    // The link's token is the proof: no bearer token, no refresh.
    await api.request("POST", "/api/auth/email/verify", { token }, false, false);
    return { text: "Your email address is verified.", error: false };
  } catch (e) {
    if (e instanceof ApiError && e.status === 400) {
      return { text: "That verification link is invalid, used or expired. Sign in and send a new one from Settings.", error: true };
    }
    return { text: `The email address could not be verified: ${errorText(e)}`, error: true };
  }
}

async function boot(): Promise<void> {
  const verified = await verifyEmailFromLink();
  if (api.signedIn) await start(verified?.text, verified?.error);
  else renderAuth("signin", verified?.text, verified?.error);
}

void boot();
