/* Click (or Enter) on a lesson figure that the column shows smaller than it was drawn: see it
   at full size in an overlay that scrolls; click, Escape or Enter closes it. */
(function () {
  "use strict";
  function shrunk(img) {
    return img.naturalWidth > 0 && img.clientWidth > 0 && img.clientWidth < img.naturalWidth - 2;
  }
  function open(img) {
    const overlay = document.createElement("div");
    overlay.className = "course-zoom";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "Figure at full size. Press Escape to close.");
    overlay.tabIndex = 0;
    const big = document.createElement("img");
    big.src = img.currentSrc || img.src;
    big.alt = img.alt;
    overlay.appendChild(big);
    function close() { overlay.remove(); document.removeEventListener("keydown", onKey); img.focus(); }
    function onKey(event) { if (event.key === "Escape" || event.key === "Enter") close(); }
    overlay.addEventListener("click", close);
    document.addEventListener("keydown", onKey);
    document.body.appendChild(overlay);
    overlay.focus();
  }
  function mark(img) {
    if (!shrunk(img) || img.classList.contains("course-zoomable")) return;
    img.classList.add("course-zoomable");
    img.tabIndex = 0;
    img.title = "Click to see the figure at full size";
    img.addEventListener("click", () => open(img));
    img.addEventListener("keydown", (event) => { if (event.key === "Enter") open(img); });
  }
  function scan() {
    document.querySelectorAll("article .cell_output img").forEach((img) => {
      if (img.complete) mark(img); else img.addEventListener("load", () => mark(img), {once: true});
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan); else scan();
  window.addEventListener("resize", scan);
})();

/* tqdm writes its counts with figure spaces (U+2007), which never break a line: on a narrow
   screen the counts could then only wrap inside a word. Plain spaces let them wrap between
   fields. The saved widgets are drawn after the page loads, so this watches the article. */
(function () {
  "use strict";
  function plainSpaces() {
    document.querySelectorAll("article .widget-hbox .widget-html-content").forEach((el) => {
      if (el.textContent.includes("\u2007") && el.closest(".widget-hbox").querySelector(".widget-hprogress")) {
        el.textContent = el.textContent.replace(/\u2007/g, " ");
      }
    });
  }
  function watch() {
    const article = document.querySelector("article");
    if (!article) return;
    plainSpaces();
    new MutationObserver(plainSpaces).observe(article, {childList: true, subtree: true});
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watch); else watch();
})();
