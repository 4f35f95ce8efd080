"use strict";
// Says why the sign-in page is shown: a refused token, or a session that ran out.
document.addEventListener("DOMContentLoaded", () => {
  const query = new URLSearchParams(location.search);
  document.getElementById("failed").hidden = !query.has("failed");
  document.getElementById("expired").hidden = !query.has("expired");
  // The view to go back to after signing in (the console reads it once).
  const next = query.get("next");
  if (next && next.startsWith("#/")) sessionStorage.setItem("colonnade-next", next);
});
