// Where the page finds the mesh: the router that served it, at /ws, realm and
// URI prefix "obsmesh" unless the page's query says otherwise
// (?realm=...&prefix=...). Only a path on the serving host is accepted for the
// WebSocket, so a crafted link cannot point the page at another server.

const NAME = /^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/;
const WS_PATH = /^\/[A-Za-z0-9_\-/]*$/;

export function meshConfig(loc) {
  const q = new URLSearchParams(loc.search);
  const pick = (key, fallback, ok) => {
    const value = q.get(key);
    return value && value.length <= 200 && ok.test(value) && !value.includes("//") ? value : fallback;
  };
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return {
    realm: pick("realm", "obsmesh", NAME),
    prefix: pick("prefix", "obsmesh", NAME),
    url: `${scheme}//${loc.host}${pick("ws", "/ws", WS_PATH)}`,
  };
}

// "#/node/wx?fields=a,b&range=900" -> {path: ["node", "wx"], query: URLSearchParams}
export function parseRoute(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { path: parts, query: new URLSearchParams(query) };
}

export function routeHash(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const qs = q.toString();
  return `#/${path.map(encodeURIComponent).join("/")}${qs ? `?${qs}` : ""}`;
}
