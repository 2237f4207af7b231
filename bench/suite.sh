#!/bin/bash
# The test suite side by side with a baseline checkout (issue: a suite in half the time that
# tests no less): pytest's time with each tree's own `make test` flags, one after the other,
# then branch coverage of search/, vae/ and analysis/ the same way, in every process the suite
# starts (coverage.py's patch = subprocess). Each tree runs with its own .venv.
#   bash bench/suite.sh BASELINE_DIR [BASELINE_PYTEST_FLAGS]
# e.g. git clone . /tmp/before && git -C /tmp/before checkout ac8f37d && make -C /tmp/before install-test
#      bash bench/suite.sh /tmp/before "-n 2"
# Prints and appends to bench/results/suite.txt. About 25 minutes on two cores (SUITE_TIME_ONLY=1:
# the times alone).
set -u
# as `make test` does: a tree installed with --no-compile writes its bytecode on first import, which
# PYTHONDONTWRITEBYTECODE (set on some machines) would forbid, recompiling torch in every process
unset PYTHONDONTWRITEBYTECODE
OURS=$(cd "$(dirname "$0")/.." && pwd) BASE=$1 BASE_FLAGS=${2:-"-n 2"}
OURS_FLAGS="-n 2 --dist loadgroup --no-loadscope-reorder"
OUT=$(mktemp -d) RESULT=$OURS/bench/results/suite.txt
cat > $OUT/cov.toml <<'CFG'
[tool.coverage.run]
branch = true
source_pkgs = ["search", "vae", "analysis"]
parallel = true
patch = ["subprocess", "_exit"]
sigterm = true
CFG
"$BASE/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "coverage>=7.10.3"
echo "# $(date -u +%FT%TZ) $(git -C $OURS rev-parse --short HEAD) vs $(git -C $BASE rev-parse --short HEAD)" | tee -a $RESULT
timed() {  # name dir command...: wall time and pytest's last line
  local name=$1 dir=$2; shift 2; rm -f /tmp/ray/ray_current_cluster
  local t0=$(date +%s.%N); (cd $dir && "$@" > $OUT/$name.log 2>&1); local rc=$?; local t1=$(date +%s.%N)
  echo "$name rc=$rc wall=$(python3 -c "print(round($t1-$t0,1))") $(grep -E '[0-9]+ passed' $OUT/$name.log | tail -1)" | tee -a $RESULT
}
timed ours-time $OURS .venv/bin/python -m pytest $OURS_FLAGS -p no:cacheprovider
timed base-time $BASE .venv/bin/python -m pytest $BASE_FLAGS -p no:cacheprovider
[ "${SUITE_TIME_ONLY:-}" ] && { echo "logs: $OUT"; exit 0; }  # SUITE_TIME_ONLY=1: no coverage runs
for side in ours base; do
  dir=$OURS flags=$OURS_FLAGS; [ $side = base ] && dir=$BASE flags=$BASE_FLAGS
  (cd $dir && rm -f .coverage .coverage.*)
  timed $side-cov $dir .venv/bin/python -m coverage run --rcfile=$OUT/cov.toml -m pytest $flags -q -p no:cacheprovider
  (cd $dir && .venv/bin/python -m coverage combine -q --rcfile=$OUT/cov.toml && for p in search vae analysis; do
     echo "$side $p $(.venv/bin/python -m coverage report --rcfile=$OUT/cov.toml --include="$p/*" --precision=1 | tail -1)"; done) | tee -a $RESULT
done
echo "logs: $OUT"
