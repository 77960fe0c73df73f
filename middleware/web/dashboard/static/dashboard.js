/* The dashboard's one script: live progress of a setup's current run, without reloading.
 *
 * The setup page's #run-progress names its JSON (data-url) and how often to ask
 * (data-poll-seconds). While a run goes, the sentence in #run-progress-text (a polite live
 * region) and the bar follow it; when the run it watched ends, the page reloads once so the run
 * history shows it. A run that started and ended between two polls (a quick Sync Now) is seen
 * by the last finished run changing (data-last-id): that reloads once too. Right after the page
 * loads (it often follows a "Sync Now queued" notice) it asks every data-poll-seconds, later
 * less often while nothing runs. Without scripts the page reloads itself instead (a meta
 * refresh in <noscript>). No inline script: the pages' CSP is default-src 'self'.
 */
(function () {
  "use strict";

  var box = document.getElementById("run-progress");
  if (!box || !window.fetch) {
    return;
  }
  var text = document.getElementById("run-progress-text");
  var bar = document.getElementById("run-progress-bar");
  var url = box.getAttribute("data-url");
  var every = Math.max(1, Number(box.getAttribute("data-poll-seconds")) || 2) * 1000;
  // While nothing runs, ask less often: a run started elsewhere still shows within seconds.
  var idleEvery = every * 3;
  var watching = box.getAttribute("data-run-id") || "";
  // The newest finished run when the page was made: a newer one means a run ended since.
  var lastSeen = box.getAttribute("data-last-id") || "";
  // Quick polls first: a job queued just before this page may start any moment.
  var quickPolls = 10;
  var failures = 0;

  function ended(last) {
    box.setAttribute("data-state", "finished");
    text.textContent =
      (last ? "Run " + last.id + " " + last.status + "." : "The run has ended.") +
      " Updating the run history…";
    window.setTimeout(function () { window.location.reload(); }, 1000);
    return false;
  }

  function show(data) {
    var run = data.run;
    if (watching && (!run || String(run.id) !== watching)) {
      // The run this page watched has ended: say so, then reload once for the history.
      var last = data.last;
      return ended(last && String(last.id) === watching ? last : null);
    }
    if (!run && data.last && String(data.last.id) !== lastSeen) {
      // A run started and ended between two polls.
      return ended(data.last);
    }
    if (text.textContent !== data.text) {
      text.textContent = data.text;
    }
    if (run) {
      watching = String(run.id);
      box.setAttribute("data-state", "running");
      box.setAttribute("data-run-id", watching);
      if (bar) {
        if (run.percent === null || run.percent === undefined) {
          bar.hidden = true;
        } else {
          bar.hidden = false;
          bar.value = run.percent;
          bar.textContent = run.percent + "%";
        }
      }
    } else {
      box.setAttribute("data-state", "idle");
      if (bar) {
        bar.hidden = true;
      }
    }
    return true;
  }

  function schedule() {
    var running = box.getAttribute("data-state") === "running";
    var quick = running || quickPolls > 0;
    quickPolls -= 1;
    window.setTimeout(poll, (quick ? every : idleEvery) * Math.min(8, 1 + failures));
  }

  function poll() {
    if (document.hidden) {
      schedule();
      return;
    }
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          // Signed out meanwhile: the reload lands on the sign-in page.
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("progress answered " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (data === null) {
          return;
        }
        failures = 0;
        if (show(data)) {
          schedule();
        }
      })
      .catch(function () {
        failures += 1;
        schedule();
      });
  }

  schedule();
})();
