// The node directory: the hub's list, kept live from data_node_added /
// _subtracted, fetched again on every new session (nodes come and go while
// the page is offline).

import { natural } from "./format.js";

const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

// A hub entry as the page uses it, or null when it is not a usable node.
export function cleanEntry(entry) {
  if (!entry || typeof entry !== "object" || Array.isArray(entry)) return null;
  if (typeof entry.name !== "string" || !NAME.test(entry.name)) return null;
  return {
    ...entry,
    name: entry.name,
    kind: typeof entry.kind === "string" ? entry.kind : "",
    view: typeof entry.view === "string" ? entry.view : "",
    description: typeof entry.description === "string" ? entry.description : "",
  };
}

export class Directory extends EventTarget {
  constructor(mesh) {
    super();
    this.mesh = mesh;
    this.nodes = new Map();
    this.loaded = false;
    this.error = null;
    this._generation = 0;
    mesh.subscribe(mesh.uri("consumer.data_node_added"), (args) => {
      const entry = cleanEntry(args[0]);
      if (entry) {
        this.nodes.set(entry.name, entry);
        this._changed();
      }
    });
    mesh.subscribe(mesh.uri("consumer.data_node_subtracted"), (args) => {
      const entry = cleanEntry(args[0]);
      if (entry && this.nodes.delete(entry.name)) this._changed();
    });
    mesh.addEventListener("open", () => this.refresh());
  }

  async refresh() {
    const generation = ++this._generation;
    try {
      const list = await this.mesh.call(this.mesh.uri("consumer.get_data_node"));
      if (generation !== this._generation) return;
      this.nodes = new Map();
      for (const raw of Array.isArray(list) ? list : []) {
        const entry = cleanEntry(raw);
        if (entry) this.nodes.set(entry.name, entry);
      }
      this.error = null;
    } catch (err) {
      if (generation !== this._generation) return;
      this.error = err.message;
    }
    this.loaded = true;
    this._changed();
  }

  list() {
    return [...this.nodes.values()].sort((a, b) => natural(a.name, b.name));
  }

  ofView(view) {
    return this.list().filter((n) => n.view === view);
  }

  get(name) {
    return this.nodes.get(name) || null;
  }

  _changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }
}
