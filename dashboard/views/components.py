"""Small custom components: token chips and keyboard stepping.

Both are ``JSComponent``s: a few lines of JavaScript with parameters synced both ways, and no
build step. Token text is only ever set with ``textContent``, so ``<script>`` stays text.
"""

from __future__ import annotations

import param
from panel.custom import JSComponent


class TokenChips(JSComponent):
    """The tokens as chips with their ids; clicking one sets ``selected``."""

    tokens = param.List(default=[], doc="Readable token strings.")
    ids = param.List(default=[], doc="Token ids, one per token.")
    selected = param.Integer(default=0, doc="The selected position.")

    _esm = """
    export function render({ model, el }) {
      const box = document.createElement("div");
      box.className = "chips";
      box.setAttribute("role", "listbox");
      box.setAttribute("aria-label", "tokens");
      function draw() {
        box.replaceChildren();
        model.tokens.forEach((tok, i) => {
          const chip = document.createElement("button");
          chip.className = "chip" + (i === model.selected ? " selected" : "");
          chip.dataset.index = String(i);
          chip.setAttribute("role", "option");
          chip.setAttribute("aria-selected", String(i === model.selected));
          const text = document.createElement("span");
          text.className = "tok";
          text.textContent = tok;  // text, never HTML
          const id = document.createElement("span");
          id.className = "tid";
          id.textContent = String(model.ids[i]);
          chip.append(text, id);
          chip.title = `position ${i}, id ${model.ids[i]}`;
          chip.addEventListener("click", () => { model.selected = i; });
          box.append(chip);
        });
      }
      function select() {
        box.querySelectorAll(".chip").forEach((chip) => {
          const on = Number(chip.dataset.index) === model.selected;
          chip.classList.toggle("selected", on);
          chip.setAttribute("aria-selected", String(on));
          // the box may scroll (classroom mode shows two rows): keep the selection in view
          if (on && box.scrollHeight > box.clientHeight) {
            box.scrollTop = chip.offsetTop - box.offsetTop - box.clientHeight / 3;
          }
        });
      }
      draw();
      model.on(["tokens", "ids"], draw);
      model.on("selected", select);
      return box;
    }
    """

    _stylesheets = [
        """
        .chips {
          display: flex; flex-wrap: wrap; gap: 0.3em; font-size: var(--chip-font, 15px);
          max-height: var(--chips-max-height, none); overflow-y: auto; position: relative;
        }
        .chip {
          display: inline-flex; align-items: var(--chip-align, baseline); gap: 0.35em;
          cursor: pointer; min-height: var(--chip-min-height, auto); box-sizing: border-box;
          font: inherit; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
          padding: 0.15em 0.45em; border-radius: 0.4em; line-height: 1.25;
          border: 1px solid var(--chip-border, #c9d1d9);
          background: var(--chip-bg, #f6f8fa); color: var(--chip-fg, #1f2328);
          white-space: pre; unicode-bidi: isolate;
        }
        .chip .tid { font-size: var(--tid-size, 0.7em); opacity: 0.7; }
        .chip.selected {
          background: var(--chip-sel-bg, #0969da); color: var(--chip-sel-fg, #ffffff);
          border-color: var(--chip-sel-bg, #0969da);
        }
        .chip:focus-visible { outline: 3px solid var(--chip-sel-bg, #0969da); }
        """
    ]


class KeyboardNav(JSComponent):
    """Listens to the whole page's keys: ←/→ step through tokens, ↑/↓ and PageUp/PageDown
    through lessons. Keys typed into a text field are left alone."""

    _esm = """
    const KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp",
                          "PageDown"]);
    function typing(event) {
      const path = event.composedPath ? event.composedPath() : [event.target];
      // Arrow keys on a focused slider move the slider, not the token selection.
      return path.some((el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" ||
                                      el.tagName === "SELECT" || el.isContentEditable ||
                                      (el.getAttribute && el.getAttribute("role") === "slider") ||
                                      (el.classList && el.classList.contains("noUi-handle"))));
    }
    export function render({ model }) {
      const onKey = (event) => {
        if (!KEYS.has(event.key) || event.altKey || event.ctrlKey || event.metaKey) return;
        if (typing(event)) return;
        event.preventDefault();
        model.send_msg({ key: event.key });
      };
      document.addEventListener("keydown", onKey);
      model.on("remove", () => document.removeEventListener("keydown", onKey));
      const el = document.createElement("span");
      el.className = "keyboard-nav";
      return el;
    }
    """

    def __init__(self, state: param.Parameterized, **params):
        super().__init__(**params)
        # a plain attribute, not a parameter: parameters are synced to the browser
        self._state = state

    def _handle_msg(self, msg: dict) -> None:
        key = msg.get("key") if isinstance(msg, dict) else None
        steps = {
            "ArrowLeft": (-1, 0),
            "ArrowRight": (1, 0),
            "ArrowUp": (0, -1),
            "PageUp": (0, -1),
            "ArrowDown": (0, 1),
            "PageDown": (0, 1),
        }
        if key not in steps:
            return
        token, lesson = steps[key]
        if token:
            self._state.step_query(token)
        if lesson:
            self._state.step_lesson(lesson)
