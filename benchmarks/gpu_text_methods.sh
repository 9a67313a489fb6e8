#!/usr/bin/env bash
# Every TREC text method at 1,500 samples on one GPU, three seed draws each, in parallel:
# scored first on the EXPLORATION split (TREC's test.csv, where settings may be chosen) and
# then, on the same samples and filter (--reuse), on the REPORT split (the config's test
# split drawn from train.csv). Also FewGen at 500 samples (the size ablation, to confirm the
# 1,500 default on the exploration split), BARE with the paper's prompt (no seed openers) and
# CorrSynth with seed openers.
#
#   python3 scripts/gpu_check.py --bundle B --data-dir D --steps ''   # install (once)
#   PYTHONPATH=B/site bash benchmarks/gpu_text_methods.sh B D OUT [SECONDS]
#
# B: the bundle of scripts/gpu_bundle.py (data/trec/train.csv and test.csv), D: a work folder
# (model cache, samples), OUT: where results.tgz (every job's log and JSON) is written.
# SECONDS (default 420) bounds each job's generation (the whole script: SECONDS + about
# 90 s for the install check, the model conversion and the re-scoring); a job cut short keeps the draws it
# finished (text_quality.py rewrites its JSON after every draw) and only those are re-scored.
# Prints each job's summary lines (mean +- std over draws, paired gain) at the end.
# DEVICE=cpu and EXTRA="--set generate.num_rows=10 --draws 0" make a quick dry run.
set -u
B=$1 D=$2 OUT=$3 T=${4:-420}
RES=$D/results
mkdir -p "$RES" "$D/tq"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
# shellcheck disable=SC2206
COMMON=(--set "data.source=$B/data/trec/train.csv" --device "$DEVICE" --model-cache "$D/models"
  --threads 2 --samples-dir "$D/tq" ${EXTRA:-})

# convert the generator once, before the jobs share the cache
$PY -c "import sys; sys.path.insert(0, '.'); from tasks.text import text_model_box; \
text_model_box('$DEVICE', '$D/models').causal_lm('smollm2-135m-instruct')" || exit 1

job() {  # job NAME CONFIG [--set ...]: exploration split, then the report split
  local name=$1 config=$2
  shift 2
  timeout "$T" $PY benchmarks/text_quality.py --config "$config" "$@" "${COMMON[@]}" \
    --test-source "$B/data/trec/test.csv" --out "$RES/$name.explore.json" \
    >"$RES/$name.log" 2>&1
  local draws
  draws=$($PY -c "import json, sys; print(' '.join(str(r['draw']) for r in \
json.load(open(sys.argv[1]))['rows']))" "$RES/$name.explore.json" 2>/dev/null)
  [ -n "$draws" ] || return 0
  # shellcheck disable=SC2086
  $PY benchmarks/text_quality.py --config "$config" "$@" "${COMMON[@]}" --reuse \
    --draws $draws --out "$RES/$name.report.json" >>"$RES/$name.log" 2>&1
}

# every job in parallel (a chained pair would need twice SECONDS)
job fewgen_1500 pipeline_configs/text_trec_fewgen.yaml &
job fewgen_500 pipeline_configs/text_trec_fewgen.yaml --set generate.num_rows=500 &
job bare_paper_prompt pipeline_configs/text_trec_bare.yaml --set method.seed_openers=0 &
job bare pipeline_configs/text_trec_bare.yaml &
job synalign pipeline_configs/text_trec_synalign.yaml &
job corrsynth_1500 pipeline_configs/text_trec_corrsynth.yaml --set generate.num_rows=1500 &
job corrsynth_openers pipeline_configs/text_trec_corrsynth.yaml --set generate.num_rows=1500 \
  --set method.seed_openers=2 &
wait

for log in "$RES"/*.log; do
  echo "== $(basename "$log" .log)"
  grep -E "^draw |^  (seeds|synthetic|seeds_plus_synthetic|real_train|gain|label_agreement|distinct_2) |paired gain|test split|Error|error:" \
    "$log" | cut -c1-400
done
tar -czf "$OUT/results.tgz" -C "$RES" .
