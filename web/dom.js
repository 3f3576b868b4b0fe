// The only way data reaches the page: elements made here get text with textContent, never HTML,
// so a shopper named <img src=x onerror=alert(1)> shows as that text.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** An element with a class and text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// One formatter for every time shown: making one per call (toLocaleTimeString) cost a tenth of
// a millisecond each, most of the pool panel's drawing with 30 nodes.
const TIME = new Intl.DateTimeFormat([], {
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

/** A time of day, 24 h. */
export function clock(ms) {
  return TIME.format(new Date(ms));
}
