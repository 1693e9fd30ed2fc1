// Customer and sign-in pages: move focus to a form's error summary (or a confirmation)
// when the page loads with one, so the first thing announced is what to fix.
document.addEventListener("DOMContentLoaded", () => {
  const target = document.querySelector("[data-focus-on-load]");
  if (target) target.focus();
});
