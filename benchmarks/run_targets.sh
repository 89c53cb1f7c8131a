#!/usr/bin/env bash
# The runs behind benchmarks/README.md's "Latest results", in order. Each writes
# its JSON report and plot into benchmarks/results/ and its table to a .txt.
# About 45 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
python=${PYTHON:-python}

run() {
    local name=$1
    shift
    echo "+ python benchmarks/bench_rooms.py $*" | tee "$out/$name.txt"
    "$python" benchmarks/bench_rooms.py "$@" --json "$out/$name.json" \
        --plot "$out/$name.png" | tee -a "$out/$name.txt"
}

# The shared poller alone against a naive loop, both scenarios, median of 3.
echo "+ python benchmarks/bench_poller.py --repeat 3 --out $out/poller.json" \
    | tee "$out/poller.txt"
"$python" benchmarks/bench_poller.py --repeat 3 --out "$out/poller.json" \
    | tee -a "$out/poller.txt"

# Independent latencies (log-normal, median 3 s, sigma 0.5), every strategy, and
# the per-request CPU comparison against bare aiohttp.
run independent --rooms 1000 --players 4 --scenario independent \
    --strategies naive,sync,shared-tasks,shared,atomic --poller-rps 1000

# The single sequential consumer, 20 ms per task.
run sequential --rooms 1000 --players 4 --scenario sequential \
    --strategies naive,sync,shared,atomic --poller-rps 1000 --cpu-requests 0

# 10,000 rooms in flight at once, each walk without a journal, with one that
# writes nothing (the control), with the SQLite journal and with the SQLite
# journal's writer in a thread, in the same run; then the same run with the
# collector's thresholds raised, as an operator running that many rooms would
# (README, "Thousands of rooms").
walks=shared,shared+discard,shared+journal,shared+thread
walks=$walks,atomic,atomic+discard,atomic+journal,atomic+thread
run load-10k --rooms 10000 --players 4 --scenario independent \
    --strategies "$walks" --poller-rps 2000 --cpu-requests 0
run load-10k-gc --rooms 10000 --players 4 --scenario independent \
    --strategies "$walks" --poller-rps 2000 --cpu-requests 0 \
    --gc-threshold 20000,20,10
