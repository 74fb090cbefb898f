#!/usr/bin/env bash
# Fetch the JavaScript the book serves itself instead of loading it from a CDN:
# the ipywidgets HTML manager (renders widgets from a notebook's saved state) and RequireJS
# (which the manager needs). npm installs them into book/_build/npm; the files the pages
# load are copied to book/_build/assets/widgets, which Sphinx copies to _static/widgets.
# (MathJax comes from the PyPI package sphinx-mathjax-offline.)
#
# Usage: bash book/fetch_assets.sh    (make book runs it; it does nothing when up to date)
set -euo pipefail

HTML_MANAGER_VERSION=1.0.15   # @jupyter-widgets/html-manager 1.x goes with ipywidgets 8
REQUIREJS_VERSION=2.3.8

BOOK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NPM_DIR="$BOOK_DIR/_build/npm"
OUT_DIR="$BOOK_DIR/_build/assets/widgets"
STAMP="$OUT_DIR/.versions"
WANT="html-manager@$HTML_MANAGER_VERSION requirejs@$REQUIREJS_VERSION setup@4"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -f "$OUT_DIR/embed-amd.js" ]]; then
    echo "widget assets up to date ($WANT)"
    exit 0
fi

mkdir -p "$NPM_DIR"
npm install --prefix "$NPM_DIR" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
    "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" "requirejs@$REQUIREJS_VERSION"

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
DIST="$NPM_DIR/node_modules/@jupyter-widgets/html-manager/dist"
cp "$DIST/embed-amd.js" "$OUT_DIR/"
# the fonts and icons (Font Awesome) the manager's style sheets point to
cp "$DIST"/*.woff "$DIST"/*.woff2 "$DIST"/*.ttf "$DIST"/*.eot "$DIST"/*.svg "$OUT_DIR/"
cp "$NPM_DIR/node_modules/requirejs/require.js" "$OUT_DIR/require.js"
cp "$DIST/embed.js.LICENSE.txt" "$OUT_DIR/embed-amd.js.LICENSE.txt"   # (RequireJS: in its header)

# widget-setup.js, loaded before RequireJS and the manager on pages with widgets:
# 1. Each of the manager's modules (@jupyter-widgets/base, controls, html-manager, ...)
#    locates its font files (Font Awesome) from the address RequireJS gives that module; by
#    default `notebooks/@jupyter-widgets/`, next to the page, which does not exist. A global
#    `require` object (RequireJS's documented way to configure it before it loads) maps the
#    whole `@jupyter-widgets` namespace to this folder, where the fonts are.
# 2. ipywidgets typesets widget labels through MathJax 2's `MathJax.Hub.Queue`; the book
#    has MathJax 3, so a small adapter forwards those calls to `MathJax.typesetPromise`.
cat > "$OUT_DIR/widget-setup.js" <<'EOF'
// Set-up for the ipywidgets HTML manager; see book/fetch_assets.sh.
var require = (function () {
    var here = new URL(".", document.currentScript.src).href;
    window.__jupyter_widgets_assets_path__ = here;
    var folder = here.replace(/\/$/, "");
    return { paths: { "@jupyter-widgets": folder, "@jupyter-widgets/html-manager/dist": folder } };
})();
document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;
    mj.Hub = {
        Queue: function (command) {
            var element = Array.isArray(command) ? command[2] : undefined;
            mj.startup.promise.then(function () {
                return mj.typesetPromise(element ? [element] : undefined);
            });
        },
    };
});
EOF

echo "$WANT" > "$STAMP"
echo "widget assets: $WANT -> $OUT_DIR"
