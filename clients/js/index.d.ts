// Type declarations of @rig-go/client, written by hand (the package is
// plain JavaScript with no build step).

export type Transport = "sse" | "websocket" | "longpoll";

export interface ConnectOptions {
  /** The edge's base URL ("https://push.example.com", or "/" for the page's origin). */
  url: string;
  /** A JWT for the edge. Give this or getToken. */
  token?: string;
  /** Returns a fresh JWT: called first when there is no token, and on token_expired or a 401. */
  getToken?: () => string | Promise<string>;
  /** Whose messages to receive (users[]); default: the token's own user. */
  users?: string[];
  /** Transports in the order they are tried; default ["sse", "websocket", "longpoll"]. */
  transports?: Transport[];
  /** Resume after this id (a message id, or a seq:<n> position) on the first connection. */
  lastEventId?: string;
  /** Milliseconds until the connected event before the transport counts as failed (10000). */
  connectTimeout?: number;
  /** SSE: milliseconds without a byte before the stream counts as dead (35000). */
  idleTimeout?: number;
  /** Long-polling: milliseconds one poll may take (40000; the edge answers within 25000). */
  pollTimeout?: number;
  /** Reconnection delays: exponential from min to max milliseconds, with jitter (500, 30000). */
  backoff?: { min?: number; max?: number };
  /** A connection that lasted this many milliseconds resets the backoff (5000). */
  healthyAfter?: number;
  /** Failed attempts in a row before the next transport is tried (3). */
  transportRetries?: number;
  /** How many recent message ids are remembered to drop duplicates (1000). */
  dedupWindow?: number;
  /** After an edge's reconnect request, reconnect within this many milliseconds (500). */
  reconnectSpread?: number;
  /** A WebSocket constructor, where there is no global one (Node 20 without --experimental-websocket). */
  WebSocket?: new (url: string) => WebSocket;
  /** A fetch function; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** A source of randomness in [0, 1) for the jitter; default Math.random. */
  random?: () => number;
}

export interface Message<T = unknown> {
  /** The event id (ingest's ULID, a publisher's Nats-Msg-Id, or seq:<n>). */
  id: string;
  /** The payload: the JSON the back-end sent, or its text when it is not JSON. */
  data: T;
}

export interface ClientEvents {
  /** A connection started (each time one does). */
  connected: { transport: Transport; users?: string[]; lastEventId?: string };
  /** A message, once, in order. */
  message: Message;
  /** Messages may be missing before what follows: id is the one the client resumed after. */
  gap: { id: string };
  heartbeat: { transport: Transport };
  /** The session was blacklisted; the client has stopped. */
  session_killed: { data: unknown };
  /** The token expired; the client reconnects with getToken's next one, or stops without getToken. */
  token_expired: { data: unknown };
  /** The connection ended; the next attempt, on transport, comes after delay milliseconds. */
  reconnecting: { transport: Transport; previous: Transport; delay: number; reason: string };
  /** A message id seen before, dropped. */
  duplicate: { id: string };
  /** The client stopped on a refusal it cannot fix by retrying (400, 401, 403, ...). */
  error: RigError;
  /** The client stopped for good; no listener is called after this. */
  closed: { reason: string; error?: RigError };
}

export class RigError extends Error {
  /** The HTTP status of the refusal, when there was one. */
  status?: number;
  transport?: Transport;
}

export class Client {
  /** The id the next connection resumes after. */
  readonly lastEventId: string | undefined;
  /** The transport in use, or being tried. */
  readonly transport: Transport | undefined;
  readonly state: "connecting" | "connected" | "closed";
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): void;
  /** Ends the connection for good. */
  close(): void;
}

/** Opens a client; it starts connecting at once. */
export function connect(options: ConnectOptions): Client;

/** The SSE parser the fetch transport uses. */
export class SSEParser {
  constructor(emit: (ev: { event: string; id: string | undefined; data: string; retry: number | undefined }) => void);
  push(text: string): void;
}

/** Exponential backoff with equal jitter: the n-th delay is in [cap/2, cap], cap = min(max, min * 2^n). */
export class Backoff {
  constructor(o?: { min?: number; max?: number; random?: () => number });
  next(): number;
  reset(): void;
}

/** The last size ids seen. */
export class Seen {
  constructor(size: number);
  /** Records id; false when it was seen already. */
  add(id: string): boolean;
}
