#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds each, one after the other, and
# prints per target: run time, executions, exec/s and the result.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      SECONDS defaults to 600
#
# Only a stable toolchain is available, so RUSTC_BOOTSTRAP=1 lets it accept
# the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
# Each target's growing corpus lives in fuzz/corpus/<target> (not committed);
# the committed seeds in fuzz/seeds/<target> are read but never written.
# Crashes land in fuzz/artifacts/<target>/. Exit status is non-zero if any
# target failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secs="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(logql_parse index_decode seqfile_decode pack_decode slices_decode manifest_decode json_scan logfmt)
fi
# Seconds one input may take before libFuzzer calls it a hang.
per_input_timeout="${FUZZ_TIMEOUT:-10}"
# 16 codegen units build the dependency tree much faster on a small machine,
# for a few percent of fuzzing speed.
cgu="${FUZZ_CODEGEN_UNITS:-16}"

export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

fuzz() {
    nice -n 10 cargo fuzz "$1" --fuzz-dir "$here" --codegen-units "$cgu" "${@:2}"
}

logs="$here/artifacts/logs"
mkdir -p "$logs"
echo "== building ${targets[*]}"
for t in "${targets[@]}"; do
    fuzz build "$t"
done

summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
    log="$logs/$t.log"
    echo "== fuzzing $t for ${secs}s (log: $log)"
    start=$(date +%s)
    set +e
    fuzz run "$t" "$here/corpus/$t" "$here/seeds/$t" -- \
        -max_total_time="$secs" -timeout="$per_input_timeout" \
        -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    # libFuzzer's final stats: "stat::number_of_executed_units: N".
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    execs="${execs:-0}"
    fuzz_secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    fuzz_secs="${fuzz_secs:-$elapsed}"
    rate=$(( execs / (fuzz_secs > 0 ? fuzz_secs : 1) ))
    if [ $rc -eq 0 ]; then
        result="ok, no crash"
    else
        failed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        result="FAILED (exit $rc) ${artifact:-see $log}"
        tail -40 "$log"
    fi
    line=$(printf '%-16s run %5ss (fuzzing %5ss)  %12s execs  %8s exec/s  %s' \
        "$t" "$elapsed" "$fuzz_secs" "$execs" "$rate" "$result")
    echo "$line"
    summary+=("$line")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
