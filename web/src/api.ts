// The REST API of api.md behind one origin (the gateway). Tokens live in
// sessionStorage (per tab, gone with it); an expired access token is
// refreshed once, with a single refresh in flight at a time, because
// refresh tokens are single use. Device tokens (one per account, 90 days)
// live in localStorage: a login that presents one is not blocked by the
// lockout that strangers' wrong guesses cause.

export interface Profile { id: string; username: string; displayName: string; avatarUrl: string | null }
export interface Me extends Profile { email: string; emailVerified?: boolean; mfaEnabled: boolean }
export interface Message {
  id: string; chatId: string; sender: Profile; content: string; clientMsgId: string | null;
  createdAt: string; editedAt: string | null; deleted: boolean;
}
export interface Chat {
  id: string; isGroup: boolean; name: string | null; members: Profile[]; admins: string[];
  latestMessage: Message | null; unreadCount: number; createdAt: string; updatedAt: string;
}
export interface Tokens { accessToken: string; refreshToken: string; expiresIn?: number; deviceToken?: string; user?: Me }
export type GroupAdds = "everyone" | "contacts" | "nobody";
export interface Notification {
  id: string; kind: string; chatId: string | null; messageId: string | null;
  title: string; body: string; createdAt: string; readAt: string | null;
}
export interface Preferences {
  push: boolean; email: boolean; emailDelaySeconds: number; mutedChatIds: string[]; pushPreviews?: boolean;
}
export interface Session { id: string; createdAt: string; lastSeenAt: string; userAgent: string | null; ip: string | null; current: boolean }

export class ApiError extends Error {
  constructor(public status: number, message: string, public fields: Record<string, string> = {}) {
    super(message);
  }
}

const STORE = "chat.tokens";
const DEVICES = "chat.devices";

interface Stored { accessToken: string; refreshToken: string; expiresAt: number | null }
interface Device { token: string; username: string; email: string }

/** When a JWT access token expires (ms since the epoch), from its `exp` claim. */
function jwtExpiry(token: string): number | null {
  try {
    const part = token.split(".")[1];
    if (!part) return null;
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch {
    return null;
  }
}

function loadDevices(): Record<string, Device> {
  try {
    const raw = localStorage.getItem(DEVICES);
    const parsed = raw ? JSON.parse(raw) as unknown : {};
    return parsed && typeof parsed === "object" ? parsed as Record<string, Device> : {};
  } catch {
    return {};
  }
}

export class Api {
  private tokens: Stored | null = null;
  private refreshing: Promise<boolean> | null = null;
  /** A device token whose account is not known yet (login/mfa answers without a user). */
  private pendingDevice: string | null = null;
  onSignedOut: () => void = () => {};
  /** Called after every change of the access token (sign-in, refresh). */
  onTokens: () => void = () => {};

  constructor() {
    const saved = sessionStorage.getItem(STORE);
    if (saved) {
      const t = JSON.parse(saved) as Stored;
      this.tokens = { accessToken: t.accessToken, refreshToken: t.refreshToken, expiresAt: t.expiresAt ?? jwtExpiry(t.accessToken) };
    }
  }

  get signedIn(): boolean { return this.tokens !== null; }
  get accessToken(): string { return this.tokens?.accessToken ?? ""; }
  /** When the current access token expires (ms since the epoch), if known. */
  get expiresAt(): number | null { return this.tokens?.expiresAt ?? null; }

  setTokens(t: Tokens | null): void {
    if (t) {
      // expiresIn counts from now, so a skewed clock does not matter; the
      // token's own claim is the fallback.
      const fromAnswer = typeof t.expiresIn === "number" && t.expiresIn > 0 ? Date.now() + t.expiresIn * 1000 : null;
      this.tokens = { accessToken: t.accessToken, refreshToken: t.refreshToken, expiresAt: fromAnswer ?? jwtExpiry(t.accessToken) };
      if (t.deviceToken) this.rememberDevice(t.deviceToken, t.user);
    } else this.tokens = null;
    if (this.tokens) sessionStorage.setItem(STORE, JSON.stringify(this.tokens));
    else sessionStorage.removeItem(STORE);
    if (this.tokens) this.onTokens();
  }

  /** Keeps the device token of an account (replacing an older one). */
  rememberDevice(token: string, user?: Me | null): void {
    if (!user) { this.pendingDevice = token; return; }
    const devices = loadDevices();
    devices[user.id] = { token, username: user.username.toLowerCase(), email: user.email.toLowerCase() };
    this.pendingDevice = null;
    try { localStorage.setItem(DEVICES, JSON.stringify(devices)); } catch { /* storage full or off: no device token */ }
  }

  /** The account is known now (GET /api/users/me): a pending device token is kept for it. */
  signedInAs(user: Me): void {
    if (this.pendingDevice) this.rememberDevice(this.pendingDevice, user);
  }

  /** This device's token for the account a login names (username or email), if any. */
  deviceTokenFor(login: string): string | undefined {
    const l = login.trim().toLowerCase();
    return Object.values(loadDevices()).find((d) => d && (d.username === l || d.email === l))?.token;
  }

  /** Forgets a device token the server no longer takes. */
  forgetDevice(token: string): void {
    const devices = loadDevices();
    for (const [id, d] of Object.entries(devices)) if (d?.token === token) delete devices[id];
    try { localStorage.setItem(DEVICES, JSON.stringify(devices)); } catch { /* nothing kept */ }
  }

  async request<T>(method: string, path: string, body?: unknown, retry = true, auth = true): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.tokens && auth) headers["Authorization"] = `Bearer ${this.tokens.accessToken}`;
    let response: Response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
    }
    if (response.status === 401 && retry && auth && this.tokens && !path.startsWith("/api/auth/login")) {
      if (await this.refresh()) return this.request<T>(method, path, body, false);
      this.setTokens(null);
      this.onSignedOut();
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    const data = text ? JSON.parse(text) : undefined;
    if (!response.ok) {
      const fields: Record<string, string> = {};
      for (const e of (data?.errors ?? []) as { field: string; message: string }[]) fields[e.field] = e.message;
      const detail = data?.detail ?? data?.title ?? `Request failed (${response.status})`;
      const retryAfter = response.headers.get("Retry-After");
      const sentence = /[.!?]$/.test(detail) ? detail : `${detail}.`;
      throw new ApiError(response.status, retryAfter ? `${sentence} Try again in ${retryAfter} s.` : detail, fields);
    }
    return data as T;
  }

  /** One refresh at a time: a refresh token works once. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const refreshToken = this.tokens?.refreshToken;
        if (!refreshToken) return false;
        try {
          const r = await fetch("/api/auth/refresh", {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ refreshToken }),
          });
          if (!r.ok) return false;
          // Still the session that asked (not signed out meanwhile)?
          if (this.tokens?.refreshToken !== refreshToken) return this.tokens !== null;
          this.setTokens(await r.json());
          return true;
        } catch {
          return false;
        }
      })().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  get<T>(path: string) { return this.request<T>("GET", path); }
  post<T>(path: string, body?: unknown) { return this.request<T>("POST", path, body ?? {}); }
  put<T>(path: string, body: unknown) { return this.request<T>("PUT", path, body); }
  patch<T>(path: string, body: unknown) { return this.request<T>("PATCH", path, body); }
  del<T>(path: string) { return this.request<T>("DELETE", path); }
}

export function newClientMsgId(): string {
  return crypto.randomUUID();
}
