// The REST API of api.md behind one origin (the gateway). Tokens live in
// sessionStorage (per tab, gone with it); an expired access token is
// refreshed once, with a single refresh in flight at a time, because
// refresh tokens are single use.

export interface Profile { id: string; username: string; displayName: string; avatarUrl: string | null }
export interface Me extends Profile { email: string; mfaEnabled: boolean }
export interface Message {
  id: string; chatId: string; sender: Profile; content: string; clientMsgId: string | null;
  createdAt: string; editedAt: string | null; deleted: boolean;
}
export interface Chat {
  id: string; isGroup: boolean; name: string | null; members: Profile[]; admins: string[];
  latestMessage: Message | null; unreadCount: number; createdAt: string; updatedAt: string;
}
export interface Tokens { accessToken: string; refreshToken: string }
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

export class Api {
  private tokens: Tokens | null = null;
  private refreshing: Promise<boolean> | null = null;
  onSignedOut: () => void = () => {};

  constructor() {
    const saved = sessionStorage.getItem(STORE);
    if (saved) this.tokens = JSON.parse(saved) as Tokens;
  }

  get signedIn(): boolean { return this.tokens !== null; }
  get accessToken(): string { return this.tokens?.accessToken ?? ""; }

  setTokens(t: Tokens | null): void {
    this.tokens = t ? { accessToken: t.accessToken, refreshToken: t.refreshToken } : null;
    if (this.tokens) sessionStorage.setItem(STORE, JSON.stringify(this.tokens));
    else sessionStorage.removeItem(STORE);
  }

  async request<T>(method: string, path: string, body?: unknown, retry = true): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.tokens) headers["Authorization"] = `Bearer ${this.tokens.accessToken}`;
    let response: Response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
    }
    if (response.status === 401 && retry && this.tokens && !path.startsWith("/api/auth/login")) {
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
      throw new ApiError(response.status, retryAfter ? `${detail} Try again in ${retryAfter} s.` : detail, fields);
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
