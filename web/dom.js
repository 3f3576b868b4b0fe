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

/** A time of day, 24 h. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}
