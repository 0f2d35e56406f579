#!/usr/bin/env bash
# Side by side: the same fleet run (1,000 devices on Wi-Fi, 2 days, diffusion-v1 float16, the
# learner settings spelled out so that both trees run the same learner) with two checkouts:
#   git worktree add --detach /work/wt/old b44d022 && (cd /work/wt/old && python3 -m venv .venv &&
#     .venv/bin/pip install -q -c constraints.txt -e .)
#   bash benchmarks/bench_hardening.sh        # from the repository root, whose .venv is the new code
# Each tree twice, alternating, one thread each (OMP_NUM_THREADS=1), on a quiet machine.
SITES=$(python3 -c "print(', '.join(f'{{name: s{i}, devices: 100, feeder_kw: 250, network: {{wifi: 1.0}}}}' for i in range(10)))")
SET=(--set "fleet.sites=[$SITES]" --set horizon=2d --set learner.name=diffusion-v1 --set learner.params.comm.dtype=float16
     --set learner.params.n_steps=16 --set learner.params.gamma=0.98 --set learner.params.optimizer=adam
     --set learner.params.lr=0.003 --set learner.params.shaping_per_degc=0)
NEW=$(pwd)
for round in 1 2; do
  for tree in old main; do
    d=/tmp/bench-$tree-$round; rm -rf $d
    if [ $tree = old ]; then cd "${OLD:-/work/wt/old}"; else cd "$NEW"; fi
    s=$(date +%s.%N)
    OMP_NUM_THREADS=1 .venv/bin/fleet run thermostats-small-v1 -q -o $d "${SET[@]}" >/dev/null 2>&1 || echo "$tree failed"
    e=$(date +%s.%N)
    echo "$tree round $round: $(python3 -c "print(f'{$e-$s:.1f}')") s wall; $(python3 -c "import json;p=json.load(open('$d/summary.json'))['perf'];print(p['wall_s'], p['device_steps_per_s'], p['peak_rss_mb'])")"
  done
done
