// Node events (get_events, the `.event` topic) as sentences. Nodes write
// sentences themselves ("sas disconnected", "u3 went stale"); older nodes
// wrote Python-like flags ("sas: connected=True, stale=False"), which are
// turned into the same sentences here. Pure.

const FLAG = /^(.+?): ((?:connected|stale)=(?:True|False)(?:, (?:connected|stale)=(?:True|False))*)$/;
const WORDS = {
  "connected=True": "connected",
  "connected=False": "disconnected",
  "stale=True": "went stale (nothing new in time)",
  "stale=False": "recovered (fresh data again)",
};

export function eventTitle(title) {
  const text = typeof title === "string" ? title.slice(0, 300) : "";
  const m = FLAG.exec(text);
  if (!m) return text;
  return `${m[1]} ${m[2].split(", ").map((f) => WORDS[f] || f).join(" and ")}`;
}

// A problem worth listing: a failure, a run that died, a lost connection, a
// source gone stale; never a recovery.
export function isProblemEvent(ev) {
  if (!ev || typeof ev !== "object" || typeof ev.time !== "number" || !Number.isFinite(ev.time) || typeof ev.title !== "string") return false;
  const tags = Array.isArray(ev.tags) ? ev.tags : [];
  if (tags.includes("recovered")) return false;
  if (tags.some((t) => ["failure", "died", "connection", "stale", "disconnected"].includes(t))) return true;
  // older nodes: flags in the title; a source going stale or down is a problem, coming back is not
  return /(?:^|[ ,])(?:stale=True|connected=False)(?:,|$)/.test(ev.title);
}
