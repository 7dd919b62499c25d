// The overview's live updates: the Pause button stops the polling (htmx
// checks window.zizqPaused before each request) and Resume starts it again.
window.zizqPaused = false;
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-live-toggle]");
  if (!button) return;
  window.zizqPaused = !window.zizqPaused;
  button.textContent = window.zizqPaused ? "Resume updates" : "Pause updates";
  document.body.classList.toggle("paused", window.zizqPaused);
});
