// The live connection: authenticates with a first frame (browsers cannot
// set headers on a WebSocket), resumes from the last cursor it processed
// after every reconnect (to whichever instance the gateway picks), and
// reconnects with backoff when the network drops.
//
// The server closes a socket whose access token expires (4001) unless it
// was sent a fresh one first, so a minute before expiry the socket has the
// token refreshed and sends `{"type": "auth", "token"}` on the open
// connection; a token refreshed for a REST call is sent the same way. After
// a 4001 close it reconnects at once with a freshly refreshed token.

export type Frame = { type: string; cursor?: string; [key: string]: unknown };

export interface SocketAuth {
  /** The current access token. */
  token: () => string;
  /** When the current access token expires (ms since the epoch), if known. */
  expiresAt: () => number | null;
  /** Runs before each connection; `fresh`: the token must be refreshed first. */
  prepare: (fresh: boolean) => Promise<void>;
  /** Refreshes the access token (one refresh in flight); false if it could not. */
  renew: () => Promise<boolean>;
}

/** Refresh this long before the access token expires. */
const RENEW_BEFORE_MS = 60_000;
/** Close code of a socket whose access token expired. */
const TOKEN_EXPIRED = 4001;

export class ChatSocket {
  private ws: WebSocket | null = null;
  private cursor: string | null = null;
  private attempt = 0;
  private stopped = false;
  private pinger: number | undefined;
  private renewer: number | undefined;
  /** The token this socket last authenticated with ("" before `ready`). */
  private sentToken = "";
  /** The next connection refreshes the token first (after a 4001 close). */
  private mustRefresh = false;
  onFrame: (f: Frame) => void = () => {};
  onState: (state: "connecting" | "online" | "offline") => void = () => {};
  /** The server cannot replay what we missed: refetch over REST. */
  onResync: () => void = () => {};

  constructor(private auth: SocketAuth) {}

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearInterval(this.pinger);
    window.clearTimeout(this.renewer);
    this.ws?.close(1000);
    this.ws = null;
  }

  get open(): boolean { return this.ws?.readyState === WebSocket.OPEN; }

  send(frame: Record<string, unknown>): boolean {
    if (!this.open || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** The access token changed (refreshed for REST, or by the timer): the open socket gets it. */
  tokenChanged(): void {
    const token = this.auth.token();
    if (!this.ws || !this.open || !this.sentToken || !token || token === this.sentToken) return;
    this.ws.send(JSON.stringify({ type: "auth", token }));
    this.sentToken = token;
    this.scheduleRenew(this.ws);
  }

  /** A timer that refreshes the token shortly before it expires and sends it on `ws`. */
  private scheduleRenew(ws: WebSocket): void {
    window.clearTimeout(this.renewer);
    const expiresAt = this.auth.expiresAt();
    if (expiresAt === null) return; // Unknown: a 4001 close will tell, and we reconnect.
    // A little jitter so that several tabs do not refresh in the same instant.
    const delay = Math.max(1_000, expiresAt - Date.now() - RENEW_BEFORE_MS - Math.random() * 10_000);
    this.renewer = window.setTimeout(async () => {
      if (this.ws !== ws || this.stopped) return;
      const left = (this.auth.expiresAt() ?? 0) - Date.now();
      // A REST call may have refreshed it meanwhile; otherwise refresh now.
      if (left < RENEW_BEFORE_MS + 15_000 && !(await this.auth.renew().catch(() => false))) {
        // Could not refresh (network, or the session ended): try again
        // shortly while the token lasts; the server's 4001 comes otherwise.
        if (this.ws === ws && !this.stopped && (this.auth.expiresAt() ?? 0) - Date.now() > 5_000) {
          this.renewer = window.setTimeout(() => this.scheduleRenew(ws), 5_000);
        }
        return;
      }
      if (this.ws !== ws || this.stopped) return;
      if (this.auth.token() !== this.sentToken) this.tokenChanged();
      else this.scheduleRenew(ws);
    }, delay);
  }

  private async connect(): Promise<void> {
    this.onState("connecting");
    const expiresAt = this.auth.expiresAt();
    const fresh = this.mustRefresh || (expiresAt !== null && expiresAt - Date.now() < 30_000);
    this.mustRefresh = false;
    await this.auth.prepare(fresh).catch(() => undefined);
    if (this.stopped) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    this.sentToken = "";
    let authenticated = false;
    ws.onopen = () => {
      const token = this.auth.token();
      ws.send(JSON.stringify({ type: "auth", token }));
      this.sentToken = token;
    };
    ws.onmessage = (e) => {
      let frame: Frame;
      try { frame = JSON.parse(String(e.data)) as Frame; } catch { return; }
      if (frame.type === "ready") {
        // A server may confirm a re-authentication with another `ready`:
        // resume is accepted once per socket, so only the first one counts.
        if (authenticated) return;
        authenticated = true;
        this.attempt = 0;
        this.onState("online");
        // Resume from the last cursor; without one, any frame ends the
        // server's resume window so live frames are not held back.
        ws.send(JSON.stringify(this.cursor ? { type: "resume", cursor: this.cursor } : { type: "ping" }));
        window.clearInterval(this.pinger);
        this.pinger = window.setInterval(() => this.send({ type: "ping" }), 20_000);
        // A token refreshed while connecting goes out now; else the timer.
        if (this.auth.token() !== this.sentToken) this.tokenChanged();
        else this.scheduleRenew(ws);
        return;
      }
      if (frame.type === "resync") { this.onResync(); return; }
      if (frame.type === "error" && frame.code === "unauthorized" && frame.clientMsgId === undefined) {
        // The server refused our token (e.g. a re-authentication): start over with a fresh one.
        this.mustRefresh = true;
        ws.close(4000);
        return;
      }
      if (typeof frame.cursor === "string") this.cursor = frame.cursor;
      this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      window.clearInterval(this.pinger);
      window.clearTimeout(this.renewer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.sentToken = "";
      if (this.stopped) return;
      this.onState("offline");
      let delay = Math.min(30_000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      if (ev.code === TOKEN_EXPIRED || this.mustRefresh) {
        // Not a network problem: reconnect at once with a fresh token (the
        // backoff still applies if it keeps happening without a `ready`).
        this.mustRefresh = true;
        if (this.attempt === 0) delay = 100;
      }
      this.attempt += 1;
      window.setTimeout(() => { if (!this.stopped) void this.connect(); }, delay);
    };
  }

  /** The next reconnect starts from here (after a REST refetch). */
  forgetCursor(): void { this.cursor = null; }
}
