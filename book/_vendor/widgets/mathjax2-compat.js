/* lpsbook: let the ipywidgets embed script typeset with MathJax 3.
 *
 * @jupyter-widgets/base (ipywidgets 8) typesets widget labels with MathJax 2's
 * API, `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`, whenever
 * `window.MathJax` exists. Sphinx loads MathJax 3, which has no `Hub`, so every
 * widget with a description would throw "Cannot read properties of undefined
 * (reading 'Queue')". This file is loaded just before widgets/embed.js (see
 * nb_ipywidgets_js in _config.yml). Both act on the window "load" event and
 * this listener is registered first, so the shim is in place before the
 * widgets render.
 */
(function () {
  "use strict";
  function install() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.version || String(mj.version).charAt(0) !== "3") {
      return;
    }
    mj.Hub = {
      Queue: function (command) {
        var element = Array.isArray(command) ? command[2] : undefined;
        var ready = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
        ready
          .then(function () {
            if (typeof mj.typesetPromise === "function") {
              return mj.typesetPromise(element ? [element] : undefined);
            }
          })
          .catch(function (err) {
            console.warn("MathJax could not typeset a widget label:", err);
          });
      },
    };
  }
  window.addEventListener("load", install);
})();
