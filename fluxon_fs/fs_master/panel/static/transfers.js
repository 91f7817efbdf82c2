// Two-pane browser of /ui/transfers/: drag a folder from the source pane onto the target pane
// to open the submit form prefilled with source export/folder and target export/prefix.
(function () {
  "use strict";

  const DRAG_TYPE = "application/x-fluxon-dir";

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  class Pane {
    constructor(side, onDirRow) {
      this.side = side;
      this.select = document.getElementById(side + "-export");
      this.list = document.getElementById(side + "-list");
      this.crumbs = document.getElementById(side + "-crumbs");
      this.onDirRow = onDirRow;
      this.path = "";
      this.select.addEventListener("change", () => this.load(""));
    }

    get exportName() {
      return this.select.value;
    }

    async load(path) {
      this.list.dataset.loaded = "false";
      this.list.replaceChildren();
      if (!this.exportName) {
        return;
      }
      const url = "/api/exports/" + encodeURIComponent(this.exportName) + "/list?path=" + encodeURIComponent(path);
      const result = await window.fluxonPanel.fetchJson(url);
      if (!result.ok) {
        const message = result.body && result.body.error ? result.body.error.message : "HTTP " + result.status;
        this.list.append(element("li", "error", message));
        this.list.dataset.loaded = "error";
        return;
      }
      this.path = result.body.path;
      this.list.dataset.path = this.path;
      this.renderCrumbs(result.body.crumbs);
      if (result.body.parent !== null) {
        this.list.append(this.dirRow("..", result.body.parent, false));
      }
      for (const entry of result.body.entries) {
        if (entry.path === null) {
          continue;
        }
        if (entry.kind === "dir") {
          this.list.append(this.dirRow(entry.name + "/", entry.path, true));
        } else {
          const row = element("li", "file");
          row.append(element("span", "name", entry.name));
          row.dataset.path = entry.path;
          this.list.append(row);
        }
      }
      this.list.dataset.loaded = "true";
    }

    renderCrumbs(crumbs) {
      this.crumbs.replaceChildren();
      crumbs.forEach((crumb, index) => {
        const link = element("a", "crumb", index === 0 ? this.exportName + ":/" : crumb.name);
        link.href = "#";
        link.addEventListener("click", (event) => {
          event.preventDefault();
          this.load(crumb.path);
        });
        if (index > 1) {
          this.crumbs.append(document.createTextNode(" / "));
        }
        this.crumbs.append(link);
      });
    }

    dirRow(label, path, isEntry) {
      const row = element("li", "dir");
      const name = element("a", "name", label);
      name.href = "#";
      name.addEventListener("click", (event) => {
        event.preventDefault();
        this.load(path);
      });
      row.append(name);
      row.dataset.path = path;
      if (isEntry) {
        this.onDirRow(this, row, path);
      }
      return row;
    }
  }

  function setup() {
    const root = document.getElementById("transfer-panes");
    if (!root) {
      return;
    }
    const dialog = document.getElementById("submit-dialog");
    const fields = {
      source_export: document.getElementById("f-source-export"),
      source_dir: document.getElementById("f-source-dir"),
      target_export: document.getElementById("f-target-export"),
      target_prefix: document.getElementById("f-target-prefix"),
    };

    function openSubmit(values) {
      for (const [name, input] of Object.entries(fields)) {
        input.value = values[name] || "";
      }
      dialog.showModal();
    }

    const source = new Pane("src", function (pane, row, path) {
      row.draggable = true;
      row.classList.add("draggable");
      row.addEventListener("dragstart", (event) => {
        event.dataTransfer.setData(DRAG_TYPE, JSON.stringify({ export: pane.exportName, path: path }));
        event.dataTransfer.setData("text/plain", pane.exportName + ":/" + path);
        event.dataTransfer.effectAllowed = "copy";
      });
    });
    const target = new Pane("dst", function (_pane, row) {
      row.classList.add("drop-target");
    });

    const dropZone = document.getElementById("dst-pane");
    function draggingFolder(event) {
      return Array.from(event.dataTransfer.types || []).includes(DRAG_TYPE);
    }
    dropZone.addEventListener("dragover", (event) => {
      if (draggingFolder(event)) {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
        dropZone.classList.add("over");
      }
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
    dropZone.addEventListener("drop", (event) => {
      if (!draggingFolder(event)) {
        return;
      }
      event.preventDefault();
      dropZone.classList.remove("over");
      const dragged = JSON.parse(event.dataTransfer.getData(DRAG_TYPE));
      // Dropped on a folder row: copy into that folder; anywhere else: into the directory shown.
      const row = event.target.closest ? event.target.closest("li.dir.drop-target") : null;
      openSubmit({
        source_export: dragged.export,
        source_dir: dragged.path,
        target_export: target.exportName,
        target_prefix: row ? row.dataset.path : target.path,
      });
    });

    document.getElementById("open-submit").addEventListener("click", () =>
      openSubmit({
        source_export: source.exportName,
        source_dir: source.path,
        target_export: target.exportName,
        target_prefix: target.path,
      })
    );
    document.getElementById("cancel-submit").addEventListener("click", () => dialog.close());

    source.load("");
    target.load("");
  }

  document.addEventListener("DOMContentLoaded", setup);
})();
