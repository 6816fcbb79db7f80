// The page's one WAMP connection (Autobahn|JS, JSON over WebSocket), as the
// anonymous public consumer: it calls and subscribes, never registers or
// publishes, and holds no secret.
//
// Reconnection is Autobahn's (forever, growing delay capped at 5 s). Topics are
// kept here, one router subscription per topic however many views listen, and
// subscribed again on every new session; views hear "open" to reload what
// they showed (history fills the gap the outage left in the live stream).

const CALL_TIMEOUT_MS = 20000;

export class MeshError extends Error {
  constructor(uri, message) {
    super(message || uri);
    this.uri = uri;
  }
}

export class Mesh extends EventTarget {
  constructor(cfg, autobahn) {
    super();
    this.cfg = cfg;
    this.autobahn = autobahn;
    this.session = null;
    this.state = "connecting";
    this.detail = "";
    this.opens = 0;
    this.closes = 0;
    this.retryAt = null;
    this.topics = new Map(); // key -> {topic, options, handlers: Set, sub, last}
  }

  uri(suffix) {
    return `${this.cfg.prefix}.${suffix}`;
  }

  nodeUri(name, suffix) {
    return `${this.cfg.prefix}.consumer.${name}.${suffix}`;
  }

  start() {
    const ab = this.autobahn;
    this.connection = new ab.Connection({
      url: this.cfg.url,
      realm: this.cfg.realm,
      use_es6_promises: true,
      serializers: [new ab.serializer.JSONSerializer()],
      max_retries: -1,
      initial_retry_delay: 0.5,
      max_retry_delay: 5,
      retry_delay_growth: 1.5,
      on_user_error: (err, msg) => this._reportError(msg || "handler failed", err),
      on_internal_error: (err, msg) => this._reportError(msg || "WAMP error", err),
    });
    this.connection.onopen = (session) => this._opened(session);
    this.connection.onclose = (reason, details) => this._closed(reason, details);
    this.connection.open();
  }

  _opened(session) {
    this.session = session;
    this.opens += 1;
    this.retryAt = null;
    this._setState("connected", `realm ${this.cfg.realm}`);
    for (const entry of this.topics.values()) this._subscribe(entry);
    this.dispatchEvent(new CustomEvent("open", { detail: { first: this.opens === 1 } }));
  }

  _closed(reason, details) {
    const wasOpen = this.session !== null;
    this.session = null;
    for (const entry of this.topics.values()) entry.sub = null;
    if (wasOpen) this.closes += 1;
    if (details && details.will_retry) {
      this.retryAt = Date.now() + details.retry_delay * 1000;
      this._setState("reconnecting", reason === "unreachable" ? "router unreachable" : "connection lost");
    } else {
      this.retryAt = null;
      this._setState("disconnected", reason);
    }
    if (wasOpen) this.dispatchEvent(new CustomEvent("close", { detail: { reason } }));
    return false; // keep retrying
  }

  _setState(state, detail) {
    this.state = state;
    this.detail = detail || "";
    this.dispatchEvent(new CustomEvent("state", { detail: { state, detail } }));
  }

  _reportError(message, err) {
    this.dispatchEvent(new CustomEvent("error", { detail: { message, error: String(err && (err.stack || err)) } }));
  }

  get connected() {
    return this.session !== null && this.session.isOpen;
  }

  // An RPC; rejects with MeshError (WAMP error URI and message) or on timeout.
  call(uri, args = [], kwargs = {}, timeoutMs = CALL_TIMEOUT_MS) {
    if (!this.connected) return Promise.reject(new MeshError("obsmesh.offline", "not connected"));
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new MeshError("obsmesh.timeout", `${uri} did not answer`)), timeoutMs);
    });
    let reply;
    try {
      reply = this.session.call(uri, args, kwargs);
    } catch (err) {
      clearTimeout(timer);
      return Promise.reject(new MeshError("obsmesh.offline", String(err)));
    }
    const answer = Promise.resolve(reply).then(
      (res) => (res instanceof this.autobahn.Result ? res.args[0] : res),
      (err) => {
        const message = err && err.args && typeof err.args[0] === "string" ? err.args[0] : err && err.error;
        throw new MeshError((err && err.error) || "obsmesh.error", message || String(err));
      },
    );
    return Promise.race([answer, timeout]).finally(() => clearTimeout(timer));
  }

  // Listen to a topic (survives reconnects). options: {match: "exact"|"prefix",
  // retained: bool}. With retained, a late listener gets the last event at once.
  // handler(args, kwargs, details); returns a function that stops listening.
  subscribe(topic, handler, options = {}) {
    const match = options.match || "exact";
    const key = `${match} ${topic}`;
    let entry = this.topics.get(key);
    if (!entry) {
      entry = { topic, match, retained: !!options.retained, handlers: new Set(), sub: null, pending: null, last: null };
      this.topics.set(key, entry);
      if (this.connected) this._subscribe(entry);
    } else if (options.retained && entry.last) {
      const [args, kwargs, details] = entry.last;
      queueMicrotask(() => entry.handlers.has(handler) && this._deliver(handler, args, kwargs, details));
    }
    entry.handlers.add(handler);
    return () => {
      entry.handlers.delete(handler);
      if (entry.handlers.size === 0) {
        this.topics.delete(key);
        const sub = entry.sub;
        entry.sub = null;
        if (sub && this.connected) this.session.unsubscribe(sub).catch(() => {});
      }
    };
  }

  _subscribe(entry) {
    const session = this.session;
    const opts = {};
    if (entry.match !== "exact") opts.match = entry.match;
    if (entry.retained) opts.get_retained = true;
    const onEvent = (args, kwargs, details) => {
      if (entry.retained) entry.last = [args, kwargs, details];
      for (const handler of [...entry.handlers]) this._deliver(handler, args, kwargs, details);
    };
    let request;
    try {
      request = session.subscribe(entry.topic, onEvent, opts);
    } catch (err) {
      this._reportError(`subscribe ${entry.topic}`, err);
      return;
    }
    Promise.resolve(request).then(
      (sub) => {
        if (this.topics.get(`${entry.match} ${entry.topic}`) === entry && this.session === session) {
          entry.sub = sub;
        } else if (session.isOpen) {
          session.unsubscribe(sub).catch(() => {});
        }
      },
      (err) => this._reportError(`subscribe ${entry.topic} refused`, err && (err.error || err)),
    );
  }

  _deliver(handler, args, kwargs, details) {
    try {
      handler(args || [], kwargs || {}, details || {});
    } catch (err) {
      this._reportError("event handler failed", err);
    }
  }
}
