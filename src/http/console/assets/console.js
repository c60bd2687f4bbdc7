// Refreshes the figures of a page that names a JSON source, without a reload; the
// page shows the same figures, rendered on the server, without it.
(function () {
  const page = document.querySelector("[data-refresh]");
  if (!page) return;
  const source = page.getAttribute("data-refresh");
  const every = Number(page.getAttribute("data-every") || "2000");
  async function refresh() {
    try {
      const r = await fetch(source, { credentials: "same-origin", headers: { accept: "application/json" } });
      if (r.status === 401) { window.location.reload(); return; }
      if (!r.ok) return;
      const figures = await r.json();
      for (const el of page.querySelectorAll("[data-figure]")) {
        const v = figures[el.getAttribute("data-figure")];
        el.textContent = v === null || v === undefined ? "–" : String(v);
      }
    } catch (_) { /* the next tick tries again */ }
  }
  setInterval(refresh, every);
})();
