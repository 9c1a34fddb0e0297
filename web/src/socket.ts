// The live connection: authenticates with a first frame (browsers cannot
// set headers on a WebSocket), resumes from the last cursor it processed
// after every reconnect (to whichever instance the gateway picks), and
// reconnects with backoff when the network drops.

export type Frame = { type: string; cursor?: string; [key: string]: unknown };

export class ChatSocket {
  private ws: WebSocket | null = null;
  private cursor: string | null = null;
  private attempt = 0;
  private stopped = false;
  private pinger: number | undefined;
  onFrame: (f: Frame) => void = () => {};
  onState: (state: "connecting" | "online" | "offline") => void = () => {};
  /** The server cannot replay what we missed: refetch over REST. */
  onResync: () => void = () => {};

  /** `prepare` runs before each connection (e.g. refreshing the token). */
  constructor(private token: () => string, private prepare: () => Promise<void> = async () => {}) {}

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearInterval(this.pinger);
    this.ws?.close(1000);
    this.ws = null;
  }

  get open(): boolean { return this.ws?.readyState === WebSocket.OPEN; }

  send(frame: Record<string, unknown>): boolean {
    if (!this.open || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private async connect(): Promise<void> {
    this.onState("connecting");
    await this.prepare().catch(() => undefined);
    if (this.stopped) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.token() }));
    ws.onmessage = (e) => {
      let frame: Frame;
      try { frame = JSON.parse(String(e.data)) as Frame; } catch { return; }
      if (frame.type === "ready") {
        this.attempt = 0;
        this.onState("online");
        // Resume from the last cursor; without one, any frame ends the
        // server's resume window so live frames are not held back.
        ws.send(JSON.stringify(this.cursor ? { type: "resume", cursor: this.cursor } : { type: "ping" }));
        window.clearInterval(this.pinger);
        this.pinger = window.setInterval(() => this.send({ type: "ping" }), 20_000);
        return;
      }
      if (frame.type === "resync") { this.onResync(); return; }
      if (typeof frame.cursor === "string") this.cursor = frame.cursor;
      this.onFrame(frame);
    };
    ws.onclose = () => {
      window.clearInterval(this.pinger);
      if (this.ws === ws) this.ws = null;
      if (this.stopped) return;
      this.onState("offline");
      const delay = Math.min(30_000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      window.setTimeout(() => { if (!this.stopped) void this.connect(); }, delay);
    };
  }

  /** The next reconnect starts from here (after a REST refetch). */
  forgetCursor(): void { this.cursor = null; }
}
